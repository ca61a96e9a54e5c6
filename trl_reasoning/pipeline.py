"""Run a recipe's stages in order: sft -> ei -> eval. The run boilerplate lives here once.

Each stage writes into ``output_dir/<stage>/`` and marks itself done with ``stage_complete.json``;
rerunning the same command skips finished stages (and Expert Iteration resumes inside its rounds).
The eval stage evaluates every model the run produced on the held-out questions and prints one
comparison table, also written to ``output_dir/results.md`` and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .recipes import Recipe, stage_config
from .reporting import markdown_table, write_json_atomic, write_text_atomic

DONE = "stage_complete.json"


def _is_done(folder: Path) -> bool:
    return (folder / DONE).exists()


def _mark_done(folder: Path, info: dict, state) -> None:
    if state.is_main_process:
        write_json_atomic(folder / DONE, info)
    state.wait_for_everyone()


def initial_model(recipe: Recipe, state) -> str:
    """The recipe's model reference; ``tiny`` is built offline into the run folder (once)."""
    if recipe.model != "tiny":
        return recipe.model
    from .tiny import make_tiny_model

    folder = Path(recipe.output_dir) / "tiny_init"
    if state.is_main_process and not (folder / "config.json").exists():
        make_tiny_model(folder, task=recipe.task, seed=recipe.seed, **recipe.tiny)
    state.wait_for_everyone()
    return str(folder)


def load_datasets(recipe: Recipe):
    """(sft_train, ei_train, eval) datasets with a ``prompt`` column."""
    from .tasks import ArithmeticConfig, add_prompts, load_task

    difficulty = ArithmeticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recipe.arithmetic.items()})

    def load(data, split, limit, num_examples):
        return load_task(recipe.task, data=data, split=split, limit=limit, num_examples=num_examples,
                         seed=recipe.seed, arithmetic_config=difficulty)

    train = load(recipe.train_data, "train", recipe.train_limit, recipe.num_train_examples)
    held_out = load(recipe.eval_data, "test", recipe.eval_limit, recipe.num_eval_examples)
    exemplars = train.to_list() if recipe.prompt_style == "few_shot" else None
    train = add_prompts(train, recipe.prompt_style, exemplars, recipe.num_shots, recipe.seed)
    held_out = add_prompts(held_out, recipe.prompt_style, exemplars, recipe.num_shots, recipe.seed)
    return _first(train, recipe.sft_train_limit), _first(train, recipe.ei_train_limit), held_out


def _first(dataset, limit: int | None):
    return dataset.select(range(min(limit, len(dataset)))) if limit else dataset


def _peft_config(recipe: Recipe):
    if not recipe.peft:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **recipe.peft)


def run_sft_stage(recipe: Recipe, model_ref: str, train, state) -> str:
    from trl import SFTConfig

    from .loading import load_model, load_tokenizer
    from .trainers.sft import run_sft

    folder = Path(recipe.output_dir) / "sft"
    if not _is_done(folder):
        args = stage_config(SFTConfig, recipe.sft, folder, recipe.seed, save_strategy="no")
        model = load_model(model_ref, device=str(state.device))
        run_sft(model, load_tokenizer(model_ref), train, args, peft_config=_peft_config(recipe))
        _mark_done(folder, {"questions": len(train), "epochs": args.num_train_epochs}, state)
    return str(folder)


def run_ei_stage(recipe: Recipe, model_ref: str, ei_train, held_out, state) -> str:
    from .trainers.expert_iteration_config import ExpertIterationConfig
    from .trainers.expert_iteration_trainer import ExpertIterationTrainer

    folder = Path(recipe.output_dir) / "ei"
    final = folder / "final_model"
    if not _is_done(folder):
        args = stage_config(ExpertIterationConfig, recipe.ei, folder, recipe.seed, task=recipe.task, save_strategy="no")
        trainer = ExpertIterationTrainer(
            model=model_ref, args=args, train_dataset=ei_train, eval_dataset=held_out, peft_config=_peft_config(recipe)
        )
        history = trainer.train()
        trainer.save_model(str(final))
        if args.push_to_hub:
            trainer.push_to_hub()
        _mark_done(folder, {"rounds": len(history) - 1, "cumulative_samples": history[-1]["cumulative_samples"]}, state)
    return str(final)


def run_eval_stage(recipe: Recipe, models: dict[str, str], held_out, state) -> dict:
    from .evaluation import EvalSettings, evaluate, write_report
    from .loading import load_model, load_tokenizer

    settings = EvalSettings(**{"seed": recipe.seed, **recipe.eval})
    results = {}
    for name, reference in models.items():
        folder = Path(recipe.output_dir) / "eval" / name
        config = {"model": reference, **dataclasses.asdict(settings)}
        previous = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
        if previous.get("config") == config:  # finished before a crash, with the same settings
            results[name] = previous
            continue
        model = load_model(reference, device=str(state.device))
        report = evaluate(model, load_tokenizer(reference), held_out, recipe.task, settings)
        if state.is_main_process:
            write_report(report, folder, config, title=f"{name} on {recipe.task}")
        state.wait_for_everyone()
        results[name] = {key: value for key, value in report.items() if key != "records"}
    return results


def comparison_table(results: dict[str, dict], samples_used: dict[str, int]) -> str:
    """One row per evaluated model: maj@1, maj@K, pass@1, pass@K, exploration, solutions sampled."""
    rows = []
    for name, report in results.items():
        metrics = report["metrics"]
        k = max((int(n.split("@")[1]) for n in metrics if n.startswith("pass@")), default=1)
        rows.append([
            name, metrics["maj@1"], metrics.get(f"maj@{k}", float("nan")), metrics.get("pass@1", float("nan")),
            metrics.get(f"pass@{k}", float("nan")), report["exploration"].get("distinct_correct_solutions", float("nan")),
            samples_used.get(name, 0),
        ])
    k_label = f"@{k}" if results else ""
    headers = ["model", "maj@1 (greedy)", f"maj{k_label}", "pass@1", f"pass{k_label}", "distinct correct / question",
               "solutions sampled for training"]
    return markdown_table(headers, rows)


def run_recipe(recipe: Recipe) -> dict:
    """Run every stage of ``recipe``; returns the eval stage's results (empty without one)."""
    from accelerate import PartialState

    state = PartialState()
    model_ref = initial_model(recipe, state)
    sft_train, ei_train, held_out = load_datasets(recipe)
    models: dict[str, str] = {}
    current = model_ref
    if "sft" in recipe.stages:
        current = models["sft"] = run_sft_stage(recipe, current, sft_train, state)
    if "ei" in recipe.stages:
        current = models["ei"] = run_ei_stage(recipe, current, ei_train, held_out, state)
    if "eval" not in recipe.stages:
        return {}
    models = models or {"initial": model_ref}
    results = run_eval_stage(recipe, models, held_out, state)
    samples_used = {}
    ei_done = Path(recipe.output_dir) / "ei" / DONE
    if ei_done.exists():
        samples_used["ei"] = json.loads(ei_done.read_text())["cumulative_samples"]
    table = comparison_table(results, samples_used)
    if state.is_main_process:
        write_json_atomic(Path(recipe.output_dir) / "results.json", results)
        write_text_atomic(Path(recipe.output_dir) / "results.md", f"# {recipe.task}: held-out results\n\n{table}\n")
        print(table)
    return results
