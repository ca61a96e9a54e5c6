"""The paper's comparison at small scale: EI, PPO (sparse), PPO (dense, ORM), RCRL (sparse and dense,
heuristic step tags), TRL's GRPOTrainer (a stage this benchmark registers) and process-supervised GRPO
(heuristic step rewards), all from the same SFT tiny checkpoint on the arithmetic task with the same
sample budget.

Prints (and writes to ``OUTPUT/comparison.md`` / ``.json``) one table: maj@1 (greedy), maj@K,
rerank@K (with the ORM trained on SFT samples), pass@1, pass@K, training samples used and wall time;
plus ``accuracy_vs_samples.png``. RCRL is evaluated conditioned on its good tag and, as its own row,
unconditioned. Every stage resumes from ``OUTPUT`` after a crash.

    python benchmarks/compare_algorithms.py [--recipe recipes/compare_quickstart.yaml] [--output runs/compare]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from trl_reasoning import pipeline
from trl_reasoning.recipes import load_recipe, parse_overrides
from trl_reasoning.reporting import markdown_table, plot_curves, write_json_atomic, write_text_atomic
from trl_reasoning.stages import (
    Stage,
    comparison_table,
    evaluate_models,
    gains_table,
    register_stage,
    resolve_use_vllm,
    rl_dataset,
    run_stage,
    stage_config,
)


def _grpo_config():
    from trl import GRPOConfig

    return GRPOConfig


def run_grpo(ctx, folder: Path) -> dict:
    """TRL's GRPOTrainer with our correctness reward, settings from the recipe's ``ppo`` section."""
    from trl import GRPOTrainer

    from trl_reasoning._compat import distributed_env, enable_vllm_colocate_on_cpu, restore_distributed_env
    from trl_reasoning.eval_callback import samples_drawn
    from trl_reasoning.loading import load_tokenizer
    from trl_reasoning.rewards import CorrectnessReward

    recipe, grpo_fields = ctx.recipe, {f.name for f in dataclasses.fields(_grpo_config())}
    section = {k: v for k, v in recipe.section("ppo").items() if k in grpo_fields and k not in ("beta",)}
    section["use_vllm"] = resolve_use_vllm(section.get("use_vllm", False), ctx.policy)
    if section["use_vllm"]:
        enable_vllm_colocate_on_cpu()  # TRL's colocated engine on CPU (a no-op on GPU)
    args = stage_config(
        _grpo_config(), section, folder, recipe.seed, save_strategy="no", report_to=recipe.report_to
    )
    launch_env = distributed_env()
    trainer = GRPOTrainer(model=ctx.policy, reward_funcs=[CorrectnessReward(recipe.task)], args=args,
                          train_dataset=rl_dataset(ctx.rl_train),
                          processing_class=load_tokenizer(ctx.policy, padding_side="left"))
    try:
        trainer.train()
    finally:
        restore_distributed_env(launch_env)
    trainer.save_model(str(folder / "final_model"))
    return {"cumulative_samples": samples_drawn(trainer, trainer.state.global_step)}


# A stage of this benchmark only: recipes that import this module may list it too.
register_stage(Stage("grpo", _grpo_config, run_grpo, order=33, role="rl",
                     help="GRPO (benchmarks/compare_algorithms.py): the ppo section's GRPOConfig fields."))


def timed(name: str, seconds: dict, func, *args):
    start = time.perf_counter()
    result = func(*args)
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    return result


def variant(ctx, folder: Path, **sections):
    """The run context with other stage sections, writing into ``folder``, sharing the SFT policy and ORM."""
    recipe = ctx.recipe
    for name, values in sections.items():
        recipe = recipe.with_section(name, values)
    recipe = dataclasses.replace(recipe, output_dir=str(folder))
    return dataclasses.replace(ctx, recipe=recipe, models={}, conditioning={}, samples_used={})


def run_variant(ctx, name: str, stage: str, seconds: dict, into, **sections) -> None:
    """Run ``stage`` in a variant context and collect its eval entries under ``name``."""
    run = variant(ctx, Path(ctx.recipe.output_dir) / name, **sections) if sections or name != stage else ctx
    timed(name, seconds, run_stage, run, stage)
    for entry, model in run.models.items():
        if not entry.startswith(stage):
            continue
        renamed = entry.replace(stage, name, 1)
        into["models"][renamed] = model
        into["samples"][renamed] = run.samples_used.get(entry, 0)
        if entry in run.conditioning:
            into["conditioning"][renamed] = run.conditioning[entry]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/compare_quickstart.yaml")
    parser.add_argument("--output", default=None, help="run folder (default: the recipe's output_dir)")
    parser.add_argument("--only", default=None, help="comma-separated methods to run and compare with sft "
                                                     "(default: all); finished ones are reused")
    args = parser.parse_args()
    overrides = [("output_dir", args.output)] if args.output else []
    recipe = load_recipe(args.recipe, parse_overrides([]) + overrides)
    out = Path(recipe.output_dir)
    times_path = out / "wall_seconds.json"
    seconds = json.loads(times_path.read_text()) if times_path.exists() else {}
    ctx = pipeline.run_context(recipe)
    timed("sft", seconds, run_stage, ctx, "sft")
    timed("orm", seconds, run_stage, ctx, "orm")
    found = {"models": {"sft": ctx.policy}, "samples": {"sft": 0}, "conditioning": {}}
    ppo, rcrl = recipe.section("ppo"), recipe.section("rcrl")
    for name, stage, sections in (
        ("ei", "ei", {}), ("ppo_sparse", "ppo", {"ppo": ppo}),
        ("ppo_dense_orm", "ppo", {"ppo": {**ppo, "dense_rewards": ["orm"]}}), ("rcrl", "rcrl", {}),
        ("rcrl_dense_heuristic", "rcrl", {"rcrl": {**rcrl, "tag_mode": "dense", "step_reward": "heuristic"}}),
        ("grpo", "grpo", {}), ("process_grpo_heuristic", "process_grpo", {}),
    ):
        if args.only and name not in args.only.split(","):
            continue
        run_variant(ctx, name, stage, seconds, found, **sections)
        write_json_atomic(times_path, seconds)
    results = evaluate_models(ctx, found["models"], ctx.reward_models["orm"], found["conditioning"])
    samples = found["samples"]
    table = comparison_table(results, samples)
    gains = gains_table(out, results, baseline="sft")
    wall = markdown_table(["stage", "wall seconds"], [[k, round(v, 1)] for k, v in seconds.items()])
    text = f"# Algorithm comparison ({recipe.task}, same SFT start)\n\n{table}\n\n{gains}\n\n{wall}\n"
    if ctx.state.is_main_process:
        write_text_atomic(out / "comparison.md", text)
        write_json_atomic(
            out / "comparison.json", {"results": results, "samples": samples, "wall_seconds": seconds}
        )
        _plot(out, results, samples)
        print(text)


def _plot(out: Path, results: dict, samples: dict) -> None:
    """maj@1 against training samples: one line from the SFT point to each method's final point, and
    EI / RCRL's per-round points where their runs recorded them."""
    start = results["sft"]["metrics"]["maj@1"]
    curves = {}
    for name in results:
        if name == "sft":
            continue
        xs, ys = [0], [start]
        history = out / ("ei" if name == "ei" else "rcrl") / "metrics.json"
        if name in ("ei", "rcrl") and history.exists():
            rounds = json.loads(history.read_text())["rounds"][1:]
            xs += [r["cumulative_samples"] for r in rounds[:-1]]
            ys += [r["eval"]["maj@1"] for r in rounds[:-1]]
        xs.append(samples[name])
        ys.append(results[name]["metrics"]["maj@1"])
        curves[name] = (xs, ys)
    plot_curves(out / "accuracy_vs_samples.png", curves, "training samples", "maj@1 (greedy) on held-out",
                "Accuracy vs samples, same SFT start")


if __name__ == "__main__":
    main()
