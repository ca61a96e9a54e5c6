"""Math tasks in one schema (see ``base.SCHEMA``): GSM8K, SVAMP, MATH and the synthetic arithmetic task.

``load_task("gsm8k", split="test")`` loads from the Hub; ``load_task("gsm8k", data="test.jsonl")``
from a local file; ``load_task("arithmetic", split="train", num_examples=1000)`` generates offline.
``add_prompts`` adds the ``prompt`` column (zero-shot, few-shot or chat) that TRL trainers read.
A new task is one module with a ``TaskSpec`` and one ``register_task(SPEC)`` call (CONTRIBUTING.md).
"""

from __future__ import annotations

import random
from typing import Any

from . import arithmetic, competition_math, gsm8k, svamp
from .arithmetic import ArithmeticConfig
from .base import PROMPT_STYLES, SCHEMA, DataError, TaskSpec, build_prompt, completion_target
from .registry import TASKS, get_task, register_task, task_names_help

TRAINING_PROMPT = "training_prompt"  # optional column: the prompt a fine-tune sees, when it differs


def prompted_as_trained(dataset):
    """``dataset`` with ``prompt`` replaced by its ``training_prompt`` column, when it has one: a model
    fine-tuned on those prompts is sampled and evaluated with them (few-shot exemplars only help the
    model that has not been trained on the format)."""
    if dataset is None or TRAINING_PROMPT not in dataset.column_names:
        return dataset
    return dataset.map(lambda row: {"prompt": row[TRAINING_PROMPT]})

for _module in (gsm8k, svamp, competition_math, arithmetic):
    register_task(_module.SPEC)

__all__ = [
    "PROMPT_STYLES", "SCHEMA", "TASKS", "TRAINING_PROMPT", "ArithmeticConfig", "DataError", "TaskSpec",
    "add_prompts", "build_prompt", "carve_validation", "completion_target", "get_task", "load_task",
    "prompted_as_trained",
    "register_task", "task_names_help",
]


def carve_validation(dataset, fraction: float = 0.2, families=None):
    """(train, validation): whole families of rows, in the order of a hash of their key, go to
    validation until it holds ``fraction`` of the rows. A family is what ``families`` (a task's
    ``TaskSpec.families``, given the question texts) groups, named by its first question; without it, a
    row's reference solution. Splitting on content, not wording, keeps a question and its rewordings
    (and equal solutions) on one side, so validation shares no family with train."""
    import hashlib
    from collections import Counter

    if families is None:
        keys = [" ".join(s.split()).lower() for s in dataset["solution"]]
    else:
        questions = dataset["question"]
        keys = [" ".join(questions[label].split()).lower() for label in families(questions)]

    def bucket(key: str) -> str:
        return hashlib.sha1(f"validation:{key}".encode()).hexdigest()

    # Whole families in hash order until the fraction is reached: a few large families (SVAMP's hold
    # up to 29 questions) would make a per-family coin flip miss the fraction by half.
    sizes = Counter(keys)
    chosen, total = set(), 0
    for key in sorted(sizes, key=bucket):
        if total >= fraction * len(keys):
            break
        chosen.add(key)
        total += sizes[key]
    held = [key in chosen for key in keys]
    validation = dataset.select([i for i, h in enumerate(held) if h])
    train = dataset.select([i for i, h in enumerate(held) if not h])
    if len(validation) == 0 or len(train) == 0:
        raise DataError(f"eval_split: validation needs train rows on both sides of the {fraction:.0%} "
                        f"cut; got {len(train)} train and {len(validation)} validation of {len(dataset)}")
    return train, validation


def load_task(
    name: str,
    data: str | None = None,
    split: str = "test",
    limit: int | None = None,
    num_examples: int = 1000,
    seed: int = 0,
    arithmetic_config: ArithmeticConfig | None = None,
):
    """Load task ``name`` as a ``datasets.Dataset`` in the common schema.

    Args:
        data: a local ``.jsonl``/``.json``/``.parquet`` file or a Hub dataset id; ``None`` loads the
            task's default Hub dataset (or, for ``arithmetic``, generates problems).
        split: ``"train"`` or ``"test"``.
        limit: keep the first ``limit`` rows.
        num_examples, seed, arithmetic_config: used only when generating a synthetic task's problems
            (a spec with ``generate``, e.g. ``arithmetic``).
    """
    from datasets import Dataset

    from .base import fetch_records, to_schema, validate_records

    spec = get_task(name)
    if spec.generate is not None and data is None:
        records = spec.generate(num_examples, split, seed, arithmetic_config)
    else:
        records = fetch_records(spec, data, split)
    source = data or spec.hub_id or name
    validate_records(spec, records, source)
    if limit is not None:
        if limit < 1:
            raise DataError(f"limit: need at least 1, got {limit}")
        records = records[:limit]
    return Dataset.from_list(to_schema(spec, records, source))


def add_prompts(
    dataset,
    style: str = "zero_shot",
    exemplars: list[dict[str, Any]] | None = None,
    num_shots: int = 4,
    seed: int = 0,
    column: str = "prompt",
):
    """Add a ``prompt`` column (or ``column``). For ``few_shot``, ``num_shots`` exemplars are drawn once
    (by ``seed``) from ``exemplars`` (schema rows, normally the train split) and shared by every question."""
    if style not in PROMPT_STYLES:
        raise DataError(f"prompt_style: unknown style {style!r}; expected one of {', '.join(PROMPT_STYLES)}")
    shots: list[dict] = []
    if style == "few_shot":
        if not exemplars or num_shots < 1:
            raise DataError("prompt_style: few_shot needs num_shots >= 1 and exemplars (the train split)")
        shots = random.Random(seed).sample(list(exemplars), min(num_shots, len(exemplars)))
    instructions = {name: spec.instruction for name, spec in TASKS.items()}

    def with_prompt(row):
        return {column: build_prompt(row["question"], style, shots, instructions[row["task"]])}

    return dataset.map(with_prompt)
