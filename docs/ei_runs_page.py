"""The real-model page's Expert Iteration runs: ``recipes/smollm2_svamp_sft_ei.yaml`` round by round with its
eval stage, and finding (d), EI from the SFT start against EI from the pretrained model, one block per SVAMP
split, newest first. Each block reads the files ``copy_ei_run`` copied from the run's output folder (run this
file to copy one)."""

from __future__ import annotations

import json
from pathlib import Path

import ppo_profile_page  # beside these files (docs/, on the path build_results sets)
from ppo_trials_page import cpu_of, cpu_words, where

SMOLLM2_RECIPE_FILE = "recipes/smollm2_svamp_sft_ei.yaml"
# docs/results/<folder>/: a run of the recipe (its stage records, EI rounds' metrics, the eval stage's results
# and greedy rows, copy_ei_run), newest split first, with the split and the checkout its commands need (the
# data loader makes the family split since 58d58b6)
SMOLLM2_RECIPES = {"smollm2_recipe_family": ("SVAMP's family split", ""),
                   "smollm2_recipe": ("the former id-based split", "git checkout 6a93a44 && ")}
RECIPE_COMMAND = "trl-reasoning train recipes/smollm2_svamp_sft_ei.yaml"
SMOLLM2_RECIPE = "smollm2_recipe"
# finding (d): each recipe folder beside EI from the pretrained model on its split (copied alike)
PRETRAINED_RUNS = {"smollm2_recipe_family": "smollm2_pretrained_ei_family",
                   "smollm2_recipe": "smollm2_pretrained_ei"}
SMOLLM2_PRETRAINED = PRETRAINED_RUNS[SMOLLM2_RECIPE]
PRETRAINED_COMMAND = ("trl-reasoning train recipes/smollm2_svamp_ei.yaml --ei.num_rounds 3 "
                      "--output_dir runs/{folder}")


def smollm2_recipe_section(results: Path) -> str:
    """``recipes/smollm2_svamp_sft_ei.yaml`` on the held-out questions, one block per split: greedy maj@1
    after SFT (EI's round 0) and after each EI round, with the stages' wall times, and the eval stage's
    table; or nothing before a run was copied."""
    blocks = []
    for name, (split, checkout) in SMOLLM2_RECIPES.items():
        folder = results / name
        table = rounds_table(folder, "SFT")
        if not table:
            continue
        done = (folder / "ei" / "stage_complete.json").exists()
        sft = json.loads((folder / "sft" / "stage_complete.json").read_text())
        final = _recipe_eval_table(folder) + (_recipe_time(folder, sft) if done else "")
        blocks.append(f"### On {split}{_counts(folder, sft)}\n\n```bash\n{checkout}{RECIPE_COMMAND}\n```\n\n"
                      + f"{ran_on(folder)}\n\n"  # the SFT record read above: never empty
                      + ("" if done else "**The run is still going**: the rounds so far.\n\n")
                      + table + final)
    if not blocks:
        return ""
    return ("## The recipe on the held-out questions\n\nSFT with the settings above on all the train "
            "questions, then Expert Iteration rounds; greedy maj@1 on SVAMP's test questions after each "
            "(round 0 is the SFT policy).\n\n" + "\n".join(blocks))


def ran_on(folder: Path) -> str:
    """Where a copied run's stages ran (each stage's, where they differ), from their records; nothing before
    a stage finished."""
    places = {stage: where(record) for stage, record in _stage_records(folder).items()}
    if not places:
        return ""
    if len(set(places.values())) == 1:
        return f"Ran on {next(iter(places.values()))}."
    return "Ran on: " + "; ".join(f"{stage} {place}" for stage, place in places.items()) + "."


def _counts(folder: Path, sft: dict) -> str:
    """", N train / M test questions" from the run's SFT record and its eval stage's ``results.json``, as
    far as they were copied."""
    parts = [f"{sft['questions']} train"] if "questions" in sft else []
    results = folder / "results.json"
    if results.exists():
        parts.append(f"{next(iter(json.loads(results.read_text()).values()))['num_questions']} test")
    return f": {' / '.join(parts)} questions" if parts else ""


