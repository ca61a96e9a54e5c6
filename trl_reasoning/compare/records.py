"""What a comparison's method records hold, read from a seed's files: the evaluations a method ran while
it trained (and on how many held-out questions), the K of the sampled metrics. Each model's per-question
held-out values come from the eval stage's reader, ``stages.evaluation.question_scores``."""

from __future__ import annotations

import json
from pathlib import Path


def sampled_k(results: dict) -> int:
    """The K of the evaluation's sampled metrics (the largest pass@K)."""
    metrics = next(iter(results.values()))["metrics"]
    return max(int(n.split("@")[1]) for n in metrics if n.startswith("pass@"))


def training_points(stage_folder: Path) -> list[list]:
    """[samples drawn, metrics, seconds] of the evaluations a method ran while it trained: a rounds
    trainer's per-round reports (round 0, the start, left out; seconds: the recorded time of rounds 1 to
    this one, as a time budget counts it) or the training-time evaluations (their ``seconds``, None in
    records written before they had one)."""
    from ..time_budget import rounds_train_seconds

    rounds, during = stage_folder / "metrics.json", stage_folder / "reasoning_eval" / "metrics.json"
    if rounds.exists() and "rounds" in (data := json.loads(rounds.read_text())):
        history = data["rounds"]
        return [[r["cumulative_samples"], r["eval"], rounds_train_seconds(history[:i + 1])]
                for i, r in enumerate(history) if i]
    if during.exists():
        return [[e["samples_drawn"], e["metrics"], e.get("seconds")]
                for e in json.loads(during.read_text())["evaluations"]]
    return []


def training_eval_questions(stage_folder: Path, num_questions: int) -> int | None:
    """How many held-out questions a method's training-time evaluations scored (``training_eval.limit``:
    the first N of the held-out split), where ``training_points`` read them and they were fewer than
    ``num_questions``; None otherwise (a rounds trainer's reports score every question)."""
    rounds, during = stage_folder / "metrics.json", stage_folder / "reasoning_eval" / "metrics.json"
    if (rounds.exists() and "rounds" in json.loads(rounds.read_text())) or not during.exists():
        return None
    size = json.loads(during.read_text()).get("num_questions")
    return size if size and size < num_questions else None
