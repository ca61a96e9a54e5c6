"""Process-based reward model (PRM; Havrilla et al., 2024, section 2; Lightman et al., 2023).

Same network as the ORM, trained on one label per step at the step's last token. Labels come from a
labelled dataset (PRM800K / Math-Shepherd style: ``step_labels`` for a ``completion``, or TRL's
stepwise ``completions`` + ``labels`` lists), or from Monte-Carlo rollouts (Wang et al., 2024,
Math-Shepherd): continuations are sampled from each step's prefix and the step is labelled by
whether they reach the right answer: ``hard`` (1 if any does) or ``soft`` (the share that do). The
last step's label is the completion's own correctness. A solution's final score is its weakest
step's score (``min``), or the product of step scores (``aggregation="prod"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..steps import split_steps
from .base import IGNORE_LABEL, EncodedText, RewardModelError, TokenRewardModel


class ProcessRewardModel(TokenRewardModel):
    """PRM: per-step probability that the step is correct. See ``TokenRewardModel``."""

    kind = "process"
    aggregation = "min"

    def aggregate(self, step_scores: list[float]) -> float:
        return math.prod(step_scores) if self.aggregation == "prod" else min(step_scores)

    def training_labels(
        self, encoded: EncodedText, row: dict, label_positions: str = "step_end"
    ) -> list[float]:
        """Token labels for one sample: ``row["step_labels"][i]`` on step i's last token."""
        step_labels = row.get("step_labels")
        if not isinstance(step_labels, Sequence) or isinstance(step_labels, str):
            raise RewardModelError(f"PRM data: 'step_labels' must be a list of labels, got {step_labels!r}")
        if len(step_labels) != len(encoded.step_ends):
            raise RewardModelError(
                f"PRM data: sample {row.get('id', '?')!r} has {len(encoded.step_ends)} steps but "
                f"{len(step_labels)} step_labels"
            )
        labels = [IGNORE_LABEL] * len(encoded.input_ids)
        for i, label in zip(encoded.step_ends, step_labels, strict=True):
            if not (isinstance(label, (bool, int, float)) and 0 <= float(label) <= 1):
                raise RewardModelError("PRM data: step labels must be booleans or numbers in [0, 1], got "
                                       f"{label!r}")
            labels[i] = float(label)
        return labels


def monte_carlo_step_labels(
    sampler,
    rows: Sequence[dict],
    task: str,
    mc_rollouts: int = 4,
    estimate: str = "hard",
    delimiter: str = "\n",
    extraction: str = "strict",
    seed: int | None = None,
) -> list[list[float]]:
    """Step labels for ``rows`` (``prompt``, ``completion``, ``answer``) from ``mc_rollouts``
    continuations that ``sampler`` (a ``Sampler``, at its settings' temperature) draws after each step
    but the last."""
    from ..verifiers import is_correct

    if estimate not in ("hard", "soft"):
        raise RewardModelError(f"PRM: mc_estimate must be 'hard' or 'soft', got {estimate!r}")
    prefixes, owners = [], []
    for index, row in enumerate(rows):
        steps = split_steps(row["completion"], delimiter)
        for step in steps[:-1]:
            prefixes.append(row["completion"][:step.end] + delimiter)
            owners.append(index)
    prompts = [rows[i]["prompt"] + prefix for i, prefix in zip(owners, prefixes, strict=True)]
    result = sampler.sample(prompts, num_generations=mc_rollouts, seed=seed) if prompts else None
    labels: list[list[float]] = [[] for _ in rows]
    for n, (index, prefix) in enumerate(zip(owners, prefixes, strict=True)):
        answer = rows[index]["answer"]
        hits = [is_correct(prefix + c.text, answer, task, extraction) for c in result.completions[n]]
        share = sum(hits) / len(hits)
        labels[index].append(share if estimate == "soft" else float(share > 0))
    for index, row in enumerate(rows):
        if split_steps(row["completion"], delimiter):
            labels[index].append(float(is_correct(row["completion"], row["answer"], task, extraction)))
    return labels