def rounds_table(folder: Path, start: str) -> str:
    """An EI run's rounds (``folder/ei/round_*/metrics.json``) as a table, round 0 named ``start``; or
    nothing."""
    rounds = sorted((folder / "ei").glob("round_*/metrics.json"))
    if not rounds:
        return ""
    records = [json.loads(path.read_text()) for path in rounds]
    # a policy's accuracy on the questions it practises, by the round's own test (with check_equations a right
    # answer counts only when its written equations hold): the next round's samples are drawn by it
    practised = {r["round"] - 1: r["train"]["sample_accuracy"] for r in records if r["train"].get("samples")}
    lines = ["| model | greedy maj@1 [95%] | its train-question samples: right (and equations true, where "
             "checked) | samples drawn | stage wall s |", "|---|---|---|---|---|"]
    for record in records:
        low, high = record["eval"]["ci95/maj@1"]
        name = start if record["round"] == 0 else f"EI round {record['round']}"
        if record["round"] == 0:
            stage = folder / "sft" / "stage_complete.json"  # no SFT stage: round 0 only evaluates
            seconds = (json.loads(stage.read_text())["wall_seconds"] if stage.exists()
                       else sum(record["seconds"].values()))
        else:
            seconds = sum(record["seconds"].values())
        resumed = record["round"] and not _sampling_timed(record)
        wall = f"{seconds:.0f}" + (" (sampling resumed from disk, its time not counted)" if resumed else "")
        own = f"{practised[record['round']]:.3f}" if record["round"] in practised else ""
        lines.append(f"| {name} | {record['eval']['maj@1']:.3f} [{low:.3f}, {high:.3f}] | {own} | "
                     f"{record['cumulative_samples']} | {wall} |")
    return "\n".join(lines) + "\n"


def _sampling_timed(record: dict) -> bool:
    """Whether an EI round's record timed its sampling: a round resumed after its samples were written
    spent that time before the restart (its record shows under a second)."""
    return record["seconds"].get("sampling", 0) >= 1 or not record["train"]["samples"]


def _recipe_time(folder: Path, sft: dict) -> str:
    """What the recipe's stages cost on this machine, from their records, against the 40 minutes it is
    meant to fit: the SFT step and the EI sampling rate, where the time goes."""
    import yaml

    rounds = sorted((folder / "ei").glob("round_*/metrics.json"))
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
            "([earlier runs](real_model_history.md)); the recipe runs in fp32 here"
            + _bf16_note(folder, cpu_of(sft))
            + ".\n")


def _bf16_note(folder: Path, cpu: str) -> str:
    """How much slower bf16 matmuls are than fp32 on the profiled CPU (the PPO profile's measured rates),
    or nothing before a profile the page shows was copied, or when the profile ran on another CPU than
    the run (``cpu``: ``cpu_of`` its SFT record)."""
    for _, report in ppo_profile_page.shown_profiles(folder.parent):
        if report["cpu"] != cpu:
            continue
        rates = report.get("matmul_gflops", {})
        if rates.get("float32") and rates.get("bfloat16"):
            ratio = rates["float32"] / rates["bfloat16"]
            return (f", where bf16 matmuls ran about {round(ratio, -1 if ratio >= 20 else 0):.0f}x slower "
                    f"than fp32 ({rates['bfloat16']:.1f} against {rates['float32']:.1f} GFLOP/s, the profile "
                    "below)")
    return ""


def _recipe_eval_table(folder: Path, baseline: str = "sft") -> str:
    """The eval stage's start (``baseline``) and final models (the run's ``results.json``): greedy maj@1,
    maj@8, pass@1, pass@8, distinct correct solutions and the paired gain; or nothing before the stage
    finished."""
    path = folder / "results.json"
    if not path.exists():
        return ""
    from trl_reasoning.stages.evaluation import paired_gains

    results = json.loads(path.read_text())
    # the copied eval/<model>/samples.jsonl: the greedy rows, and in copies since 2026-12-08 the sampled
    # rows' correctness (what the paired gains read)
    gains = paired_gains(folder, results, baseline)
    lines = ["| model | greedy maj@1 [95%] | maj@8 | pass@1 | pass@8 [95%] | distinct correct / question | "
             f"maj@1 gain over {baseline}, paired 95% | pass@1 gain, paired 95% |", "|---" * 8 + "|"]
    for name, record in results.items():
        metrics, ci = record["metrics"], record["confidence_intervals"]
        paired = [f"{g['gain']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]" if (g := gains[m].get(name))
                  else "" for m in gains]
        lines.append(f"| {name} | {metrics['maj@1']:.3f} [{ci['maj@1'][0]:.3f}, {ci['maj@1'][1]:.3f}] | "
                     f"{metrics['maj@8']:.3f} | {metrics['pass@1']:.3f} | {metrics['pass@8']:.3f} "
                     f"[{ci['pass@8'][0]:.3f}, {ci['pass@8'][1]:.3f}] | "
                     f"{record['exploration']['distinct_correct_solutions']:.3f} | {' | '.join(paired)} |")
    return ("\nThe eval stage, K=8 samples at T=0.7 beside the greedy answer, on the same questions "
            "(the run's `results.json`; the paired gains from its records, pass@1's where the copy kept the "
            "sampled answers):\n\n"
            + "\n".join(lines) + "\n" + _mistakes_table(folder, list(results)))


