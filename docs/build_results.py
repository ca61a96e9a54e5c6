"""Build the docs' results pages from the runs' own files, so a rerun updates the page and nothing is typed.

For each comparison run folder given (``trl-reasoning compare`` output: ``results.json``, its two
figures and each finished method's record), copy those files into ``docs/results/<name>/`` and render
the page section from the copied ``results.json`` with the same code that writes the run's
``results.md`` (tables, intervals, findings). A run still going has its records copied (they resume it on
another machine) and no section yet.

    python docs/build_results.py --run compare_quickstart=runs/compare \\
        --run quickstart_seeds=runs/quickstart_seeds
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # docs/: the page modules beside this file

import benchmark_pages  # noqa: E402 - beside this file (docs/), found through the path set above
import readme_table  # noqa: E402
import real_model_pages  # noqa: E402

from trl_reasoning.compare.report import CURVE_FILES, results_markdown
from trl_reasoning.compare.runner import METHODS

DOCS = Path(__file__).resolve().parent
RESULTS = DOCS / "results"
FACTS = "arithmetic_facts_seed_{seed}.json"  # benchmarks/arithmetic_facts.py's rows, per seed
REWARD_MODEL_FILE = "{kind}_metrics.json"  # a seed's orm/ or prm/ metrics.json, copied beside its records
# name -> (page, title, the command that produced the run)
RUNS = {
    "compare_quickstart": ("comparison.md", "The algorithm comparison on the arithmetic task",
                           "trl-reasoning compare recipes/compare_quickstart.yaml --seeds 0 1 2 --workers 2"),
    "compare_quickstart_implicit_orm": (
        "comparison.md", "Superseded: the same comparison with the ORM's implicit head (the recipe now has "
        "the value head, chosen on validation)",
        "git checkout 0ad3790 && trl-reasoning compare recipes/compare_quickstart.yaml --seeds 0 1 2"),
    "compare_quickstart_first": (
        "comparison.md", "Superseded: the first configuration, seed 0 (SFT under-trained)",
        "git checkout f3db71c && trl-reasoning compare recipes/compare_quickstart.yaml --seeds 0 "
        "--only sft_more,ei,ei_reinit,ppo_sparse,ppo_dense_orm,rcrl,grpo"),
    "compare_tuning": ("tuning.md", "Settings chosen on the validation split (seed 100)",
                       "trl-reasoning compare recipes/compare_quickstart_tuning.yaml --seeds 100 "
                       "--output runs/compare_tuning"),
    "smollm2_compare_family": (
        "real_model.md", "EI, PPO, RCRL, TRL GRPO and process GRPO at equal wall time, on SVAMP's family "
        "split", "git checkout 05204f2 && trl-reasoning compare recipes/smollm2_svamp_compare.yaml --seeds 0 "
        "--output runs/smollm2_compare_family  # PPO's settings before trial pool32_w8_it1's"),
    "smollm2_compare": ("real_model.md", "Former split (297 of its 300 test problems had a variation in "
                        "train): EI, PPO, RCRL, TRL GRPO and process GRPO at equal wall time",
                        "git checkout 6a93a44 && trl-reasoning compare recipes/smollm2_svamp_compare.yaml "
                        "--seeds 0 --output runs/smollm2_compare"),
    "quickstart_seeds": ("comparison.md", "The quickstart over seeds never used to choose its settings",
                         "trl-reasoning compare recipes/quickstart.yaml --seeds 10 11 12 13 14 "
                         "--output runs/quickstart_seeds"),
}
PAGE_HEADERS = {
    "real_model.md": "# Real model results\n\nSmolLM2-135M-Instruct on SVAMP. Built by `python "
                     "docs/build_results.py` from the runs' files under `docs/results/`. Earlier measured "
                     "runs: [real_model_history.md](real_model_history.md).\n\n**Which split.** The sections "
                     "and blocks titled 'on SVAMP's family split' use the current split (696 train / 304 "
                     "test, whole problem families on one side: "
                     "[comparisons.md](../comparisons.md#held-out-means-held-out)). "
                     "Every other one used the former id-based 700/300 split, in which 297 of the 300 "
                     "test problems had a variation in train (the same story with other numbers or another "
                     "question): their held-out accuracy partly measures recall of those siblings, and "
                     "methods that sample and train on the train questions (EI above all) gain most from "
                     "them, so read their gains as upper bounds; compare the two comparison sections.\n",
    "tuning.md": "# Choosing the comparison's settings\n\nEvery method of `recipes/compare_quickstart.yaml` "
                 "with 3-4 settings, on 500 validation questions carved from the train split (more "
                 "train-split problems, no solution shared with the training questions) and seed 100, "
                 "which no reported result uses. Each method's best greedy maj@1 is the setting the "
                 "comparison uses. Built by `python docs/build_results.py` from the sweep's "
                 "`results.json`.\n\n"
                 "**Why methods end below their SFT start here** (the step-error table at the end of "
                 "the page is built from the runs' own samples; read its lines for the figures). Every "
                 "equation the tiny model writes uses one memorised fact `a op b`, and it learns facts "
                 "one by one. The RL methods sample 512 of the 4,000 SFT questions; a fine-tune on their "
                 "own samples rehearses the facts of those questions only. At the learning rates that "
                 "lose least, EI keeps its error on the facts it rehearses and loses on the others "
                 "(forgetting); at higher rates the error rises on both (the fine-tune itself disturbs "
                 "the model, which more epochs partly repair). Two more epochs of SFT on all 4,000 "
                 "references (`sft_more`) lower both, so the start was not converged either. RCRL "
                 "fine-tunes on every distinct sample, right or wrong: right samples repeat and collapse "
                 "under deduplication while wrong ones differ, so a large share of the equations in its "
                 "rows are wrong, and the tiny model does not learn in this budget to write differently "
                 "after `[GOOD]` than after `[BAD]` (conditioned and unconditioned maj@1 are close), so it "
                 "learns the wrong facts too. On the held-out learning test, rows kept as drawn "
                 "(`deduplicate: false`) and 10 epochs a round did learn the tag (one run; "
                 "[Return-conditioned RL](../algorithms/return-conditioned.md)); this sweep predates "
                 "that option.\n",
    "comparison.md": "# Results on the arithmetic task\n\nBuilt by `python docs/build_results.py` from "
                     "each run's `results.json` (copied under `docs/results/<run>/`). Every figure is a mean "
                     "over seeds with each seed's value in brackets; every gain and gap carries a 95% "
                     "interval over seeds and questions.\n\n"
                     "**How to read the comparison.** One command ran it, `--workers 2` (each worker on "
                     "one core of the 2-core AMD EPYC, AVX2, no AMX): 8,921 s (2 h 29 min) from start to "
                     "report, its log's first and last lines; the stage wall seconds are each worker's on "
                     "its own core. Every method that does not read the ORM reproduced the superseded run "
                     "below to the bit (the same SFT starts, seeds and kernels on this machine). What "
                     "changed is what reads the ORM, now with the value head (rerank@4, `ppo_dense_orm`: "
                     "its maj@1 loss to SFT halves), and dense RCRL, whose forced `[GOOD]` is now sampled "
                     "by vLLM instead of HF generate (other random draws). The ORM's reranking is below a "
                     "random pick (rerank@4 under pass@1) although its pooled held-out AUROC is above 0.5: "
                     "the section on the ORM's reranking measures why (it ranks questions, not answers). "
                     "No RL method ends above its SFT "
                     "start in maj@1 with an interval that excludes 0, and SFT trained further on the "
                     "references (`sft_more`) gains most: the start is not a converged SFT policy. The "
                     "last section shows why: the same seed's SFT stage reproduces to the bit (1 or 2 "
                     "threads give identical weights on this machine), but at the recipe's learning rate "
                     "(3e-3) it stops far below what a lower one (1e-3) reaches on seed 0, and across seeds "
                     "it lands anywhere in a wide band (the SFT spread line). The learning rate, not the "
                     "machine's "
                     "summation order, moves the SFT policy; another CPU's kernels perturb training as a "
                     "seed does. **Why the SFT spread across seeds is not within 3 points here** (the "
                     "seed-spread table, on validation seeds no result uses): a lower learning rate (1e-3) "
                     "lifts SFT toward the ceiling, which leaves RL little room, and its seeds spread as "
                     "widely; the harder task with multiplication at 1e-3 leaves room and spreads as "
                     "widely too. The tiny model learns the arithmetic facts one by one, and which ones it "
                     "has learned after 10 epochs depends on the seed's data, initial weights and order. "
                     "So the recipe keeps its setting, and every gain is paired within a seed (each "
                     "method against its own seed's SFT start) with an interval over seeds and questions "
                     "that carries the spread. The step-error tables explain each row below its start: "
                     "the RL methods "
                     "rehearse the facts of the 512 questions they sample and lose on the others, and "
                     "RCRL fine-tunes on rows of which a large share of the equations are wrong.\n\n"
                     "The first configuration's seed-0 run is kept for what it showed: its SFT start "
                     "(3 epochs) was under-trained. The recipe now trains SFT for 10 epochs on numbers up "
                     "to 20, at 4,096 samples per method; its settings come from "
                     "[the validation sweep](tuning.md).\n",
}


def copy_run(name: str, folder: Path) -> Path:
    """Copy a comparison's ``results.json`` and figures (once it finished) and every finished method's
    record (``seed_S/methods/*.json``, as soon as it exists) into ``docs/results/<name>/``. The records
    alone resume the run elsewhere: ``cp -r docs/results/<name>/seed_* OUTPUT/`` and rerun ``compare``."""
    target = RESULTS / name
    target.mkdir(parents=True, exist_ok=True)
    for record in sorted(folder.glob(f"seed_*/{METHODS}/*.json")):
        copied = target / record.relative_to(folder)
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(record, copied)
    if (folder / "results.json").exists():
        shutil.copy2(folder / "results.json", target / "results.json")
    for figure in CURVE_FILES.values():
        if (folder / figure).exists():
            shutil.copy2(folder / figure, target / figure)
    for metrics in sorted(folder.glob("seed_*/[op]rm/metrics.json")):  # the reward models' held-out scores
        copied = target / metrics.parent.parent.name / REWARD_MODEL_FILE.format(kind=metrics.parent.name)
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(metrics, copied)
    copy_reward_logs(folder, target)
    for rebuilt in [*folder.glob("seed_*/rollouts/*.json"), *folder.glob("seed_*/start_pass_rates.json")]:
        copied = target / rebuilt.relative_to(folder)  # benchmarks/rollouts_against_start.py wrote these
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(rebuilt, copied)
    recipe = _recipe_of(name)
    if recipe is not None and "git checkout" not in RUNS[name][2] and _task_of(recipe) == "arithmetic":
        write_fact_tables(recipe, folder, target)
    return target


def copy_reward_logs(folder: Path, target: Path) -> None:
    """Each on-policy method's logged rollout rewards (``seed_S/METHOD/STAGE/trainer_state.json``'s
    ``reward`` entries) into ``target/seed_S/rewards/METHOD.json``: what the reward-trend figure reads."""
    from trl_reasoning.metrics import logged_values

    for state in sorted(folder.glob("seed_*/*/*/trainer_state.json")):
        logged = [{"step": step, "reward": reward}
                  for step, reward in logged_values(json.loads(state.read_text())["log_history"])]
        if logged:
            copied = target / state.parents[2].name / "rewards" / f"{state.parents[1].name}.json"
            copied.parent.mkdir(parents=True, exist_ok=True)
            copied.write_text(json.dumps(logged, indent=1) + "\n")


def _recipe_of(name: str) -> str | None:
    found = re.search(r"recipes/\S+\.yaml", RUNS[name][2])
    return str(DOCS.parent / found.group(0)) if found else None


def _task_of(recipe: str) -> str:
    from trl_reasoning.recipes import load_recipe

    return load_recipe(recipe).task


def write_fact_tables(recipe: str, folder: Path, target: Path) -> None:
    """For each seed whose eval samples are in ``folder``: step errors by arithmetic fact
    (benchmarks/arithmetic_facts.py), the measured explanation of a method ending below its start. A run
    resumed on another machine from its copied records has only the samples of what it ran there: the
    rows of methods whose samples are gone stay as an earlier copy computed them; a seed's table goes
    only when the seed's records are gone."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("arithmetic_facts", DOCS.parent / "benchmarks" /
                                                  "arithmetic_facts.py")
    facts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(facts)
    for table in target.glob(FACTS.format(seed="*")):
        if not (target / f"seed_{table.stem.rsplit('_', 1)[1]}").is_dir():
            table.unlink()
    for seed_folder in sorted(folder.glob("seed_*")):
        if any((seed_folder / "eval").glob("*/samples.jsonl")):
            seed = int(seed_folder.name.split("_", 1)[1])
            path = target / FACTS.format(seed=seed)
            rows = {row["method"]: row for row in facts.table(recipe, folder, seed)}
            earlier = json.loads(path.read_text()) if path.exists() else []
            merged = facts.ordered([*(row for row in earlier if row["method"] not in rows), *rows.values()])
            path.write_text(json.dumps(merged, indent=2) + "\n")


def _below_start(rows: list[dict]) -> str:
    """One line per method that ends below the SFT start: where its extra wrong equations are."""
    start = next((r for r in rows if r["method"] == "sft"), None)
    if start is None:
        return ""
    lines = []
    for r in rows:
        if r["method"] == "sft" or r["maj@1"] >= start["maj@1"]:
            continue
        trained = ("" if r["trained_rows_error"] is None
                   else f"; {r['trained_rows_error']:.3f} of the equations it fine-tuned on were wrong")
        lines.append(f"- {r['method']} ends below the start ({r['maj@1']:.3f} < {start['maj@1']:.3f}): "
                     f"wrong equations on facts in the RL questions {start['error_in']:.3f} -> "
                     f"{r['error_in']:.3f}, on other facts {start['error_out']:.3f} -> {r['error_out']:.3f}"
                     f"{trained}.")
    return "\n".join(lines)


def facts_section(name: str) -> str:
    """The step-error table of each seed written by ``write_fact_tables``, or nothing."""
    parts = []
    for path in sorted((RESULTS / name).glob(FACTS.format(seed="*"))):
        seed = path.stem.rsplit("_", 1)[1]
        lines = ["| method | maj@1 | wrong equations: facts in the RL questions' references (count) | "
                 "wrong equations: other facts (count) | wrong equations in its own training rows |",
                 "|---|---|---|---|---|"]
        for r in json.loads(path.read_text()):
            trained = "" if r["trained_rows_error"] is None else f"{r['trained_rows_error']:.3f}"
            lines.append(f"| {r['method']} | {r['maj@1']:.3f} | {r['error_in']:.3f} ({r['equations_in']}) | "
                         f"{r['error_out']:.3f} ({r['equations_out']}) | {trained} |")
        below = _below_start(json.loads(path.read_text()))
        parts.append(f"Seed {seed}:\n\n" + "\n".join(lines) + "\n\n" + below)
    if not parts:
        return ""
    return ("### Step errors by arithmetic fact\n\nEvery equation `a op b = c` in a greedy held-out "
            "completion uses one fact `a op b`; the tiny model learns facts one by one. Share of wrong "
            "equations, split by whether the fact is in the reference solutions of the questions the RL "
            "methods sample, and (EI, RCRL) the share of wrong equations among the rows the method "
            "fine-tuned on. Built from the run's eval samples by\n`python benchmarks/arithmetic_facts.py "
            "RECIPE OUTPUT --seed S`.\n\n" + "\n\n".join(parts) + "\n")


def reward_models_section(name: str, results: dict) -> str:
    """Per seed, the ORM's and PRM's held-out AUROC (their ``metrics.json``, copied by ``copy_run``),
    beside the SFT policy's rerank@k and pass@1: how much a reranker or dense reward can add."""
    rows = []
    for seed in results["seeds"]:
        found = {kind: RESULTS / name / f"seed_{seed}" / REWARD_MODEL_FILE.format(kind=kind)
                 for kind in ("orm", "prm")}
        scores = {kind: json.loads(path.read_text())["heldout"] for kind, path in found.items()
                  if path.exists()}
        if scores:
            rows.append((seed, scores))
    if not rows:
        return ""
    k, start = results["k"], results["methods"][results["baseline"]]["metrics"]
    lines = ["| seed | ORM AUROC | ORM accuracy | PRM AUROC | PRM step accuracy |", "|---|---|---|---|---|"]
    for seed, scores in rows:
        orm, prm = scores.get("orm", {}), scores.get("prm", {})
        cells = [orm.get("final_auroc"), orm.get("final_accuracy"), prm.get("final_auroc"),
                 prm.get("step_accuracy")]
        lines.append(f"| {seed} | " + " | ".join("" if c is None else f"{c:.3f}" for c in cells) + " |")
    rerank = start.get(f"rerank@{k}", {}).get("mean")
    tail = "" if rerank is None else (
        f" The SFT policy's rerank@{k} is {rerank:.3f} against its pass@1 of {start['pass@1']['mean']:.3f} "
        f"(a random pick among the {k}) and its maj@{k} of {start[f'maj@{k}']['mean']:.3f}"
        + (": the reranker picks no better than chance." if rerank <= start["pass@1"]["mean"] else "."))
    return ("### The reward models\n\nHeld-out AUROC of each seed's reward models on samples of the "
            "held-out questions (their `metrics.json`), the figure behind rerank@k and the dense PPO "
            f"rows.{tail}\n\n" + "\n".join(lines) + "\n\n")


# The benchmark scripts' JSON output, under RESULTS (read where build_pages runs, so a test may move RESULTS)
SFT_STABILITY = "sft_stability/rows.json"  # benchmarks/sft_stability.py's JSON line
SEED_SPREAD = "sft_stability/seed_spread.json"  # benchmarks/sft_seed_spread.py's JSON line
RM_SWEEP = "rm_sweep"  # benchmarks/reward_model_sweep.py's <stage>_sweep.json files
RERANKER = "compare_quickstart/reranker_within_question.json"  # benchmarks/reranker_within_question.py
RM_SWEEP_COMMIT = "0ad3790"  # the recipe the sweep ran on (the ORM's implicit head, since replaced)


def section(name: str) -> str:
    """A run's page section, from its copied ``results.json``."""
    _, title, command = RUNS[name]
    folder = RESULTS / name
    results = json.loads((folder / "results.json").read_text())
    body = results_markdown(results).split("\n", 1)[1]  # the run's own title line is replaced
    for figure in CURVE_FILES.values():
        body = body.replace(f"]({figure})", f"]({name}/{figure})")
    seeds = ", ".join(map(str, results["seeds"]))
    return (f"## {title}\n\n```bash\n{command}\n```\n\nSeeds {seeds}.{still_to_run(command, results)}{body}\n"
            f"{reward_models_section(name, results)}{facts_section(name)}")


def still_to_run(command: str, results: dict) -> str:
    """A note naming the recipe's methods that ``results`` lacks (a report of a run still going, written
    with ``compare --only`` and the finished methods), or nothing once every method is there."""
    from trl_reasoning.compare import load_plan

    recipe = re.search(r"recipes/\S+\.yaml", command)
    if recipe is None or "--only" in command:  # a run of some methods on purpose
        return ""
    listed = [m.name for m in load_plan(DOCS.parent / recipe.group(0), []).methods]
    missing = [name for name in listed if name not in results["methods"]]
    if not missing:
        return ""
    return (f" **The run is still going:** {len(listed) - len(missing)} of {len(listed)} methods have "
            f"finished and are reported here; still to run: {', '.join(missing)}. The command above "
            "resumes it.\n")


def build_pages() -> list[Path]:
    """Write every page that has at least one copied run; returns the pages written."""
    pages: dict[str, list[str]] = {}
    for name, (page, _, _) in RUNS.items():
        if (RESULTS / name / "results.json").exists():
            pages.setdefault(page, []).append(section(name))
    real = real_model_pages.sections(RESULTS, pages.pop("real_model.md", []))
    if real:
        pages["real_model.md"] = real
    benchmarks = [("comparison.md", benchmark_pages.sft_stability_section(RESULTS / SFT_STABILITY)),
                  ("comparison.md", benchmark_pages.sft_seed_spread_section(RESULTS / SEED_SPREAD)),
                  ("comparison.md", benchmark_pages.reranker_section(RESULTS / RERANKER)),
                  ("tuning.md", benchmark_pages.reward_model_sweep_section(RESULTS / RM_SWEEP,
                                                                           RM_SWEEP_COMMIT))]
    for page, text in benchmarks:
        if text:  # "" where the benchmark's file is absent
            pages.setdefault(page, []).append(text)
    written = []
    for page, sections in pages.items():
        path = RESULTS / page
        path.write_text(PAGE_HEADERS.get(page, "") + "\n" + "\n".join(sections))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", default=[], metavar="NAME=FOLDER",
                        help="a run to copy in first (its finished methods' records; results and "
                             f"figures once it finished); NAME one of {', '.join(RUNS)}")
    args = parser.parse_args()
    for item in args.run:
        name, _, folder = item.partition("=")
        if name not in RUNS or not Path(folder).is_dir():
            raise SystemExit(f"--run {item}: expected NAME=FOLDER with NAME in {', '.join(RUNS)} and "
                             "FOLDER a comparison's output folder")
        copy_run(name, Path(folder))
    for path in build_pages():
        print(f"wrote {path}")
    if readme_table.update_readme(RESULTS / "quickstart_seeds" / "results.json"):
        print(f"wrote {readme_table.README}'s quickstart table")


if __name__ == "__main__":
    main()
