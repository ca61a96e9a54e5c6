"""``trl-reasoning compare RECIPE --seeds 0 1 2``: the paper's comparison over seeds.

For every seed: one SFT policy (and the recipe's reward models), then every method of the recipe's
``compare.methods`` from that policy with the same budget of sampled training solutions, all evaluated on
the seed's held-out questions; then means over seeds, gains over SFT and gaps to the reference method
with two-level bootstrap intervals, and the figures (``report``). Resumes per seed and per method.
"""

from __future__ import annotations

import os
from pathlib import Path

from .plan import ComparisonPlan, Method, load_plan, select
from .report import summarise
from .runner import PieceHeld, run_seed
from .workers import seed_order, this_worker, wait_for

__all__ = ["ComparisonPlan", "Method", "load_plan", "run_comparison", "select"]


def run_comparison(recipe_path: str | Path, seeds: list[int], output: str | Path | None = None,
                   only: list[str] | None = None, overrides: list[tuple[str, str]] = (),
                   plan: ComparisonPlan | None = None, workers: list | None = None) -> dict:
    """Run (or resume) every seed of the comparison, then write ``results.json``/``results.md`` and the
    figures into ``output`` (default: the recipe's ``output_dir``); returns the results (empty where
    another process still runs a piece: the last to finish writes them). ``plan``: the recipe's
    ``load_plan``, when the caller has it already; ``workers``: the copies ``--workers`` started
    (``workers.start_workers``), waited for before the report."""
    plan = plan or load_plan(recipe_path, overrides)
    methods = select(plan, only)
    output = Path(output or plan.recipe.output_dir)
    index, count = this_worker()
    if count > 1:
        cores = sorted(os.sched_getaffinity(0))
        print(f"compare: worker {index + 1} of {count}, on cores {cores}", flush=True)
    records, later = {}, []
    for seed in seed_order(seeds, index):  # a seed whose shared stages another worker runs: after the rest
        try:
            records[seed] = run_seed(plan, methods, seed, output, wait=False)
        except PieceHeld:
            later.append(seed)
    for seed in later:
        records[seed] = run_seed(plan, methods, seed, output)
    wait_for(workers or [])
    if index > 0:  # a copy started by --workers: the first worker writes the report
        return {}
    for seed in seeds:
        if records.get(seed) is None:  # finished by another worker meanwhile, or still running there
            records[seed] = run_seed(plan, methods, seed, output)
    if any(records[seed] is None for seed in seeds):
        print(f"compare: another process still runs pieces of {output}; the last one to finish writes "
              "the report", flush=True)
        return {}
    results = summarise(plan, seeds, output, [records[seed] for seed in seeds])
    print(Path(output, "results.md").read_text(), flush=True)
    return results
