"""Written arithmetic (``a op b ... = c``) checked exactly, without ``eval``: catches solutions that
reach the right final answer through wrong steps, which a final-answer check alone rewards."""

from __future__ import annotations

import re
from fractions import Fraction

from .numbers import MAX_DIGITS, is_garbage

_OPERAND = r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
_OPERATOR = r"[-+*/×÷]|(?<=\s)x(?=\s)"
_TERM = rf"(?:-?\(\s*)*{_OPERAND}(?:\s*\))*"  # parentheses: SVAMP writes "( 76.0 - 25.0 ) = 51"
_EQUATION_RE = re.compile(
    rf"({_TERM}(?:\s*(?:{_OPERATOR})\s*{_TERM})+)\s*=\s*[$€£]?\s*({_OPERAND})"
    rf"(?![\d.]*\s*(?:{_OPERATOR})\s*\d)"
)
_TOKEN_RE = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+|[-+*/×÷x()]")


class _NotArithmetic(ValueError):
    pass


def evaluate(expression: str) -> Fraction | None:
    """Exact value of ``a op b op c ...`` with the usual precedence and parentheses; ``None`` when it is
    not one (or divides by zero)."""
    tokens = _TOKEN_RE.findall(expression)
    try:
        value, end = _sum(tokens, 0)
    except (_NotArithmetic, ZeroDivisionError):
        return None
    return value if end == len(tokens) else None


def _sum(tokens: list[str], i: int) -> tuple[Fraction, int]:
    value, i = _product(tokens, i)
    while i < len(tokens) and tokens[i] in ("+", "-"):
        right, j = _product(tokens, i + 1)
        value, i = (value + right if tokens[i] == "+" else value - right), j
    return value, i


def _product(tokens: list[str], i: int) -> tuple[Fraction, int]:
    value, i = _factor(tokens, i)
    while i < len(tokens) and tokens[i] in ("*", "×", "x", "/", "÷"):
        right, j = _factor(tokens, i + 1)
        value, i = (value * right if tokens[i] in ("*", "×", "x") else value / right), j
    return value, i


def _factor(tokens: list[str], i: int) -> tuple[Fraction, int]:
    if i >= len(tokens):
        raise _NotArithmetic
    token = tokens[i]
    if token == "-":
        value, i = _factor(tokens, i + 1)
        return -value, i
    if token == "(":
        value, i = _sum(tokens, i + 1)
        if i >= len(tokens) or tokens[i] != ")":
            raise _NotArithmetic
        return value, i + 1
    if token[0].isdigit() or token[0] == ".":
        return Fraction(token.replace(",", "")), i + 1
    raise _NotArithmetic


def _balanced(expression: str) -> str:
    """``expression`` without the parentheses the match cut off from their partner ("(so 2 + 3) = 5")."""
    expression = expression.strip()
    while expression.startswith("(") and expression.count("(") > expression.count(")"):
        expression = expression[1:].lstrip()
    while expression.endswith(")") and expression.count(")") > expression.count("("):
        expression = expression[:-1].rstrip()
    return expression


def equations_hold(text: str) -> bool:
    """Whether every written equation ``a op b ... = c`` in ``text`` is arithmetically true (text
    without equations passes; garbage fails)."""
    if is_garbage(text):
        return False
    for match in _EQUATION_RE.finditer(text):
        if any(len(t) > MAX_DIGITS for t in match.groups()):
            return False
        expression = _balanced(match.group(1))
        if expression.count("(") != expression.count(")"):
            continue  # a parenthesis the text opens elsewhere: not an equation this can read
        if evaluate(expression) != Fraction(match.group(2).replace(",", "")):
            return False
    return True