def _mistakes_table(folder: Path, models: list[str]) -> str:
    """What each model's greedy answers are (``evaluation.mistake_kind``: right, a false written equation,
    true equations ending wrong, none written), read from the copied ``eval/<model>/samples.jsonl``."""
    from trl_reasoning.evaluation import MISTAKE_KINDS, mistake_shares
    from trl_reasoning.reporting import read_jsonl
    from trl_reasoning.stages.evaluation import eval_folder

    shares = {model: mistake_shares([r for r in read_jsonl(eval_folder(folder, model) / "samples.jsonl")
                                     if r["kind"] == "greedy"]) for model in models}
    shares = {model: share for model, share in shares.items() if share}  # a model without greedy rows
    lines = ["| model | " + " | ".join(MISTAKE_KINDS) + " |", "|---" * (len(MISTAKE_KINDS) + 1) + "|"]
    lines += [f"| {model} | " + " | ".join(f"{share[kind]:.3f}" for kind in MISTAKE_KINDS) + " |"
              for model, share in shares.items()]
    return ("\nWhat the greedy answers are, by their written `a op b = c` equations (share of questions): a "
            "false equation is an arithmetic slip, true equations that end wrong a wrong choice of operands "
            "or operation:\n\n" + "\n".join(lines) + "\n")


def starts_section(results: Path) -> str:
    """Finding (d), one block per split: EI from the pretrained model (4-shot prompted) round by round, and
    once both runs' eval stages are copied, against EI from the SFT policy with the same rounds and samples,
    per question on the same test questions; or nothing before a pretrained run was copied."""
    blocks = []
    for recipe_run, pretrained_run in PRETRAINED_RUNS.items():
        rounds = rounds_table(results / pretrained_run, "pretrained, 4-shot")
        gaps = _gaps(results / recipe_run, results / pretrained_run)
        if not rounds and not gaps:
            continue
        split, checkout = SMOLLM2_RECIPES[recipe_run]
        missing = [name for name in (recipe_run, pretrained_run)
                   if not (results / name / "results.json").exists()]
        gaps = gaps or f"The gap after EI: once the eval stages of {' and '.join(missing)} have been copied."
        parts = (rounds, _recipe_eval_table(results / pretrained_run, "initial"), gaps,
                 _machines(results / recipe_run, results / pretrained_run))
        command = checkout + PRETRAINED_COMMAND.format(folder=pretrained_run)
        blocks.append(f"### On {split}\n\n```bash\n{command}\n```\n\n"
                      + (ran_on(results / pretrained_run) + "\n\n").lstrip()
                      + "\n\n".join(part.strip("\n") for part in parts if part) + "\n")
    if not blocks:
        return ""
    return ("## Finding (d): SFT start against pretrained start\n\n"
            "Expert Iteration from the pretrained model (prompted 4-shot, then trained and evaluated "
            "zero-shot) with the SFT-start recipe's rounds and samples (3 rounds, 8 samples per train "
            "question), on the same test questions; every gap is paired by question. The fine-tunes "
            "differ: the pretrained recipe trains 4 epochs at batch 8 a round (its first round keeps about "
            "100 samples; 2 epochs of 16 left the model below its start), the SFT-start recipe 1 epoch at "
            "batch 16.\n\n"
            + "\n".join(blocks))


