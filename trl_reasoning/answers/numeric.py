"""Numeric answers (GSM8K, SVAMP, arithmetic): one stated final value, compared exactly as a rational.

Strict mode reads the answer from an explicit final-answer statement: a ``#### N`` line, ``The (final)
answer is N``, ``Answer: N`` or ``\\boxed{N}``; flexible mode falls back to the last number in the text
when no statement exists (as lm-evaluation-harness's ``flexible-extract``). A statement naming several values,
or statements that disagree, state nothing (no reward for hedging).
"""

from __future__ import annotations

import re

from .boxed import boxed_spans
from .numbers import NUMBER_RE, canonical_number, distinct_values, last_number, parse_number

# Sampling stops once this line is complete: the answer is stated, the rest would be noise.
ANSWER_LINE = r"####[^\n]*\d[^\n]*\n"

# A statement runs to its line's end or to the next statement of its kind; it is read in a lookahead, so
# a second one on the line ("#### 7 so #### 8") is found too, and each character is read once or twice.
_HASH_RE = re.compile(r"####[ \t]*(?=([^\n]*?)(?:####|\n|$))")
# "The answer is N" (or "Answer: N"): the number must follow directly, so "the answer is not 5" states
# nothing.
_ANSWER_IS_RE = re.compile(
    r"\banswer(?:\s+is\s*(?:[:=]\s*)?|\s*[:=]\s*)(?=((?:[-−$€£¥]\s?)*\.?\d[^\n]*?)(?:\banswer\b|\n|$))",
    re.IGNORECASE)
LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
# An answer phrase ends at its line's end, at a sentence end ("The answer is 7. Because ...") or where
# an explanation starts ("The answer is 7 because she had 3 and got 4").
_SENTENCE_END_RE = re.compile(
    r"\.(?=\s|$)|\b(?:because|since|as|so|which|given|from|after|using)\b", re.IGNORECASE
)
_HEDGE = object()  # a statement naming two or more different values, or an unevaluated expression
_OPERATOR_GAP_RE = re.compile(r"^\s*[-−+*×x÷]\s*$")  # what separates two numbers in an expression
# After the cut, a second value offered as an alternative ("#### 7 so maybe 8", "7, or perhaps 8") hedges.
_ALTERNATIVE_RE = re.compile(
    r"\b(?:or|maybe|perhaps|possibly|probably|alternatively|otherwise|either|might|could)\b", re.IGNORECASE
)
# What follows a box on its line, when it starts by offering an alternative ("\boxed{7} or maybe 8").
_ALTERNATIVE_NEXT_RE = re.compile(
    r"^[\s,;]*(?:or|maybe|perhaps|possibly|probably|alternatively|otherwise|either)\b", re.IGNORECASE
)
# A final line that only lists numbers ("7, 8", "7 or 8", "either 7 or 8", "7 and/or 8").
_LIST_SEPARATORS_RE = re.compile(r"^(?:\s|,|;|/|\bor\b|\band\b|\beither\b|\bmaybe\b)*$", re.IGNORECASE)


def _stated_value(statement: str):
    """The one value a statement states, ``None`` when it states none, ``_HEDGE`` when it states two or
    more different ones ("7, 8", "7 or 8", "7 and 8", "7 8") or an expression left to evaluate ("4 + 4":
    not 4, and not read as 8 either). An equation states its right-hand side."""
    head, *rest = _SENTENCE_END_RE.split(statement, maxsplit=1)
    stated = LATEX_FRAC_RE.sub(r"\1/\2", head).rsplit("=", 1)[-1]
    values = distinct_values(stated)
    if len(values) > 1 or _is_expression(stated):
        return _HEDGE
    value = values.pop() if values else None
    if value is not None and rest and _offers_another(rest[0], value):
        return _HEDGE
    return value


def _is_expression(text: str) -> bool:
    """Whether two numbers in ``text`` stand either side of an arithmetic operator ("4 + 4", "2*3"; a
    fraction "1/2" is one number)."""
    matches = list(NUMBER_RE.finditer(text))
    return any(_OPERATOR_GAP_RE.match(text[a.end():b.start()])
               for a, b in zip(matches, matches[1:], strict=False))


def _offers_another(tail: str, value, pattern: re.Pattern = _ALTERNATIVE_RE) -> bool:
    """Whether ``tail`` (the text after a statement's cut) offers a different value as an alternative."""
    match = pattern.search(tail)
    return bool(match) and bool(distinct_values(tail[match.end():]) - {value})


def _boxed_value(content: str, after: str):
    """A box's value, ``_HEDGE`` when what follows it on its line (up to the next box) offers another:
    right after it ("\\boxed{7} or maybe 8") or after a cut, as for the other statements
    ("\\boxed{7} so maybe 8")."""
    value = _stated_value(content)
    if value is None or value is _HEDGE:
        return value
    head, *rest = _SENTENCE_END_RE.split(after.split("\n", 1)[0], maxsplit=1)
    if _offers_another(head, value, _ALTERNATIVE_NEXT_RE) or (rest and _offers_another(rest[0], value)):
        return _HEDGE
    return value


def _statements(text: str) -> list:
    statements = [m.group(1) for m in _HASH_RE.finditer(text)]
    statements += [m.group(1) for m in _ANSWER_IS_RE.finditer(text)]
    boxes = boxed_spans(text)
    ends = [start for _, start, _ in boxes[1:]] + [len(text)] * bool(boxes)  # a tail stops at the next box
    return [_stated_value(s) for s in statements] + [_boxed_value(content, text[end:stop])
                                                     for (content, _, end), stop in zip(boxes, ends,
                                                                                        strict=True)]


def _lists_candidates(line: str) -> bool:
    """Whether ``line`` (after its last ``=``) is a bare list of two or more different numbers."""
    tail = line.rsplit("=", 1)[-1]
    if len(distinct_values(tail)) < 2:
        return False
    matches = list(NUMBER_RE.finditer(tail))
    gaps = [tail[a.end():b.start()] for a, b in zip(matches, matches[1:], strict=False)]
    return all(_LIST_SEPARATORS_RE.match(g) for g in gaps)


def extract(text: str, mode: str) -> str | None:
    """One final value as a canonical number, or ``None``: a hedge (any answer statement naming several
    values, or several statements disagreeing) states nothing, in both modes."""
    statements = _statements(text)
    if any(v is _HEDGE for v in statements):
        return None
    stated = {v for v in statements if v is not None}
    if len(stated) > 1:
        return None  # hedging: two different final answers
    if stated:
        return canonical_number(stated.pop())
    if mode == "flexible":
        lines = [line for line in text.split("\n") if NUMBER_RE.search(line)]
        if lines and _lists_candidates(lines[-1]):
            return None  # a final line listing candidates ("7 or 8") is a hedge, not "the last number"
        value = last_number(text)
        return canonical_number(value) if value is not None else None
    return None


def reference(text: str) -> str | None:
    """The final value of a reference solution, or of a bare answer (``"1,000"``, ``"51.0"``)."""
    stated = extract(text, "strict")
    if stated is not None:
        return stated
    value = parse_number(text)
    return canonical_number(value) if value is not None else None


def key(answer: str) -> str:
    """The vote key: the canonical number already is one."""
    return answer


def match(gold: str, pred: str) -> bool:
    """Canonical numbers are equal exactly when their values are."""
    return gold == pred
