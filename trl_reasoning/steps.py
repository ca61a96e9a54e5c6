"""Split solutions into steps and find each step's last token.

One segmentation is shared by everything that works per step: PRM labels, ORM step-end scores,
the heuristic dense reward, RCRL per-step tags and PPO dense rewards. A step is a non-blank segment
between delimiters (a newline by default, so GSM8K-style solutions give one step per line and the
``#### N`` line is the last step). A step's span excludes surrounding whitespace.

Token alignment works on character offsets: a step "ends" on the token that holds its last
character. Tokenizers that merge a newline into the next token (``"\\n5"``) therefore still put the
step end on the previous token, and a token holding the ends of two steps serves both.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_DELIMITER = "\n"


@dataclass(frozen=True)
class Step:
    """One step of a solution: its text and its character span ``[start, end)`` in the solution."""

    text: str
    start: int
    end: int


def split_steps(text: str, delimiter: str = DEFAULT_DELIMITER) -> list[Step]:
    """Non-blank segments of ``text`` between ``delimiter``s, with their character spans."""
    if not delimiter:
        raise ValueError("step delimiter must be a non-empty string")
    steps, position = [], 0
    for segment in text.split(delimiter):
        stripped = segment.strip()
        if stripped:
            start = position + segment.index(stripped)
            steps.append(Step(stripped, start, start + len(stripped)))
        position += len(segment) + len(delimiter)
    return steps


def token_ends_from_offsets(offsets: Sequence[Sequence[int]]) -> list[int]:
    """Exclusive character end of every token, made non-decreasing (special tokens report (0, 0))."""
    ends, last = [], 0
    for _, end in offsets:
        last = max(last, int(end))
        ends.append(last)
    return ends


def token_ends_by_decoding(tokenizer, token_ids: Sequence[int]) -> list[int]:
    """Character end of every token in ``tokenizer.decode(token_ids)``, for tokens without offsets
    (a policy's sampled tokens, slow tokenizers): the length of each decoded prefix."""
    ends, last = [], 0
    for i in range(1, len(token_ids) + 1):
        last = max(last, len(tokenizer.decode(token_ids[:i], skip_special_tokens=True)))
        ends.append(last)
    return ends


def step_end_tokens(token_ends: Sequence[int], steps: Sequence[Step], shift: int = 0) -> list[int]:
    """Index of the token holding each step's last character (spans shifted by ``shift``).

    Steps past the last token (truncated text) map to the last token.
    """
    if not token_ends:
        return []
    last = len(token_ends) - 1
    return [min(bisect.bisect_left(token_ends, step.end + shift), last) for step in steps]

