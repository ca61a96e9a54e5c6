"""Outcome-based reward model (ORM; Havrilla et al., 2024, section 2; Cobbe et al., 2021).

Trained on the policy's own samples, each labelled by the verifier: every completion token (or only
every step's last token, ``label_positions="step_end"``, or only the last one, ``"final"``) learns,
with binary cross-entropy, the probability that the final answer will be right. Early tokens cannot
know how the solution ends, so their labels are mostly noise: on the tiny CPU models ``final``
learns far faster, at the price of step scores that were never trained (with the ``implicit`` head
they still come out as partial sums of the log-likelihood ratio). Its score at a step's end is that
probability given the solution so far; the final score (last step) reranks samples (rerank@k) and its
step scores are dense rewards for PPO and step tags for return-conditioned RL.
"""

from __future__ import annotations

from .base import IGNORE_LABEL, EncodedText, RewardModelError, TokenRewardModel


class OutcomeRewardModel(TokenRewardModel):
    """ORM: per-token probability that the final answer is correct. See ``TokenRewardModel``."""

    kind = "outcome"

    def training_labels(self, encoded: EncodedText, row: dict, label_positions: str = "all") -> list[float]:
        """Token labels for one sample (``IGNORE_LABEL`` where no loss is taken) from ``row["label"]``."""
        label = row.get("label")
        if isinstance(label, bool) or isinstance(label, (int, float)) and 0 <= label <= 1:
            target = float(label)
        else:
            raise RewardModelError("ORM data: 'label' must be a boolean or a number in [0, 1], got "
                                   f"{label!r}")
        labels = [IGNORE_LABEL] * len(encoded.input_ids)
        positions = {
            "all": range(encoded.completion_start, len(labels)),
            "step_end": encoded.step_ends,
            "final": encoded.step_ends[-1:],
        }[label_positions]
        for i in positions:
            labels[i] = target
        return labels
