"""LaTeX answers (MATH): the last ``\\boxed{...}``, compared cheaply first (normalised text, then
rationals) and only then through math-verify, in a forked child with a hard time limit (sympy can hang
in C code, ``9^{9^{9^9}}``, where neither signals nor threads can stop it; forking also works off the
main thread and in dataloader workers, where math-verify's own signal-based timeouts fail)."""

from __future__ import annotations

import re
from fractions import Fraction

from .boxed import find_boxed, last_boxed
from .numbers import NUM_BODY, canonical_number, parse_number
from .time_limit import call_with_time_limit

MATH_VERIFY_TIMEOUT_S = 1.0
_NOISE = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |\$|\s|\^\{?\\circ\}?|\\%|%")
_BARE_FRAC_RE = re.compile(r"\\frac(\d)(\d)")  # \frac12 -> \frac{1}{2}
_SIMPLE_FRAC_RE = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(\d+)\}$")
_OR_RE = re.compile(r"\bor\b|\\lor\b|\\vee\b", re.IGNORECASE)
_PLAIN_NUMBER_RE = re.compile(rf"^\s*-?\s*(?:{NUM_BODY})\s*$")
# a power of a non-number with an exponent of 3 digits or more: sympy expands (x+1)^{232} for seconds
_HUGE_SYMBOLIC_POWER_RE = re.compile(r"[^\d\s]\s*\^\s*\{?\s*\d{3,}")


def normalize_latex(answer: str) -> str:
    """Cheap textual normalisation of a LaTeX answer (spacing, sizing commands, ``dfrac``, ``\\text``)."""
    s = _NOISE.sub("", answer)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", s)
    return s.rstrip(".")


def _is_plain_number(text: str) -> bool:
    return bool(_PLAIN_NUMBER_RE.match(normalize_latex(text)))


def extract(text: str, mode: str) -> str | None:
    """The boxed answer (both modes); ``None`` for boxes that disagree or a box offering alternatives
    ("7 or 8"). Commas stay allowed inside a box: MATH answers can be tuples, intervals or sets."""
    boxed = find_boxed(text)
    if not boxed or len({normalize_latex(b) for b in boxed}) > 1 or _OR_RE.search(boxed[-1]):
        return None
    return boxed[-1]


def reference(text: str) -> str | None:
    """A reference solution's last box, or the bare reference answer itself."""
    return last_boxed(text) or text.strip()


def key(answer: str) -> str:
    """The normalised LaTeX, with plain numbers and simple fractions written as canonical rationals
    (``\\dfrac{1}{2}``, ``\\frac12`` and ``0.5`` all give ``1/2``); other expressions vote by normalised
    text only (math-verify equivalence is too slow to run pairwise inside a vote)."""
    text = _BARE_FRAC_RE.sub(r"\\frac{\1}{\2}", normalize_latex(answer))
    fraction = _SIMPLE_FRAC_RE.match(text)
    if fraction:
        sign, num, den = fraction.groups()
        if int(den) != 0:
            value = Fraction(int(num), int(den))
            return canonical_number(-value if sign else value)
    if _is_plain_number(text):
        value = parse_number(text)
        return canonical_number(value) if value is not None else text
    return text


def _math_verify_equal(gold: str, pred: str) -> bool:
    from math_verify import parse, verify

    # math-verify's own timeouts use SIGALRM; ours is the process-level limit around this call.
    parsed_gold = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
    parsed_pred = parse(f"\\boxed{{{pred}}}", parsing_timeout=None)
    return bool(verify(parsed_gold, parsed_pred, timeout_seconds=None))  # order matters: gold first


_warmed = False


def _warm_math_verify() -> None:
    """Parse and compare once in the parent so forked children inherit math-verify's compiled grammars
    and sympy's lazily built parts: a child's first symbolic comparison otherwise spent ~0.48 s of its
    1 s CPU limit building them (0.009 s after; measured on the 2-core AMD EPYC), and failed an equal
    pair in a loaded test run."""
    global _warmed
    if not _warmed:
        import logging

        logging.getLogger("math_verify").setLevel(logging.ERROR)
        _math_verify_equal("1", "1")
        _math_verify_equal("(x+1)^2", "x^2+2x+1")
        _warmed = True


def match(gold: str, pred: str) -> bool:
    """Equivalent LaTeX answers: same normalised text, same plain number, or math-verify says so."""
    if normalize_latex(gold) == normalize_latex(pred):
        return True
    gold_num, pred_num = (parse_number(normalize_latex(x)) for x in (gold, pred))
    if gold_num is not None and pred_num is not None and _is_plain_number(gold) and _is_plain_number(pred):
        return gold_num == pred_num
    if _HUGE_SYMBOLIC_POWER_RE.search(gold) or _HUGE_SYMBOLIC_POWER_RE.search(pred):
        # no answer needs such a power compared symbolically (equal texts matched above); math-verify
        # would spend its whole time limit expanding it (e.g. a model's "(x+1)^23332x")
        return False
    _warm_math_verify()
    return bool(call_with_time_limit(_math_verify_equal, (gold, pred), MATH_VERIFY_TIMEOUT_S))
