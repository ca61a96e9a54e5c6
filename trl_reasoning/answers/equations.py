"""Written arithmetic (``a op b ... = c``) checked exactly, without ``eval``: catches solutions that
reach the right final answer through wrong steps, which a final-answer check alone rewards."""

from __future__ import annotations

import re
from fractions import Fraction

from .numbers import MAX_DIGITS, is_garbage

_OPERAND = r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
_OPERATOR = r"[-+*/×÷]|(?<=[ \t])x(?=[ \t])"
_SP = r"[ \t]*"  # an equation stays on its line: "4 - 8 = -4\n-4 + 5 = 1" is two equations, not one
_TERM = rf"(?:-?\({_SP})*{_OPERAND}(?:{_SP}\))*"  # parentheses: SVAMP writes "( 76.0 - 25.0 ) = 51"
_SIDE = rf"{_TERM}(?:{_SP}(?:{_OPERATOR}){_SP}{_TERM})*"
# A chain "a op b = c" or "a op b = c op d = e": every "=" is a link, and every link is checked.
_CHAIN_RE = re.compile(rf"{_SIDE}(?:{_SP}={_SP}[$€£]?{_SP}{_SIDE})+")
_LINK_RE = re.compile(r"[ \t]*=[ \t]*[$€£]?[ \t]*")
_HAS_OPERATOR_RE = re.compile(rf"{_TERM}{_SP}(?:{_OPERATOR}){_SP}{_TERM}")
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


def _first_operand(side: str) -> Fraction | None:
    match = re.search(_OPERAND, side)
    return Fraction(match.group(0).replace(",", "")) if match else None


def _link_holds(left: str, right: str) -> bool:
    """``left = right`` holds when both sides have the same value, or, in the running style models write
    ("3 + 4 = 7 * 2 = 14": 3 + 4 is 7, then 7 * 2 is 14), when ``left``'s value is ``right``'s first
    operand."""
    value = evaluate(left)
    return value is not None and value in (evaluate(right), _first_operand(right))


def equation_chains(text: str) -> list[list[str]]:
    """The written equations of ``text`` as chains of sides (``"3 + 4 = 7"`` -> ``["3 + 4", "7"]``), those
    with at least one operator and balanced parentheses (what this module can read)."""
    chains = []
    for match in _CHAIN_RE.finditer(text):
        sides = [_balanced(side) for side in _LINK_RE.split(match.group(0))]
        if not any(_HAS_OPERATOR_RE.search(side) for side in sides):
            continue  # "12 = 12" or a list of numbers: no arithmetic to check
        if any(side.count("(") != side.count(")") for side in sides):
            continue  # a parenthesis the text opens elsewhere: not an equation this can read
        chains.append(sides)
    return chains


def equations_hold(text: str) -> bool:
    """Whether every written equation ``a op b ... = c`` in ``text`` is arithmetically true, every link of
    a chain ``a op b = c op d = e`` included (text without equations passes; garbage fails)."""
    if is_garbage(text):
        return False
    for sides in equation_chains(text):
        if any(len(t) > MAX_DIGITS for side in sides for t in _TOKEN_RE.findall(side)):
            return False
        if not all(_link_holds(a, b) for a, b in zip(sides, sides[1:], strict=False)):
            return False
    return True