def _stage_records(folder: Path) -> dict[str, dict]:
    """A copied run's stage records by stage, in run order (SFT, then EI)."""
    paths = {stage: folder / stage / "stage_complete.json" for stage in ("sft", "ei")}
    return {stage: json.loads(path.read_text()) for stage, path in paths.items() if path.exists()}


def _machines(sft_run: Path, pre_run: Path) -> str:
    """A warning when the two starts' runs ran on different CPUs (``cpu_of`` their stage records: the
    cores used change the wall times, not the figures), or nothing."""
    records = [list(_stage_records(run).values()) for run in (sft_run, pre_run)]
    cpus = [{cpu_of(record) for record in run} for run in records]
    if not all(records) or cpus[0] == cpus[1]:
        return ""
    words = [" and ".join(sorted({cpu_words(record) for record in run})) for run in records]
    return (f"The two runs ran on different CPUs, the SFT start's on {words[0]}, the pretrained start's on "
            f"{words[1]}: the same recipe and seed give other figures on another CPU, so the gaps carry that "
            "difference too.")


def _gaps(sft_run: Path, pre_run: Path) -> str:
    """The two starts' greedy maj@1 before and after EI, each gap paired by question, and the gap's change
    through EI; or nothing before both eval stages were copied."""
    from trl_reasoning.metrics import paired_difference
    from trl_reasoning.stages.evaluation import greedy_correct as greedy

    if not all((run / "results.json").exists() for run in (sft_run, pre_run)):
        return ""
    pairs = {"before EI": (greedy(sft_run, "sft"), greedy(pre_run, "initial")),
             "after 3 EI rounds": (greedy(sft_run, "ei"), greedy(pre_run, "ei"))}
    ids = sorted(pairs["before EI"][0])
    if any(set(ids) != set(model) for pair in pairs.values() for model in pair):
        raise ValueError(f"{pre_run}: evaluated on other questions than {sft_run}")
    lines = [f"| on the {len(ids)} test questions | SFT start | pretrained start (4-shot) | "
             "gap, paired 95% |",
             "|---|---|---|---|"]
    gaps = {}
    for label, (mine, theirs) in pairs.items():
        gaps[label] = [mine[i] - theirs[i] for i in ids]
        g = paired_difference([mine[i] for i in ids], [theirs[i] for i in ids])
        lines.append(f"| greedy maj@1 {label} | {sum(mine.values()) / len(ids):.3f} | "
                     f"{sum(theirs.values()) / len(ids):.3f} | "
                     f"{g.mean:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}] |")
    change = paired_difference(gaps["after 3 EI rounds"], gaps["before EI"])
    return ("\n".join(lines) + f"\n\nThrough EI the gap changed by {change.mean:+.3f} "
            f"[{change.ci_low:+.3f}, {change.ci_high:+.3f}].\n")


def copy_ei_run(output_dir: Path, folder: Path) -> None:
    """Copy what the sections read from an EI run's ``output_dir`` into ``folder``: the stage records, each
    EI round's metrics, and the eval stage's ``results.json`` and per-model metrics with its greedy rows
    and, of its sampled rows, only which question each answered and whether rightly (what the paired gains
    and gaps read; the sampled texts stay in the run)."""
    import shutil

    from trl_reasoning.reporting import read_jsonl

    names = [*output_dir.glob("*/stage_complete.json"), *output_dir.glob("ei/round_*/metrics.json"),
             *output_dir.glob("eval/*/metrics.json"), output_dir / "results.json"]
    for path in names:
        if path.exists():
            (folder / path.parent.relative_to(output_dir)).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / path.relative_to(output_dir))
    for samples in output_dir.glob("eval/*/samples.jsonl"):
        rows = [row if row["kind"] == "greedy" else {key: row[key] for key in ("id", "kind", "correct")}
                for row in read_jsonl(samples)]
        copied = folder / samples.relative_to(output_dir)
        copied.parent.mkdir(parents=True, exist_ok=True)  # a model whose metrics.json is not written yet
        copied.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Copy an EI run's records into docs/results/FOLDER")
    parser.add_argument("folder", help=f"the copy's folder name: one of {', '.join(SMOLLM2_RECIPES)} or "
                                       f"{', '.join(PRETRAINED_RUNS.values())}")
    parser.add_argument("output_dir", type=Path, help="the run's --output_dir")
    options = parser.parse_args()
    copy_ei_run(options.output_dir, Path(__file__).parent / "results" / options.folder)
