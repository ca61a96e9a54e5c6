"""Run a comparison: for every seed, the shared stages (SFT, reward models), then every method from that
seed's SFT policy, then one evaluation of all of them on the seed's held-out questions.

Every piece resumes on its own: a stage folder with ``stage_complete.json`` is skipped, the evaluation of
a model is reused while its weights and settings are unchanged (``stages.evaluation``), and a finished
seed leaves ``seed_results.json``. Kill the run anywhere and rerun the same command.

    OUTPUT/seed_0/sft/           the seed's SFT policy (and orm/, prm/)
    OUTPUT/seed_0/ei/ei/         a method's stage folder (method ei, stage ei)
    OUTPUT/seed_0/eval/NAME/     each model's held-out report and samples
    OUTPUT/seed_0/seed_results.json
"""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

from ..faults import fault_point
from ..reporting import write_json_atomic
from .plan import ComparisonPlan, Method

SEED_RESULTS = "seed_results.json"


def seed_folder(output: Path, seed: int) -> Path:
    return Path(output) / f"seed_{seed}"


def run_seed(plan: ComparisonPlan, methods: list[Method], seed: int, output: Path) -> dict:
    """Run (or resume) one seed; returns its record (also written to ``seed_results.json``)."""
    from .. import pipeline
    from ..progress import stage_banner
    from ..stages import evaluate_models, get_stage, run_stage

    folder = seed_folder(output, seed)
    recipe = plan.for_seed(plan.recipe, seed, folder)
    ctx = pipeline.run_context(recipe)
    total = len(plan.shared_stages) + len(methods) + 1
    for index, name in enumerate(plan.shared_stages, start=1):
        title = f"seed {seed}: {get_stage(name).title or name}"
        with stage_banner(recipe, name, title, index, total, ctx.state):
            run_stage(ctx, name)
    found = {"models": {plan.baseline: ctx.policy}, "samples": {plan.baseline: 0}, "conditioning": {},
             "methods": {plan.baseline: {"stage": "sft", "entry": plan.baseline}}}
    found["wall_seconds"] = {plan.baseline: ctx.stage_records.get("sft", {}).get("wall_seconds")}
    for index, method in enumerate(methods, start=len(plan.shared_stages) + 1):
        _run_method(ctx, plan, method, seed, folder, found, index, total)
    reranker = recipe.reward_model or ctx.reward_models.get("orm") or ctx.reward_models.get("prm")
    with stage_banner(recipe, "eval", f"seed {seed}: held-out evaluation", total, total, ctx.state):
        results = evaluate_models(ctx, found["models"], reranker, found["conditioning"])
    record = {
        "seed": seed, "results": results, "samples": found["samples"], "wall_seconds": found["wall_seconds"],
        "methods": found["methods"], "reranker": reranker, "num_questions": len(ctx.held_out),
        "eval_split": recipe.eval_split, "machine": machine(),
    }
    if ctx.state.is_main_process:
        write_json_atomic(folder / SEED_RESULTS, record)
    ctx.state.wait_for_everyone()
    fault_point(f"seed_done:{seed}")
    return record


def _run_method(ctx, plan: ComparisonPlan, method: Method, seed: int, folder: Path, found: dict,
                index: int, total: int) -> None:
    """Run ``method`` from the seed's SFT policy into ``folder/<method>/`` and add its models to ``found``."""
    from ..progress import stage_banner
    from ..stages import run_stage

    recipe = plan.for_seed(method.recipe, seed, folder / method.name)
    run = dataclasses.replace(ctx, recipe=recipe, models={}, conditioning={}, samples_used={},
                              stage_records={})
    with stage_banner(recipe, method.stage, f"seed {seed}: method {method.name}", index, total, ctx.state):
        done = run_stage(run, method.stage)
    for entry, model in run.models.items():
        if not entry.startswith(method.stage):
            continue
        name = method.name + entry[len(method.stage):]  # 'rcrl unconditioned' -> 'rcrl_dense unconditioned'
        found["models"][name] = model
        found["samples"][name] = run.samples_used.get(entry, 0)
        found["methods"][name] = {"stage": method.stage, "entry": entry, "method": method.name}
        found["wall_seconds"][name] = done.get("wall_seconds")
        if entry in run.conditioning:
            found["conditioning"][name] = run.conditioning[entry]
    drawn = found["samples"].get(method.name, 0)
    if plan.budget and drawn and drawn != plan.budget and ctx.state.is_main_process:
        print(f"compare: warning: method {method.name} drew {drawn} training samples, the budget is "
              f"{plan.budget}", flush=True)


def load_seed(output: Path, seed: int) -> dict | None:
    """A finished seed's record, or None."""
    path = seed_folder(output, seed) / SEED_RESULTS
    return json.loads(path.read_text()) if path.exists() else None


def machine() -> dict:
    """The CPU (model name and the matrix instruction sets that change CPU training figures), as results
    differ between machines."""
    info = {"platform": platform.platform(), "processor": platform.processor()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            info["matrix_extensions"] = sorted(f for f in flags
                                               if f.startswith(("avx512", "amx")) or f == "avx2")
            break
    import os

    info["cores"] = os.cpu_count()
    return info
