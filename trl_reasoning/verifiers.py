"""Final-answer extraction and equivalence checks for math word problems, by task name.

One correctness check serves both rewards and evaluation (as nanochat does), so a trained policy is
scored exactly the way it was rewarded. Each task's ``TaskSpec.answer`` (``answers.NUMERIC`` or
``answers.LATEX``) decides how its answers are read and compared:

* numeric tasks read an explicit final-answer statement (``#### N``, ``The answer is N``,
  ``\\boxed{N}``; flexible mode falls back to the last number) and compare exact rationals, so
  ``0.30`` equals ``3/10``;
* LaTeX tasks read the last ``\\boxed{...}`` and compare normalised text, then rationals, then
  math-verify in a forked child with a hard time limit.

A completion that states two or more *different* final answers is ambiguous: ``extract_answer``
returns ``None`` and ``is_correct`` returns ``False`` (no reward for hedging or answer spam). Empty,
oversized (> ``MAX_COMPLETION_CHARS``) and binary completions are rejected before any parsing.
"""

from __future__ import annotations

from typing import Literal

from .answers import AnswerKind
from .answers.boxed import find_boxed, last_boxed
from .answers.equations import equations_hold
from .answers.latex import MATH_VERIFY_TIMEOUT_S, normalize_latex
from .answers.numbers import MAX_COMPLETION_CHARS, canonical_number, is_garbage, parse_number
from .answers.time_limit import call_with_time_limit
from .tasks import TASKS

Mode = Literal["strict", "flexible"]

__all__ = [
    "MATH_VERIFY_TIMEOUT_S", "MAX_COMPLETION_CHARS", "TASKS", "Mode", "VerifierError", "answer_key",
    "answers_match", "call_with_time_limit", "canonical_number", "equations_hold", "extract_answer",
    "find_boxed", "is_correct", "last_boxed", "normalize_latex", "parse_number", "reference_answer",
]


class VerifierError(ValueError):
    """Raised for an unknown task or extraction mode."""


def answer_kind(task: str) -> AnswerKind:
    """The kind of final answer of registered task ``task``."""
    spec = TASKS.get(task.lower()) if isinstance(task, str) else None
    if spec is None:
        raise VerifierError(f"task: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return spec.answer


def extract_answer(completion: str, task: str = "gsm8k", mode: Mode = "strict") -> str | None:
    """Extract the final answer of ``completion``.

    Returns the canonical number (``"72"``, ``"-3/4"``) for numeric tasks, the boxed LaTeX for ``math``,
    or ``None`` when there is no answer, two different answers, or the text is empty/huge/binary.
    """
    kind = answer_kind(task)
    if mode not in ("strict", "flexible"):
        raise VerifierError(f"mode: unknown extraction mode {mode!r}; expected 'strict' or 'flexible'")
    if is_garbage(completion):
        return None
    return kind.extract(completion, mode)


def reference_answer(reference: str | float | int, task: str = "gsm8k") -> str | None:
    """Final answer of a reference: a bare answer (``"1,000"``, ``51.0``) or a full reference solution."""
    kind = answer_kind(task)
    if isinstance(reference, (int, float)):
        reference = repr(reference)
    if not isinstance(reference, str) or not reference.strip():
        return None
    return kind.reference(reference)


def answer_key(answer: str | None, task: str = "gsm8k") -> str | None:
    """The vote key of an extracted answer (maj@k, rerank's answer groups): equivalent answers share
    one key (``\\dfrac{1}{2}``, ``\\frac12`` and ``0.5`` all give ``1/2`` on MATH)."""
    kind = answer_kind(task)
    return None if answer is None else kind.key(answer)


def answers_match(gold: str, pred: str, task: str = "gsm8k") -> bool:
    """Whether two *extracted* answers are equivalent for ``task``."""
    return answer_kind(task).match(gold, pred)


def is_correct(completion: str, reference: str | float, task: str = "gsm8k", mode: Mode = "strict") -> bool:
    """Whether ``completion`` states the reference's final answer (and no other)."""
    pred = extract_answer(completion, task, mode)
    gold = reference_answer(reference, task)
    return pred is not None and gold is not None and answers_match(gold, pred, task)
