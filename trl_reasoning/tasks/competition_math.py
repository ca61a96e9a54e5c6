"""MATH (Hendrycks et al., 2021): competition problems; the answer is the last ``\\boxed{}``.

Hub: ``EleutherAI/hendrycks_math`` (needs a subject config) or any copy with ``problem`` and
``solution`` columns (e.g. ``HuggingFaceH4/MATH-500``); local: jsonl/json/parquet with those fields.
"""

from __future__ import annotations

from ..answers import LATEX
from ..answers.boxed import last_boxed
from .base import TaskSpec

INSTRUCTION = "Solve the problem step by step and put the final answer in \\boxed{}."


def to_row(record: dict, index: int) -> dict:
    solution = record["solution"].strip()
    return {
        "id": str(record.get("unique_id", record.get("id", f"math-{index}"))),
        "question": record["problem"].strip(),
        "solution": solution,
        "answer": str(record.get("answer") or last_boxed(solution) or ""),
    }


SPEC = TaskSpec(
    name="math",
    hub_id="HuggingFaceH4/MATH-500",
    hub_config=None,
    required_fields=("problem", "solution"),
    to_row=to_row,
    instruction=INSTRUCTION,
    hub_splits={"test": "test"},
    answer=LATEX,
)
