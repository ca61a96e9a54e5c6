"""The real-model results page's sections (SmolLM2 on SVAMP), each built from the files its runs wrote
under ``docs/results/``: the SFT settings' validation trials, the recipe's rounds on the test split, the
PPO trials (``ppo_trials_page``) and the PPO step profile (``ppo_profile_page``).
``docs/build_results.py`` assembles the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ppo_profile_page  # beside this file (docs/, on the path build_results sets)
import ppo_trials_page
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
                          "epochs | learning rate | maj@1 [95%] | pass@4 | questions | SFT s |\n"
                          "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    if not blocks:
        return ""
    return ("## SFT settings for SmolLM2, chosen on a validation split\n\n"
            "SmolLM2-135M-Instruct, LoRA, fp32, on SVAMP's train questions less a validation split carved "
            "from them (never the test questions); greedy maj@1 and pass@4 (K=4, T=0.7) on the "
            "validation questions; SFT wall seconds on one core of the 2-core AMD EPYC (AVX2, no AMX), "
            "another run beside it on the other core.\n\n" + "\n".join(blocks))


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
                    f"{record['wall_seconds']:.0f} |")
    return rows


SMOLLM2_RECIPE = "smollm2_recipe"  # docs/results/smollm2_recipe/: the recipe's stage records, EI rounds
SMOLLM2_RECIPE_FILE = "recipes/smollm2_svamp_sft_ei.yaml"


def smollm2_recipe_section(results: Path) -> str:
    """``recipes/smollm2_svamp_sft_ei.yaml`` on the 300 test questions: greedy maj@1 after SFT (EI's round
    0) and after each EI round, with the stages' wall times; or nothing before a run was copied."""
    folder = results / SMOLLM2_RECIPE
    rounds = sorted((folder / "ei").glob("round_*/metrics.json"))
    if not rounds:
        return ""
    lines = ["| model | greedy maj@1 [95%] | samples drawn | stage wall s |", "|---|---|---|---|"]
    sft = json.loads((folder / "sft" / "stage_complete.json").read_text())
    for path in rounds:
        record = json.loads(path.read_text())
        low, high = record["eval"]["ci95/maj@1"]
        name = "SFT" if record["round"] == 0 else f"EI round {record['round']}"
        seconds = sft["wall_seconds"] if record["round"] == 0 else sum(record["seconds"].values())
        resumed = record["round"] and not _sampling_timed(record)
        wall = f"{seconds:.0f}" + (" (sampling resumed from disk, its time not counted)" if resumed else "")
        lines.append(f"| {name} | {record['eval']['maj@1']:.3f} [{low:.3f}, {high:.3f}] | "
                     f"{record['cumulative_samples']} | {wall} |")
    done = (folder / "ei" / "stage_complete.json").exists()
    final = _recipe_eval_table(folder) + (_recipe_time(folder, sft, rounds) if done else "")
    return ("## The recipe on the 300 held-out questions\n\n```bash\ntrl-reasoning train "
            "recipes/smollm2_svamp_sft_ei.yaml\n```\n\nSFT with the settings above on all 700 train "
            "questions, then Expert Iteration rounds; greedy maj@1 on SVAMP's 300 test questions after each "
            "(round 0 is the SFT policy). One core of the 2-core AMD EPYC (AVX2, no AMX), with other runs on "
            f"the machine.{'' if done else ' **The run is still going**: the rounds so far.'}\n\n"
            + "\n".join(lines) + "\n" + final)


def _sampling_timed(record: dict) -> bool:
    """Whether an EI round's record timed its sampling: a round resumed after its samples were written
    spent that time before the restart (its record shows under a second)."""
    return record["seconds"].get("sampling", 0) >= 1 or not record["train"]["samples"]


