"""Which sampled solutions a round trains on: deduplicated (by normalised text, across rounds), capped
per question, as TRL prompt-completion pairs."""

from __future__ import annotations

from collections.abc import Sequence

from ..rewards import completion_text


def normalise_solution(text: str) -> str:
    """Dedup key of a solution: whitespace collapsed, ends stripped."""
    return " ".join(text.split())


def select_solutions(
    samples: Sequence[dict],
    seen: set[tuple[str, str]],
    max_per_question: int | None,
    counts: dict[str, int] | None = None,
    only_correct: bool = True,
    deduplicate: bool = True,
) -> list[dict]:
    """Samples not seen before (per question, by normalised text, unless ``deduplicate=False``; correct
    ones only unless ``only_correct=False``; empty ones never), capped at ``max_per_question`` per question.

    ``seen`` and ``counts`` (rows already kept per question, e.g. in earlier rounds) are updated in
    place, so the cap applies to everything kept over all rounds.
    """
    kept, counts = [], {} if counts is None else counts
    for sample in samples:
        key = (sample["id"], normalise_solution(sample["completion"]))
        if (only_correct and not sample["correct"]) or not key[1] or (deduplicate and key in seen):
            continue
        if max_per_question is not None and counts.get(sample["id"], 0) >= max_per_question:
            continue
        seen.add(key)
        counts[sample["id"]] = counts.get(sample["id"], 0) + 1
        kept.append(sample)
    return kept


def sft_pair(prompt, completion: str) -> dict:
    """A TRL prompt-completion example; chat prompts get an assistant message as completion."""
    if isinstance(prompt, str):
        return {"prompt": prompt, "completion": completion}
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion_text(completion)}]}
