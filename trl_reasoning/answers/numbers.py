"""Numbers in free text as exact rationals, and the guard every verifier applies to its input first."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

MAX_COMPLETION_CHARS = 32_768
# Huge exponents make exact rational arithmetic explode; beyond this a number counts as unparseable.
MAX_DIGITS = 200

NUM_BODY = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
NUMBER_RE = re.compile(
    rf"(?P<sign>(?<![\w)\].])[-−](?=[$€£¥]?\.?\d))?[$€£¥]?\s?(?P<sign2>[-−])?(?P<num>{NUM_BODY})"
    r"(?:\s?/\s?(?P<den>\d+)(?![\d.]))?"
)


def is_garbage(text: Any) -> bool:
    """True for non-strings, empty, oversized or binary text: such input never earns reward."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_COMPLETION_CHARS:
        return True
    if "\x00" in text:
        return True
    head = text[:4096]
    unprintable = sum(1 for ch in head if not ch.isprintable() and ch not in "\n\r\t")
    return unprintable > 0.1 * len(head)


def fraction_from_match(m: re.Match) -> Fraction | None:
    """The rational a ``NUMBER_RE`` match writes, ``None`` when it is too long to be a real answer."""
    body = m.group("num").replace(",", "")
    if len(body) > MAX_DIGITS:
        return None
    value = Fraction(body)
    if m.group("den"):
        den = int(m.group("den"))
        if den == 0:
            return None
        value /= den
    if m.group("sign") or m.group("sign2"):
        value = -value
    return value


def canonical_number(value: Fraction) -> str:
    """Canonical text of a rational: ``"72"``, ``"-5"``, ``"3/4"``. Used as the vote key."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def parse_number(text: str) -> Fraction | None:
    """First number in ``text`` as an exact rational (``"$1,234.50"`` -> 2469/2), else ``None``."""
    m = NUMBER_RE.search(text)
    return fraction_from_match(m) if m else None


def last_number(text: str) -> Fraction | None:
    """The last number in ``text``, else ``None``."""
    last = None
    for last in NUMBER_RE.finditer(text):  # noqa: B007 - only the final match is wanted
        pass
    return fraction_from_match(last) if last else None


def distinct_values(text: str) -> set[Fraction]:
    """The different numbers written in ``text``."""
    return {fraction_from_match(m) for m in NUMBER_RE.finditer(text)} - {None}
