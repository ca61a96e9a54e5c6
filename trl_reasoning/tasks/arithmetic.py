"""Built-in synthetic task: GSM8K-style arithmetic word problems, generated offline.

A problem chains ``num_steps`` operations on one quantity ("Mia has 7 apples. Mia gets 5 more
apples. ... How many apples does Mia have now?"); the reference solution writes one line per step
(``7 + 5 = 12``) and ends in ``#### N``, so the GSM8K verifier, step splitter and heuristic rewards
all apply unchanged. Difficulty knobs: number of steps, operand range, operators, multiplier range.

Splits never share a solution: a problem's split is fixed by a hash of its reference solution (its
numbers, operations and steps: everything the answer depends on), not of its wording, so a test
question never differs from a train question by its names and items alone. Within a split every
solution is distinct too. Generation is deterministic for a given seed; the split of a problem does not
depend on the seed, so one seed's test questions share no solution with any seed's train questions.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from .base import DataError, TaskSpec
from .gsm8k import INSTRUCTION

NAMES = ("Ann", "Ben", "Mia", "Tom", "Eva", "Sam", "Liz", "Max")
ITEMS = ("apples", "books", "coins", "pens", "cards", "stamps", "shells", "cups")


@dataclass(frozen=True)
class ArithmeticConfig:
    """Difficulty knobs of the synthetic task."""

    min_steps: int = 2
    max_steps: int = 3
    min_operand: int = 1
    max_operand: int = 20
    max_multiplier: int = 5
    operators: tuple[str, ...] = ("+", "-", "*")
    test_fraction: float = 0.2

    def __post_init__(self):
        if not 1 <= self.min_steps <= self.max_steps:
            raise DataError("arithmetic: need 1 <= min_steps <= max_steps")
        if not 0 <= self.min_operand <= self.max_operand:
            raise DataError("arithmetic: need 0 <= min_operand <= max_operand")
        if self.max_multiplier < 2:
            raise DataError("arithmetic: max_multiplier must be >= 2")
        bad = set(self.operators) - {"+", "-", "*", "/"}
        if bad or not self.operators:
            raise DataError("arithmetic: operators must be a non-empty subset of + - * /, got "
                            f"{self.operators}")
        if not 0 < self.test_fraction < 1:
            raise DataError("arithmetic: test_fraction must be in (0, 1)")


def _step(rng: random.Random, x: int, op: str, cfg: ArithmeticConfig, name: str, item: str):
    """One operation on ``x``: (sentence, solution line, new value), or None when ``op`` cannot apply."""
    if op == "+":
        b = rng.randint(cfg.min_operand, cfg.max_operand)
        return f"{name} gets {b} more {item}.", f"{x} + {b} = {x + b}", x + b
    if op == "-":
        if x < max(cfg.min_operand, 1):
            return None
        b = rng.randint(max(cfg.min_operand, 1), min(cfg.max_operand, x))
        return f"{name} gives away {b} {item}.", f"{x} - {b} = {x - b}", x - b
    if op == "*":
        b = rng.randint(2, cfg.max_multiplier)
        return f"{name} ends up with {b} times as many {item}.", f"{x} * {b} = {x * b}", x * b
    divisors = [d for d in range(2, cfg.max_multiplier + 1) if x and x % d == 0]
    if not divisors:
        return None
    b = rng.choice(divisors)
    return f"{name} splits the {item} into {b} equal piles and keeps one.", f"{x} / {b} = {x // b}", x // b


def make_problem(rng: random.Random, cfg: ArithmeticConfig) -> dict:
    """One random problem as a schema row (without ``id``/``task``)."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    x = rng.randint(max(cfg.min_operand, 1), cfg.max_operand)
    sentences, lines = [f"{name} has {x} {item}."], []
    for _ in range(rng.randint(cfg.min_steps, cfg.max_steps)):
        step = None
        while step is None:
            step = _step(rng, x, rng.choice(cfg.operators), cfg, name, item)
        sentence, line, x = step
        sentences.append(sentence)
        lines.append(line)
    question = " ".join(sentences) + f" How many {item} does {name} have now?"
    return {"question": question, "solution": "\n".join(lines) + f"\n#### {x}", "answer": str(x)}


def split_of(solution: str, test_fraction: float) -> str:
    """``"test"`` or ``"train"``, fixed by the reference solution's text (its steps and numbers)."""
    bucket = int(hashlib.sha1(solution.encode()).hexdigest()[:8], 16) / 16**8
    return "test" if bucket < test_fraction else "train"


def generate(
    num_examples: int, split: str = "train", seed: int = 0, config: ArithmeticConfig | None = None
) -> list[dict]:
    """``num_examples`` distinct problems of ``split``, deterministic for ``seed``."""
    cfg = config or ArithmeticConfig()
    if split not in ("train", "test"):
        raise DataError(f"split: {split!r} is not a split of arithmetic; expected ['test', 'train']")
    if num_examples < 1:
        raise DataError(f"num_examples: need at least 1, got {num_examples}")
    rng = random.Random(f"arithmetic-{seed}-{split}")
    rows, seen = [], set()
    for _ in range(num_examples * 200):
        problem = make_problem(rng, cfg)
        content = problem["solution"]
        if content in seen or split_of(content, cfg.test_fraction) != split:
            continue
        seen.add(content)
        problem["id"] = "arith-" + hashlib.sha1(problem["question"].encode()).hexdigest()[:12]
        rows.append(problem)
        if len(rows) == num_examples:
            return rows
    raise DataError(f"arithmetic: could not generate {num_examples} distinct {split} problems; widen the "
                    "knobs")


def to_row(record: dict, index: int) -> dict:
    return {
        "id": str(record.get("id", f"arith-{index}")),
        "question": record["question"],
        "solution": record["solution"],
        "answer": str(record["answer"]),
    }


SPEC = TaskSpec(
    name="arithmetic",
    hub_id=None,
    hub_config=None,
    required_fields=("question", "solution", "answer"),
    to_row=to_row,
    instruction=INSTRUCTION,
    generate=generate,
)
