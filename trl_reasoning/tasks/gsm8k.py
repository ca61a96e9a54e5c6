"""GSM8K (Cobbe et al., 2021): grade-school word problems; reference solutions end in ``#### N``.

Hub: ``openai/gsm8k`` (config ``main``); local: the original jsonl with ``question`` and ``answer``.
Calculator annotations ``<<48/2=24>>`` are removed from the reference solution (they are tool calls,
not reasoning); ``calculator_results`` keeps their results for step-level heuristics.
"""

from __future__ import annotations

import re

from ..answers import numeric
from .base import TaskSpec

_ANNOTATION_RE = re.compile(r"<<([^<>]*)>>")

INSTRUCTION = (
    "Solve the math word problem step by step. Put each step on its own line and finish with a line "
    "of the form '#### <number>'."
)


def strip_annotations(solution: str) -> str:
    """Remove GSM8K calculator annotations: ``"= <<48/2=24>>24"`` -> ``"= 24"``."""
    return _ANNOTATION_RE.sub("", solution)


def calculator_results(solution: str) -> list[str]:
    """Results of the calculator annotations, in order: ``"<<48/2=24>>"`` -> ``["24"]``."""
    return [a.rsplit("=", 1)[-1].strip() for a in _ANNOTATION_RE.findall(solution) if "=" in a]


def to_row(record: dict, index: int) -> dict:
    raw = record["answer"]
    return {
        "id": str(record.get("id", f"gsm8k-{index}")),
        "question": record["question"].strip(),
        "solution": strip_annotations(raw).strip(),
        "answer": numeric.reference(str(raw)),
    }


SPEC = TaskSpec(
    name="gsm8k",
    hub_id="openai/gsm8k",
    hub_config="main",
    required_fields=("question", "answer"),
    to_row=to_row,
    instruction=INSTRUCTION,
)