def _recipe_time(folder: Path, sft: dict, rounds: list[Path]) -> str:
    """What the recipe's stages cost on this machine, from their records, against the 40 minutes it is
    meant to fit: the SFT step and the EI sampling rate, where the time goes."""
    import yaml

    records = [json.loads(path.read_text()) for path in rounds]  # round 0: the SFT policy's evaluation
    sampled = [(r["train"]["samples"], r["seconds"]["sampling"]) for r in records[1:]
               if r["train"]["samples"] and _sampling_timed(r)]
    recipe = Path(__file__).resolve().parent.parent / SMOLLM2_RECIPE_FILE
    settings = yaml.safe_load(recipe.read_text())["sft"]
    per_step = settings["per_device_train_batch_size"] * settings.get("gradient_accumulation_steps", 1)
    steps = -(-sft["questions"] // (per_step * sft["num_processes"])) * sft["epochs"]
    total = sft["wall_seconds"] + sum(sum(r["seconds"].values()) for r in records)
    fine_tune = sum(r["seconds"].get("fine_tuning", 0) for r in records)
    rate = (f", EI sampling {sum(n for n, _ in sampled) / sum(t for _, t in sampled):.1f} samples/s"
            if sampled else "")
    return (f"\nSFT and the EI rounds took at least {total / 60:.0f} minutes here (their records' sums; "
            "a resumed round's sampling and the time between rounds are not in them), against a target of "
            f"40 for the whole recipe with its eval stage: SFT {sft['wall_seconds'] / steps:.0f} s of stage "
            f"wall time per LoRA step of {per_step} in fp32 ({steps} steps){rate}, the rounds' fine-tunes "
            f"{fine_tune / 60:.0f} minutes. The target comes from the recipe's first version (1 epoch of "
            "SFT): 41 minutes on a CPU with AMX, where bf16 runs natively "
            "([earlier runs](real_model_history.md)); the recipe runs in fp32 here" + _bf16_note(folder)
            + ".\n")


def _bf16_note(folder: Path) -> str:
    """How much slower bf16 matmuls are than fp32 on the profiled CPU (the PPO profile's measured rates),
    or nothing before a profile the page shows was copied."""
    for _, report in ppo_profile_page.shown_profiles(folder.parent):
        rates = report.get("matmul_gflops", {})
        if rates.get("float32") and rates.get("bfloat16"):
            ratio = rates["float32"] / rates["bfloat16"]
            return (f", where bf16 matmuls ran about {round(ratio, -1 if ratio >= 20 else 0):.0f}x slower "
                    f"than fp32 ({rates['bfloat16']:.1f} against {rates['float32']:.1f} GFLOP/s, the profile "
                    "below)")
    return ""


def _recipe_eval_table(folder: Path) -> str:
    """The eval stage's SFT and final models (the run's ``results.json``): greedy maj@1, maj@8, pass@1,
    pass@8, distinct correct solutions and the paired gain; or nothing before the stage finished."""
    path = folder / "results.json"
    if not path.exists():
        return ""
    from trl_reasoning.stages.evaluation import paired_gains

    results = json.loads(path.read_text())
    # the copied eval/<model>/samples.jsonl hold the greedy rows only (what the paired gain reads)
    gains = paired_gains(folder, results)
    lines = ["| model | greedy maj@1 [95%] | maj@8 | pass@1 | pass@8 [95%] | distinct correct / question | "
             "gain over SFT, paired 95% |", "|---|---|---|---|---|---|---|"]
    for name, record in results.items():
        metrics, ci = record["metrics"], record["confidence_intervals"]
        gain = gains.get(name)
        paired = f"{gain['gain']:+.3f} [{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]" if gain else ""
        lines.append(f"| {name} | {metrics['maj@1']:.3f} [{ci['maj@1'][0]:.3f}, {ci['maj@1'][1]:.3f}] | "
                     f"{metrics['maj@8']:.3f} | {metrics['pass@1']:.3f} | {metrics['pass@8']:.3f} "
                     f"[{ci['pass@8'][0]:.3f}, {ci['pass@8'][1]:.3f}] | "
                     f"{record['exploration']['distinct_correct_solutions']:.3f} | {paired} |")
    return ("\nThe eval stage, K=8 samples at T=0.7 beside the greedy answer, on the same 300 questions "
            "(the run's `results.json`; the paired gain from its greedy records):\n\n"
            + "\n".join(lines) + "\n")


SMOLLM2_PRETRAINED = "smollm2_pretrained_ei"  # docs/results/smollm2_pretrained_ei/: EI from pretrained
PRETRAINED_COMMAND = ("trl-reasoning train recipes/smollm2_svamp_ei.yaml --ei.num_rounds 3 "
                      "--output_dir runs/smollm2_pretrained_ei")


def starts_section(results: Path) -> str:
    """Finding (d): EI from the SFT policy against EI from the pretrained model (4-shot prompted), the same
    rounds and samples, per question on the same 300 test questions; or nothing before both ran."""
    from trl_reasoning.metrics import paired_difference
    from trl_reasoning.stages.evaluation import greedy_correct as greedy

    sft_run, pre_run = results / SMOLLM2_RECIPE, results / SMOLLM2_PRETRAINED
    if not all((run / "results.json").exists() for run in (sft_run, pre_run)):
        return ""
    pairs = {"before EI": (greedy(sft_run, "sft"), greedy(pre_run, "initial")),
             "after 3 EI rounds": (greedy(sft_run, "ei"), greedy(pre_run, "ei"))}
    ids = sorted(pairs["before EI"][0])
    if any(set(ids) != set(model) for pair in pairs.values() for model in pair):
        raise ValueError(f"{pre_run}: evaluated on other questions than {sft_run}")
    lines = ["| | SFT start | pretrained start (4-shot) | gap, paired 95% |", "|---|---|---|---|"]
    gaps = {}
    for label, (mine, theirs) in pairs.items():
        gaps[label] = [mine[i] - theirs[i] for i in ids]
        g = paired_difference([mine[i] for i in ids], [theirs[i] for i in ids])
        lines.append(f"| greedy maj@1 {label} | {sum(mine.values()) / len(ids):.3f} | "
                     f"{sum(theirs.values()) / len(ids):.3f} | "
                     f"{g.mean:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}] |")
    change = paired_difference(gaps["after 3 EI rounds"], gaps["before EI"])
    return ("## Finding (d): SFT start against pretrained start\n\n```bash\n" + PRETRAINED_COMMAND
            + "\n```\n\nExpert Iteration from the pretrained model (prompted 4-shot, then trained and "
            "evaluated zero-shot) with the SFT-start recipe's rounds and samples (3 rounds of 700 questions "
            "x 8), on the same 300 test questions; every gap is paired by question. The fine-tunes differ: "
            "the pretrained recipe trains 4 epochs at batch 8 a round (its first round keeps about 100 "
            "samples; 2 epochs of 16 left the model below its start), the SFT-start recipe 1 epoch at "
            "batch 16.\n\n"
            + "\n".join(lines)
            + f"\n\nThrough EI the gap changed by {change.mean:+.3f} [{change.ci_low:+.3f}, "
            f"{change.ci_high:+.3f}].\n")


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
