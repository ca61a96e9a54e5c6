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
from .runner import run_seed, run_shared
from .workers import PieceHeld, WorkerError, seed_order, this_worker

__all__ = ["ComparisonPlan", "Method", "load_plan", "run_comparison", "select"]


def run_comparison(recipe_path: str | Path, seeds: list[int], output: str | Path | None = None,
                   only: list[str] | None = None, overrides: list[tuple[str, str]] = (),
                   plan: ComparisonPlan | None = None) -> dict:
    """Run (or resume) every seed of the comparison, then write ``results.json``/``results.md`` and the
    figures into ``output`` (default: the recipe's ``output_dir``); returns the results. ``plan``: the
    recipe's ``load_plan``, when the caller has it already. In a worker started by ``--workers``
    (``workers``), run the pieces no other worker holds and return ``{}``: the coordinator reports."""
    plan = plan or load_plan(recipe_path, overrides)
    methods = select(plan, only)
    output = Path(output or plan.recipe.output_dir)
    index, count = this_worker()
    if index:
        print(f"compare: worker {index} of {count}, on cores {sorted(os.sched_getaffinity(0))}", flush=True)
    records, later, order = {}, [], seed_order(seeds, max(index - 1, 0))
    if count > 1:  # every seed's SFT first: then only methods, small pieces, are left to share at the end
        for seed in order:
            run_shared(plan, methods, seed, output)
    for seed in order:  # a seed whose shared stages another worker runs: after the others
        try:
            records[seed] = run_seed(plan, methods, seed, output, wait=False)
        except PieceHeld:
            later.append(seed)
    for seed in later:
        records[seed] = run_seed(plan, methods, seed, output)
    if index:
        return {}
    held = [seed for seed in seeds if records[seed] is None]
    if held:  # only another worker's claims make a piece held; a coordinator's workers have all exited
        raise WorkerError(f"compare: seeds {held} have pieces another process holds; rerun when it is done")
    results = summarise(plan, seeds, output, [records[seed] for seed in seeds])
    print(Path(output, "results.md").read_text(), flush=True)
    return results
