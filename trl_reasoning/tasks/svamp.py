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

import ast
import random
from fractions import Fraction

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


def _exact_text(value: Fraction) -> str | None:
    """``value`` written exactly in at most 4 decimals, or None (``55 / 15``)."""
    scaled = value * 10**4
    if scaled.denominator != 1:
        return None
    text = f"{scaled.numerator / 10**4:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def equation_steps(equation: str) -> list[str]:
    """SVAMP's one-line equation as one ``a op b = c`` line per operation, innermost first:
    ``( ( 7.0 * 3.0 ) - 2.0 )`` -> ``["7 * 3 = 21", "21 - 2 = 19"]``. A result with no exact short decimal
    (``55 / 15``) stays inside its parent's line as ``( 55 / 15 )``, so every written line holds exactly.
    Parsed, never evaluated as code."""
    lines: list[str] = []

    def walk(node) -> tuple[Fraction, str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            value = Fraction(str(node.value))
            return value, _exact_text(value) or str(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            (left, left_text), (right, right_text) = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise DataError(f"svamp: the equation {equation!r} divides by zero")
            value = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right,
                     ast.Div: left / right if right else left}[type(node.op)]
            expression = f"{left_text} {_OPS[type(node.op)]} {right_text}"
            text = _exact_text(value)
            if text is None:
                return value, f"( {expression} )"
            lines.append(f"{expression} = {text}")
            return value, text
        raise DataError(f"svamp: cannot read the equation {equation!r} (numbers and + - * / only)")

    try:
        tree = ast.parse(equation.strip(), mode="eval")
    except SyntaxError:
        raise DataError(f"svamp: cannot read the equation {equation!r}") from None
    walk(tree.body)
    return lines


def stepwise(solution: str) -> str:
    """A reference ``EQUATION = N\n#### N`` rewritten as one line per operation, then ``#### N``."""
    first, _, rest = solution.partition("\n")
    equation = first.rsplit(" = ", 1)[0]
    steps = equation_steps(equation)
    return "\n".join(steps + [rest]) if steps else solution


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
    stepwise=stepwise,
)
