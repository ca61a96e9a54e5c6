"""Reward-model training data: the policy's own samples, labelled by the verifier.

``sample_and_label`` samples K completions per question and labels each with final-answer
correctness (ORM data); with ``mc_rollouts > 0`` it also labels every step by Monte-Carlo rollouts
(PRM data). ``check_reward_rows`` validates a dataset before training starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..evaluation import EvalSettings
from ..steps import DEFAULT_DELIMITER
from .base import RewardModelError


@dataclass
class LabelSettings(EvalSettings):
    """How to sample and label reward-model data: the sampling settings of an evaluation, plus the
    task's verifier and the Monte-Carlo step labelling."""

    task: str = "gsm8k"
    mc_rollouts: int = 0
    mc_estimate: str = "hard"
    step_delimiter: str = DEFAULT_DELIMITER


def sample_and_label(model, tokenizer, dataset, settings: LabelSettings, sampler=None) -> list[dict]:
    """One row per sampled completion: ``id``, ``prompt``, ``completion``, ``answer``, ``solution``,
    ``label`` (verifier) and, with Monte-Carlo rollouts, ``step_labels``. ``sampler``: a running
    ``Sampler`` to reuse (else one is built from ``settings`` and closed afterwards)."""
    from ..evaluation import score_samples
    from ..sampling import Sampler, answer_pattern_for
    from .process import monte_carlo_step_labels

    if settings.mc_rollouts and any(not isinstance(p, str) for p in dataset["prompt"]):
        raise RewardModelError("reward data: Monte-Carlo step labels need plain-text prompts, not chat "
                               "messages")
    own = sampler is None
    sampler = sampler or Sampler(model, tokenizer, settings, answer_pattern_for(settings.task))
    try:
        result = sampler.sample(
            dataset["prompt"], settings.num_generations, settings.temperature, settings.seed
        )
        records = score_samples(dataset, result, settings.task, settings.extraction, "sample")
        solutions = [
            q.get("solution", "") for q, group in zip(dataset, result.completions, strict=True) for _ in group
        ]
        rows = [
            {
                "id": r["id"],
                "sample_index": r["sample_index"],
                "prompt": r["prompt"],
                "completion": r["completion"],
                "answer": r["reference"],
                "solution": solution,
                "extracted_answer": r["extracted_answer"],
                "label": r["correct"],
            }
            for r, solution in zip(records, solutions, strict=True)
        ]
        if settings.mc_rollouts:
            step_labels = monte_carlo_step_labels(
                sampler, rows, settings.task, settings.mc_rollouts, settings.mc_estimate,
                settings.step_delimiter, settings.extraction, seed=settings.seed + 1,
            )
            for row, labels in zip(rows, step_labels, strict=True):
                row["step_labels"] = labels
    finally:
        if own:
            sampler.close()
    return rows


def stepwise_to_completion(row: dict, delimiter: str) -> dict:
    """TRL's stepwise PRM format (``completions``: steps, ``labels``: one per step) as our format
    (``completion`` text with ``step_labels``); other rows are returned unchanged."""
    if "completions" not in row or "completion" in row:
        return row
    steps, labels = row["completions"], row.get("labels")
    if not isinstance(steps, Sequence) or isinstance(steps, str):
        raise RewardModelError("PRM data: 'completions' must be a list of step texts")
    return {**row, "completion": delimiter.join(s.strip() for s in steps), "step_labels": labels}


def check_reward_rows(columns: Sequence[str], kind: str) -> None:
    """The dataset must have a prompt, a completion and the labels its reward model learns."""
    needed = ["prompt"]
    needed.append("completion" if "completions" not in columns else "completions")
    needed.append("label" if kind == "outcome" else "labels" if "completions" in columns else "step_labels")
    missing = [c for c in needed if c not in columns]
    if missing:
        what = (
            "a 'label' column (final-answer correctness)"
            if kind == "outcome"
            else "per-step labels ('step_labels')"
        )
        raise RewardModelError(f"{kind} reward data: missing column(s) {missing}; expected 'prompt', "
                               f"'completion' and {what}")
