"""SVAMP (Patel et al., 2021): one-step arithmetic word problems with varied structure.

Hub: ``ChilleD/SVAMP`` (train 700 / test 300); local: the original ``SVAMP.json`` (``Body``,
``Question``, ``Equation``, ``Answer``). The reference solution is the equation and its value, then the
``#### N`` line.

The original file has no split. When a local file holds exactly its 1000 problems (IDs ``chal-1`` ..
``chal-1000``), ``split_original`` splits it the same way every time: the problems in ID order, shuffled
with ``random.Random(SPLIT_SEED)``; the first ``TEST_SIZE`` (300) are ``test``, the other 700 ``train``
(each problem in one split; no two SVAMP problems share a text). Any other local file is used whole.
"""

from __future__ import annotations

import random

from ..answers import numeric
from .base import DataError, TaskSpec
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


ORIGINAL_SIZE, TEST_SIZE, SPLIT_SEED = 1000, 300, 2021


def _number(record: dict) -> int:
    return int(str(record["ID"]).split("-")[1])


def split_original(records: list[dict], split: str) -> list[dict]:
    """``split`` (train or test) of the original unsplit SVAMP file; other files unchanged."""
    ids = {str(r.get("ID")) for r in records}
    if len(records) != ORIGINAL_SIZE or ids != {f"chal-{i}" for i in range(1, ORIGINAL_SIZE + 1)}:
        return records
    if split not in ("train", "test"):
        raise DataError(f"split: {split!r} is not a split of svamp; expected ['test', 'train']")
    order = sorted(records, key=_number)
    random.Random(SPLIT_SEED).shuffle(order)
    chosen = order[:TEST_SIZE] if split == "test" else order[TEST_SIZE:]
    return sorted(chosen, key=_number)


SPEC = TaskSpec(
    name="svamp",
    hub_id="ChilleD/SVAMP",
    hub_config=None,
    required_fields=("Question", "Answer"),
    to_row=to_row,
    instruction=INSTRUCTION,
    local_split=split_original,
)
