"""The paper's comparison at small scale: EI, PPO (sparse), PPO (dense, ORM), RCRL (sparse and dense,
heuristic step tags) and TRL's GRPOTrainer, all from the same SFT tiny checkpoint on the arithmetic task with the same sample budget.

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
from trl_reasoning.recipes import load_recipe, parse_overrides, stage_config
from trl_reasoning.reporting import markdown_table, plot_curves, write_json_atomic, write_text_atomic


def run_grpo(recipe, policy_ref: str, train, state) -> str:
    """TRL's GRPOTrainer with our correctness reward, settings from the recipe's ``ppo`` section."""
    from trl import GRPOConfig, GRPOTrainer

    from trl_reasoning._compat import enable_vllm_colocate_on_cpu
    from trl_reasoning.loading import load_tokenizer
    from trl_reasoning.verifiers import make_correctness_reward

    folder = Path(recipe.output_dir) / "grpo"
    final = folder / "final_model"
    if (folder / pipeline.DONE).exists():
        return str(final)
    grpo_fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    section = {k: v for k, v in recipe.ppo.items() if k in grpo_fields and k not in ("beta",)}
    section["use_vllm"] = pipeline.resolve_use_vllm(section.get("use_vllm", False), policy_ref)
    if section["use_vllm"]:
        enable_vllm_colocate_on_cpu()  # TRL's colocated engine on CPU (a no-op on GPU)
    args = stage_config(GRPOConfig, section, folder, recipe.seed, save_strategy="no")
    trainer = GRPOTrainer(model=policy_ref, reward_funcs=[make_correctness_reward(recipe.task)], args=args,
                          train_dataset=pipeline._rl_dataset(train),
                          processing_class=load_tokenizer(policy_ref, padding_side="left"))
    trainer.train()
    trainer.save_model(str(final))
    samples = trainer.state.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps
    samples = samples * state.num_processes // max(args.num_iterations, 1)
    pipeline._mark_done(folder, {"cumulative_samples": samples}, state)
    return str(final)


def timed(name: str, seconds: dict, func, *args):
    start = time.perf_counter()
    result = func(*args)
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/compare_quickstart.yaml")
    parser.add_argument("--output", default=None, help="run folder (default: the recipe's output_dir)")
    args = parser.parse_args()
    overrides = [("output_dir", args.output)] if args.output else []
    recipe = load_recipe(args.recipe, parse_overrides([]) + overrides)

    from trl_reasoning.loading import process_state

    state = process_state()
    out = Path(recipe.output_dir)
    times_path = out / "wall_seconds.json"
    seconds = json.loads(times_path.read_text()) if times_path.exists() else {}
    model_ref = pipeline.initial_model(recipe, state)
    sft_train, rl_train, held_out = pipeline.load_datasets(recipe)
    sft = timed("sft", seconds, pipeline.run_sft_stage, recipe, model_ref, sft_train, state)
    orm = timed("orm", seconds, pipeline.run_reward_model_stage, recipe, "outcome", sft, sft_train, held_out, state)
    reward_models = {"orm": orm}
    models = {"sft": sft}
    models["ei"] = timed("ei", seconds, pipeline.run_ei_stage, recipe, sft, rl_train, held_out, state)
    write_json_atomic(times_path, seconds)
    models["ppo_sparse"] = timed("ppo_sparse", seconds, pipeline.run_ppo_stage,
                                 dataclasses.replace(recipe, output_dir=str(out / "sparse")), sft, rl_train, held_out, reward_models, state)
    dense = dataclasses.replace(recipe, output_dir=str(out / "dense"), ppo={**recipe.ppo, "dense_rewards": ["orm"]})
    models["ppo_dense_orm"] = timed("ppo_dense_orm", seconds, pipeline.run_ppo_stage, dense, sft, rl_train, held_out, reward_models, state)
    write_json_atomic(times_path, seconds)
    models["rcrl"] = models["rcrl unconditioned"] = timed("rcrl", seconds, pipeline.run_rcrl_stage, recipe, sft, rl_train,
                                                         held_out, reward_models, state)
    dense_rcrl = dataclasses.replace(recipe, output_dir=str(out / "dense_rcrl"),
                                     rcrl={**recipe.rcrl, "tag_mode": "dense", "step_reward": "heuristic"})
    models["rcrl_dense_heuristic"] = timed("rcrl_dense_heuristic", seconds, pipeline.run_rcrl_stage, dense_rcrl, sft,
                                           rl_train, held_out, reward_models, state)
    write_json_atomic(times_path, seconds)
    models["grpo"] = timed("grpo", seconds, run_grpo, recipe, sft, rl_train, state)
    write_json_atomic(times_path, seconds)
    conditioning = {"rcrl": pipeline.rcrl_conditioning(out / "rcrl"),
                    "rcrl_dense_heuristic": pipeline.rcrl_conditioning(out / "dense_rcrl" / "rcrl")}
    results = pipeline.run_eval_stage(recipe, models, held_out, state, orm, conditioning)

    samples = {"sft": 0}
    for name, folder in (("ei", out / "ei"), ("ppo_sparse", out / "sparse" / "ppo"), ("ppo_dense_orm", out / "dense" / "ppo"),
                         ("rcrl", out / "rcrl"), ("rcrl unconditioned", out / "rcrl"),
                         ("rcrl_dense_heuristic", out / "dense_rcrl" / "rcrl"), ("grpo", out / "grpo")):
        samples[name] = json.loads((folder / pipeline.DONE).read_text())["cumulative_samples"]
    table = pipeline.comparison_table(results, samples)
    gains = pipeline.gains_table(out, results, baseline="sft")
    wall = markdown_table(["stage", "wall seconds"], [[k, round(v, 1)] for k, v in seconds.items()])
    text = f"# Algorithm comparison ({recipe.task}, same SFT start)\n\n{table}\n\n{gains}\n\n{wall}\n"
    if state.is_main_process:
        write_text_atomic(out / "comparison.md", text)
        write_json_atomic(out / "comparison.json", {"results": results, "samples": samples, "wall_seconds": seconds})
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
