"""Written arithmetic (``a op b ... = c``) checked exactly, without ``eval``: catches solutions that
reach the right final answer through wrong steps, which a final-answer check alone rewards."""

from __future__ import annotations

import re
from fractions import Fraction

from .numbers import MAX_DIGITS, is_garbage

_OPERAND = r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
_OPERATOR = r"[-+*/×÷]|(?<=\s)x(?=\s)"
_EQUATION_RE = re.compile(
    rf"((?:{_OPERAND}\s*(?:{_OPERATOR})\s*)+{_OPERAND})\s*=\s*[$€£]?\s*({_OPERAND})"
    rf"(?![\d.]*\s*(?:{_OPERATOR})\s*\d)"
)
_TOKEN_RE = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+|[-+*/×÷x]")


def _operands_and_operators(expression: str) -> tuple[list[Fraction], list[str]] | None:
    """Alternating operands/operators, with a unary minus folded into its operand."""
    values, operators, sign, expect_operand = [], [], 1, True
    for token in _TOKEN_RE.findall(expression):
        if token[0].isdigit() or token[0] == ".":
            if not expect_operand:
                return None
            values.append(sign * Fraction(token.replace(",", "")))
            sign, expect_operand = 1, False
        elif expect_operand and token == "-":
            sign = -sign
        elif expect_operand:
            return None
        else:
            operators.append(token)
            expect_operand = True
    return (values, operators) if values and not expect_operand else None


def evaluate(expression: str) -> Fraction | None:
    """Exact value of ``a op b op c ...`` with the usual precedence; ``None`` when it is not one."""
    parsed = _operands_and_operators(expression)
    if parsed is None:
        return None
    values, operators = parsed
    terms, signs = [values[0]], []
    for op, value in zip(operators, values[1:], strict=True):
        if op in "*×x":
            terms[-1] *= value
        elif op in "/÷":
            if value == 0:
                return None
            terms[-1] /= value
        else:
            signs.append(op)
            terms.append(value)
    total = terms[0]
    for op, value in zip(signs, terms[1:], strict=True):
        total = total + value if op == "+" else total - value
    return total


def equations_hold(text: str) -> bool:
    """Whether every written equation ``a op b ... = c`` in ``text`` is arithmetically true (text
    without equations passes; garbage fails)."""
    if is_garbage(text):
        return False
    for match in _EQUATION_RE.finditer(text):
        if any(len(t) > MAX_DIGITS for t in match.groups()):
            return False
        if evaluate(match.group(1)) != Fraction(match.group(2).replace(",", "")):
            return False
    return True
