"""Kinds of final answer a task can have, each with its extraction, vote key, equivalence and the
pattern that ends sampling once the answer is written: ``NUMERIC`` (GSM8K, SVAMP, arithmetic) and
``LATEX`` (MATH). A task names its kind in its ``TaskSpec``; ``verifiers`` dispatches on it.

This package imports nothing else from trl_reasoning, so tasks and verifiers can both build on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import latex, numeric


@dataclass(frozen=True)
class AnswerKind:
    """How one kind of final answer is read and compared.

    ``extract(text, mode)`` returns the stated answer or ``None``; ``reference(text)`` the answer of a
    reference solution; ``key(answer)`` the vote key (equivalent answers share one); ``match(gold,
    pred)`` compares two extracted answers; ``stop_pattern`` (a regex) ends a completion once matched.
    """

    name: str
    extract: Callable[[str, str], str | None]
    reference: Callable[[str], str | None]
    key: Callable[[str], str]
    match: Callable[[str, str], bool]
    stop_pattern: str | None = None


NUMERIC = AnswerKind("numeric", numeric.extract, numeric.reference, numeric.key, numeric.match,
                     stop_pattern=numeric.ANSWER_LINE)
LATEX = AnswerKind("latex", latex.extract, latex.reference, latex.key, latex.match, stop_pattern=None)

__all__ = ["LATEX", "NUMERIC", "AnswerKind"]
