"""SVAMP (Patel et al., 2021): one-step arithmetic word problems with varied structure.

Hub: ``ChilleD/SVAMP``; local: the original ``SVAMP.json`` (``Body``, ``Question``, ``Equation``,
``Answer``). The reference solution is the equation and its value, then the ``#### N`` line.

SVAMP writes each of about a hundred seed problems as ~10 variations (other numbers, another question,
reordered sentences), so a split by problem puts siblings on both sides: the original id-based 700/300
split gave 297 of its 300 test problems a sibling in train. ``split_original`` splits by **family**
instead (``families``: problems whose words overlap, numbers aside), the same way every time: the
families in the order of their first ID, shuffled with ``random.Random(SPLIT_SEED)``; whole families go
to ``test`` until it holds at least ``TEST_SIZE`` (300) problems (304), the rest (696) to ``train``. It
applies to a local file holding exactly the original 1000 problems (IDs ``chal-1`` .. ``chal-1000``)
and to the Hub copy, whose own 700/300 split is re-made the same way; any other local file is used
whole.
"""

from __future__ import annotations

import ast
import functools
import random
import re
from collections.abc import Sequence
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
# Jaccard overlap of two problems' words (numbers and the function words below left out) from which they
# are one family. At 0.4 the 1000 problems form 96 families (the largest 29) and no test problem shares
# more than 0.33 of its words with any train problem; at 0.45 one test problem's story shares half its
# words with a train problem's.
FAMILY_OVERLAP = 0.4
_FUNCTION_WORDS = frozenset(
    "a an and are at be by did do does each for had has have he her his how if in is it many more much of "
    "on she some than the then there they to was were with".split())


def _content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z]+", text.lower()) if w not in _FUNCTION_WORDS)


def families(texts: Sequence[str]) -> list[int]:
    """A family label for each problem text: the index of the first text of its family. Two texts whose
    content words overlap by at least ``FAMILY_OVERLAP`` (Jaccard) are one family, and so is every text
    linked to them through such overlaps."""
    return list(_families(tuple(texts)))


@functools.lru_cache(maxsize=8)  # a run loads the same file for train, test and prompts: group it once
def _families(texts: tuple[str, ...]) -> tuple[int, ...]:
    words = [_content_words(t) for t in texts]
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, mine in enumerate(words):
        for j in range(i + 1, len(words)):
            union = len(mine | words[j])
            if union and len(mine & words[j]) / union >= FAMILY_OVERLAP:
                parent[max(root(i), root(j))] = min(root(i), root(j))  # a family's root: its first text
    return tuple(root(i) for i in range(len(texts)))


def _number(record: dict) -> int:
    return int(str(_field(record, "ID")).split("-")[1])


def is_original(records: list[dict]) -> bool:
    """Whether ``records`` are exactly SVAMP's 1000 problems, ``chal-1`` .. ``chal-1000``."""
    ids = {_field(r, "ID") for r in records}
    return len(records) == ORIGINAL_SIZE and ids == {f"chal-{i}" for i in range(1, ORIGINAL_SIZE + 1)}


def split_original(records: list[dict], split: str) -> list[dict]:
    """``split`` (train or test) of the original unsplit SVAMP file, by family; other files unchanged."""
    if not is_original(records):
        return records
    if split not in ("train", "test"):
        raise DataError(f"split: {split!r} is not a split of svamp; expected ['test', 'train']")
    order = sorted(records, key=_number)
    grouped: dict[int, list[dict]] = {}
    for record, label in zip(order, families([to_row(r, 0)["question"] for r in order]), strict=True):
        grouped.setdefault(label, []).append(record)
    shuffled = list(grouped.values())
    random.Random(SPLIT_SEED).shuffle(shuffled)
    test: list[dict] = []
    for family in shuffled:
        if len(test) >= TEST_SIZE:
            break
        test.extend(family)
    held = {_number(r) for r in test}
    chosen = test if split == "test" else [r for r in order if _number(r) not in held]
    return sorted(chosen, key=_number)


def split_hub(records: list[dict], split: str) -> list[dict]:
    """``split`` of the Hub copy, given the rows of all its splits: the Hub's own 700/300 split shares
    families across train and test, so it is re-made as the original file's. Texts that differ from the
    file's (other spacing or punctuation) may group otherwise: the split is then still by family, but
    not the file's."""
    if not is_original(records):
        raise DataError(f"data: the Hub copy of svamp holds {len(records)} problems, not the original "
                        f"{ORIGINAL_SIZE} (chal-1 .. chal-{ORIGINAL_SIZE}) that a family split needs; pass "
                        "the original SVAMP.json (train_data / eval_data)")
    return split_original(records, split)


SPEC = TaskSpec(
    name="svamp",
    hub_id="ChilleD/SVAMP",
    hub_config=None,
    required_fields=("Question", "Answer"),
    to_row=to_row,
    instruction=INSTRUCTION,
    local_split=split_original,
    hub_split=split_hub,
    families=families,
    stepwise=stepwise,
)
