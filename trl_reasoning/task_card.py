"""Task settings travel with the model: ``trl_reasoning_task.json`` beside every model a recipe saves.

A policy trained on ``arithmetic`` with ``max_operand: 9`` and ``+ -`` scores near 0 on the task's
defaults (operands to 20, ``+ - *``). So each saved policy carries the recipe's task, difficulty,
held-out set, prompt format and eval settings, and ``trl-reasoning eval --model <that folder>`` uses
them (saying so) unless a flag overrides one; a flag that contradicts the card draws a warning.
"""

from __future__ import annotations

import json
from pathlib import Path

TASK_CARD = "trl_reasoning_task.json"
# card key -> eval argument it fills (when the user did not pass that flag)
ARGUMENTS = {"task": "task", "seed": "seed", "prompt_style": "prompt_style", "num_shots": "num_shots",
             "eval_data": "data", "eval_limit": "limit"}
EVAL_SETTINGS = ("num_generations", "temperature", "top_p", "max_new_tokens", "batch_size", "extraction")


def write_task_card(model_folder: str | Path, recipe) -> None:
    """Record ``recipe``'s task settings in ``model_folder`` (atomically)."""
    from .reporting import write_json_atomic

    card = {
        "task": recipe.task,
        "arithmetic": recipe.arithmetic,
        "num_eval_examples": recipe.num_eval_examples,
        "eval_data": recipe.eval_data,
        "eval_limit": recipe.eval_limit,
        "seed": recipe.seed,
        "prompt_style": recipe.prompt_style,
        "num_shots": recipe.num_shots,
        "eval": recipe.section("eval"),
    }
    write_json_atomic(Path(model_folder) / TASK_CARD, card)


def read_task_card(model: str) -> dict | None:
    """The card saved with a local model folder, or ``None`` (Hub ids, models trained elsewhere)."""
    path = Path(model).expanduser()
    path = path / TASK_CARD if path.is_dir() else path.parent / TASK_CARD if path.suffix == ".gguf" else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def apply_task_card(args, given: set[str]) -> tuple[dict, list[str]]:
    """Fill ``args`` (eval/sample arguments) from the model's card where no flag was ``given``.

    Returns the task-loading extras (``arithmetic_config``, ``num_examples``) and the lines to print:
    where the settings came from, and a warning for each flag that contradicts the card.
    """
    card = read_task_card(args.model)
    if card is None:
        return {}, []
    values = {
        **{ARGUMENTS[k]: card.get(k) for k in ARGUMENTS},
        **{k: v for k, v in (card.get("eval") or {}).items() if k in EVAL_SETTINGS},
    }
    lines, used = [], []
    for name, value in values.items():
        if value is None or not hasattr(args, name):
            continue
        if name in given:
            if getattr(args, name) != value:
                lines.append(f"warning: --{name} {getattr(args, name)!r} differs from the model's training "
                             "setting "
                             f"{value!r} ({TASK_CARD})")
            continue
        setattr(args, name, value)
        used.append(f"{name}={value!r}")
    extras = {}
    if args.task == card.get("task") and args.task == "arithmetic" and args.data is None:
        from .tasks import ArithmeticConfig

        difficulty = {
            k: tuple(v) if isinstance(v, list) else v for k, v in (card.get("arithmetic") or {}).items()
        }
        extras = {
            "arithmetic_config": ArithmeticConfig(**difficulty),
            "num_examples": card["num_eval_examples"],
        }
        used.append(f"arithmetic={card.get('arithmetic') or {}}")
    lines.insert(0, f"eval: task settings from {TASK_CARD} beside the model: {', '.join(used)} (flags "
                    "override)")
    return extras, lines
