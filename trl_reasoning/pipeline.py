"""Run a recipe: build the shared context (process state, initial model, datasets), then every stage
the recipe lists, in run order, through ``stages.run_stage`` (resume markers, products, sample counts).

Each stage writes into ``output_dir/<stage>/`` and marks itself done with ``stage_complete.json``;
rerunning the same command skips finished stages (and Expert Iteration resumes inside its rounds).
The eval stage evaluates every policy the run produced and prints one comparison table, also written
to ``output_dir/results.md`` and ``results.json``.
"""

from __future__ import annotations

from pathlib import Path

from .recipes import Recipe
from .stages import RunContext, first, get_stage, run_stage, stage_names

__all__ = ["initial_model", "load_datasets", "run_context", "run_recipe"]


def initial_model(recipe: Recipe, state) -> str:
    """The recipe's model reference; ``tiny`` is built offline into the run folder (once)."""
    if recipe.model != "tiny":
        return recipe.model
    from .tiny import make_tiny_model

    folder = Path(recipe.output_dir) / "tiny_init"
    if state.is_main_process and not (folder / "config.json").exists():
        make_tiny_model(folder, task=recipe.task, seed=recipe.seed, data=recipe.train_data, **recipe.tiny)
    state.wait_for_everyone()
    return str(folder)


def load_datasets(recipe: Recipe):
    """(sft_train, rl_train, held_out) datasets with a ``prompt`` column."""
    from .tasks import TRAINING_PROMPT, ArithmeticConfig, add_prompts, load_task

    difficulty = ArithmeticConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in recipe.arithmetic.items()}
    )

    def load(data, split, limit, num_examples):
        return load_task(recipe.task, data=data, split=split, limit=limit, num_examples=num_examples,
                         seed=recipe.seed, arithmetic_config=difficulty)

    if recipe.eval_split == "validation":
        train, held_out = _train_and_validation(recipe, load)
    else:
        train = load(recipe.train_data, "train", recipe.train_limit, recipe.num_train_examples)
        held_out = load(recipe.eval_data, "test", recipe.eval_limit, recipe.num_eval_examples)
    if recipe.solution_format == "steps":
        train, held_out = (_stepwise(rows, recipe.task) for rows in (train, held_out))
    exemplars = train.to_list() if recipe.prompt_style == "few_shot" else None
    train = add_prompts(train, recipe.prompt_style, exemplars, recipe.num_shots, recipe.seed)
    held_out = add_prompts(held_out, recipe.prompt_style, exemplars, recipe.num_shots, recipe.seed)
    if recipe.train_prompt_style not in (None, recipe.prompt_style):  # fine-tuned models take these
        train, held_out = (add_prompts(rows, recipe.train_prompt_style, exemplars, recipe.num_shots,
                                       recipe.seed, column=TRAINING_PROMPT) for rows in (train, held_out))
    return first(train, recipe.sft_train_limit), first(train, recipe.ei_train_limit), held_out


def _stepwise(dataset, task: str):
    """``solution_format: steps``: each reference rewritten one operation per line (the task's
    ``stepwise``; references already written so are kept)."""
    from .tasks import get_task

    convert = get_task(task).stepwise
    return dataset.map(lambda row: {"solution": convert(row["solution"])}) if convert else dataset


def _train_and_validation(recipe: Recipe, load):
    """``eval_split: validation``: held-out questions taken from the train split, never trained on. A
    generated task draws ``num_eval_examples`` more train problems (its train rows stay those of a test
    run: the same stream's first ``num_train_examples``; solutions are distinct within a split); a file's
    train rows are cut by a hash of their family (``tasks.carve_validation``: SVAMP's variations of one
    problem, else the reference solution)."""
    from .tasks import carve_validation, get_task

    if get_task(recipe.task).generate is not None and recipe.train_data is None:
        rows = load(None, "train", None, recipe.num_train_examples + recipe.num_eval_examples)
        train = rows.select(range(recipe.num_train_examples))
        validation = rows.select(range(recipe.num_train_examples, len(rows)))
    else:
        rows = load(recipe.train_data, "train", None, recipe.num_train_examples)
        train, validation = carve_validation(rows, families=get_task(recipe.task).families)
    return first(train, recipe.train_limit), first(validation, recipe.eval_limit)


def run_context(recipe: Recipe, state=None) -> RunContext:
    """What the stages of ``recipe`` share: process state, initial model and datasets."""
    from .loading import process_state

    state = state or process_state()
    initial = initial_model(recipe, state)
    sft_train, rl_train, held_out = load_datasets(recipe)
    return RunContext(recipe, state, initial, sft_train, rl_train, held_out)


def run_recipe(recipe: Recipe) -> dict:
    """Run every stage of ``recipe``; returns the eval stage's results (empty without one)."""
    from .loading import process_state
    from .progress import announce_plan, stage_banner

    titles = {s: get_stage(s).title or s for s in stage_names() if s in recipe.stages}
    state = process_state()
    announce_plan(recipe, titles, state)
    ctx = run_context(recipe, state)
    results: dict = {}
    for index, (name, title) in enumerate(titles.items(), start=1):
        with stage_banner(recipe, name, title, index, len(titles), ctx.state):
            done = run_stage(ctx, name)
        if name == "eval":
            results = done
    return results
