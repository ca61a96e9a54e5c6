"""The real-model results page's sections (SmolLM2 on SVAMP), each built from the files its runs wrote
under ``docs/results/``: the SFT settings' validation trials, the EI runs (``ei_runs_page``), the
PPO trials (``ppo_trials_page``) and the PPO step profile (``ppo_profile_page``).
``docs/build_results.py`` assembles the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ppo_profile_page  # beside this file (docs/, on the path build_results sets)
import ppo_trials_page
from ei_runs_page import ran_on, rounds_table, smollm2_recipe_section, starts_section
from ppo_trials_page import reward_curve, trend_cells


def sections(results: Path, runs: list[str] = ()) -> list[str]:
    """The page's sections that have files under ``results``, in page order; ``runs``: the sections of the
    page's comparison runs (``build_results.section``), placed after the recipe's and before the
    rollout rewards that read them."""
    parts = (smollm2_trials_section(results), smollm2_recipe_section(results), starts_section(results),
             *runs, subset_curve_section(results), reward_trend_section(results),
             ppo_trials_page.ppo_trials_section(results),
             ppo_profile_page.ppo_profile_section(results))
    return [part for part in parts if part]


# docs/results/<folder>/<format>_e<epochs>_lr<rate>/: each trial's eval results.json and its SFT
# stage_complete.json (as sft_stage_complete.json), copied from the command's output_dir; newest split first
SMOLLM2_TRIALS = {
    "smollm2_val_family": ("On SVAMP's family split", "The validation questions are whole problem families "
                           "carved from the 696 train questions, so none is, or is a variation of, a test "
                           "question."),
    "smollm2_val": ("On the former id-based split", "The validation questions were carved from its 700 train "
                    "questions by solution; 36 of these 137 are among the family split's 304 test "
                    "questions."),
}
SMOLLM2_TRIAL_COMMAND = (
    "trl-reasoning train recipes/smollm2_svamp_sft_ei.yaml --stages [sft,eval] --eval_split validation \\\n"
    "    --sft.bf16 false --eval.num_generations 4 --solution_format FORMAT --sft.num_train_epochs E \\\n"
    "    --sft.learning_rate LR --output_dir runs/{folder}/FORMAT_eE_lrLR")


def smollm2_trials_section(results: Path) -> str:
    """The SmolLM2 SFT settings measured on SVAMP's validation split, one block per split (one folder per
    trial, named for its settings by the command), or nothing."""
    blocks = []
    for folder, (title, note) in SMOLLM2_TRIALS.items():
        rows = _trial_rows(results / folder)
        if rows:
            command = SMOLLM2_TRIAL_COMMAND.format(folder=folder)
            blocks.append(f"### {title}\n\n{note}\n\n```bash\n{command}\n```\n\n| solution format | "
                          "epochs | learning rate | maj@1 [95%] | pass@4 | questions | SFT s | ran on |\n"
                          "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
                          + _validation_rounds(results / folder / VALIDATION_EI))
    if not blocks:
        return ""
    return ("## SFT settings for SmolLM2, chosen on a validation split\n\n"
            "SmolLM2-135M-Instruct, LoRA, fp32, on SVAMP's train questions less a validation split carved "
            "from them (never the test questions); greedy maj@1 and pass@4 (K=4, T=0.7) on the "
            "validation questions; SFT wall seconds on the machine its record names, another run beside "
            "it on the other core. Trials on different CPUs compare by their intervals, not their digits."
            "\n\n" + "\n".join(blocks))


# docs/results/<trials folder>/<this>/: the recipe's SFT and EI rounds on the validation questions (its
# sft/stage_complete.json and ei/round_*/metrics.json), which chose the recipe's number of rounds
VALIDATION_EI = "ei_recipe"
VALIDATION_EI_COMMAND = ("trl-reasoning train recipes/smollm2_svamp_sft_ei.yaml --stages [sft,ei] "
                         "--eval_split validation \\\n    --output_dir runs/{folder}")


def _validation_rounds(folder: Path) -> str:
    """The recipe's EI rounds on the validation questions, or nothing before they were copied: the rule
    that picks ``ei.num_rounds`` from them, stated before the run, is the best round, ties to fewer."""
    table = rounds_table(folder, "SFT")
    if not table:
        return ""
    command = VALIDATION_EI_COMMAND.format(folder=f"{folder.parent.name}/{folder.name}")
    return ("\nThe recipe's SFT and Expert Iteration rounds on the same validation questions, which set its "
            "number of rounds (the round with the best greedy maj@1, ties to fewer rounds):\n\n"
            f"```bash\n{command}\n```\n\n{ran_on(folder)}\n\n{table}")


def _trial_rows(trials: Path) -> list[str]:
    """One table row per finished trial folder under ``trials``."""
    rows = []
    for folder in sorted(trials.glob("*_e*_lr*")):
        named = re.fullmatch(r"(.+)_e(\d+)_lr(.+)", folder.name)
        files = (folder / "results.json", folder / "sft_stage_complete.json")
        if not named or not all(f.exists() for f in files):
            continue  # a trial still running, or a folder the command did not name
        solution_format, epochs, rate = named.groups()
        sft = json.loads((folder / "results.json").read_text())["sft"]
        record = json.loads((folder / "sft_stage_complete.json").read_text())
        low, high = sft["confidence_intervals"]["maj@1"]
        rows.append(f"| {solution_format} | {epochs} | {rate} | {sft['metrics']['maj@1']:.3f} [{low:.3f}, "
                    f"{high:.3f}] | {sft['metrics']['pass@4']:.3f} | {sft['num_questions']} | "
                    f"{record['wall_seconds']:.0f} | {ppo_trials_page.where(record)} |")
    return rows


# the SmolLM2 comparison runs copied under docs/results/ (their method records, and the on-policy methods'
# logged rewards in seed_S/rewards/METHOD.json), newest first, with the split each ran on
SMOLLM2_COMPARISONS = {"smollm2_compare_family": "SVAMP's family split",
                       "smollm2_compare": "the former id-based split"}


def subset_curve_section(results: Path) -> str:
    """The training-time evaluations that ran on the first N held-out questions (the record's
    ``training_eval_questions``, as the comparison's figures read it), with the SFT start's and each
    method's final greedy maj@1 on those same questions (from the copied records' per-question values);
    or nothing."""
    rows = []
    for run, split in SMOLLM2_COMPARISONS.items():
        for path in sorted((results / run).glob("seed_*/methods/*.json")):
            record = json.loads(path.read_text())
            name = path.stem
            limit = record.get("training_eval_questions", {}).get(name)
            if not limit or not record.get("training_points", {}).get(name):
                continue
            sft = json.loads((path.parent / "sft.json").read_text())["per_question"]["sft"]["maj@1"]
            final = record["per_question"][name]["maj@1"]
            subset = list(sft)[:limit]  # the held-out order: training_eval takes the first `limit`
            points = ", ".join(f"{p[0]}: {p[1]['maj@1']:.3f}" for p in record["training_points"][name])
            rows.append(f"| {split} | {name} | {path.parent.parent.name.split('_')[1]} | {limit} | "
                        f"{sum(sft[i] for i in subset) / limit:.3f} | {points} | "
                        f"{sum(final[i] for i in subset) / limit:.3f} | {record['samples'][name]} |")
    if not rows:
        return ""
    return ("## Training-time evaluations on their subset\n\nPPO and the GRPOs evaluate greedy maj@1 "
            "while they train on the first questions of the held-out split only (`training_eval.limit`); "
            "their lines in the figures above, named \"(first N questions)\", start and end on that same "
            "subset, as here: the SFT start's and the method's final greedy answers restricted to it, from "
            "the copied records (the tables above score every held-out question).\n\n"
            "| split | method | seed | questions | SFT start | during training (samples: maj@1) | final | "
            "samples |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def reward_trend_section(results: Path) -> str:
    """The on-policy methods' logged rollout reward per optimizer step in each SmolLM2 comparison: a
    figure and each method's slope with its interval (``metrics.reward_trend``); or nothing."""
    blocks = [_reward_trend_block(results, run, split) for run, split in SMOLLM2_COMPARISONS.items()]
    blocks = [block for block in blocks if block]
    if not blocks:
        return ""
    return ("## The on-policy methods' rollout reward\n\nThe mean correctness reward of each logged "
            "rollout batch against the optimizer step, from each method's `trainer_state.json` in the "
            "equal wall-time comparison (`trl-reasoning compare recipes/smollm2_svamp_compare.yaml`, 45 "
            "minutes of RL stage each; TRL logs the reward at the steps that drew a new rollout batch); "
            "the slope per 100 steps is a least-squares fit with a 95% bootstrap interval over the "
            "logged points (`trl_reasoning.metrics.reward_trend`). The rise needed is the interval's "
            "half-width times the logged steps: the fitted line has to rise about that much over these "
            "steps before its interval can exclude zero.\n\n" + "\n".join(blocks))


def _reward_trend_block(results: Path, run: str, split: str) -> str:
    """One comparison run's figure and table of logged rollout rewards, or "" without copied logs."""
    from trl_reasoning.reporting import plot_curves

    logs = sorted((results / run).glob("seed_*/rewards/*.json"))
    if not logs:
        return ""
    curves, rows = {}, []
    for path in logs:
        seed, method = path.parent.parent.name.removeprefix("seed_"), path.stem
        logged = json.loads(path.read_text())
        curves[f"{method} (seed {seed})"] = reward_curve(logged)
        rows.append(f"| {method} | {seed} | {trend_cells(logged)} |")
    figure = plot_curves(results / run / "reward_trend.png", curves, "optimizer step",
                         "mean rollout reward (logged)", f"Rollout reward while training, on {split}")
    return (f"### On {split}\n\n![rollout reward, {split}]({run}/{figure.name})\n\n"
            "| method | seed | logged points | first | last | slope per 100 steps [95%] | rise needed "
            "over the logged steps |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n" + ppo_trials_page.against_start_table(
                sorted((results / run).glob("seed_*/rollouts/*.json"))))
