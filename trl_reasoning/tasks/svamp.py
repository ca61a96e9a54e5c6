"""SVAMP (Patel et al., 2021): one-step arithmetic word problems with varied structure.

Hub: ``ChilleD/SVAMP``; local: the original ``SVAMP.json`` (``Body``, ``Question``, ``Equation``,
``Answer``). The reference solution is the equation and its value, then the ``#### N`` line.
"""

from __future__ import annotations

from ..answers import numeric
from .base import TaskSpec
from .gsm8k import INSTRUCTION


def _field(record: dict, name: str) -> str:
    # The Hub copy lower-cases some column names and renames ``Body`` to ``Body``/``body``.
    return str(record.get(name, record.get(name.lower(), ""))).strip()


def to_row(record: dict, index: int) -> dict:
    answer = numeric.reference(str(record.get("Answer", record.get("answer"))))
    body, question = _field(record, "Body"), _field(record, "Question")
    equation = _field(record, "Equation")
    return {
        "id": _field(record, "ID") or f"svamp-{index}",
        "question": f"{body.rstrip('.')}. {question}" if body else question,
        "solution": f"{equation} = {answer}\n#### {answer}",
        "answer": answer,
    }


SPEC = TaskSpec(
    name="svamp",
    hub_id="ChilleD/SVAMP",
    hub_config=None,
    required_fields=("Question", "Answer"),
    to_row=to_row,
    instruction=INSTRUCTION,
)
