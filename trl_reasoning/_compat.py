"""The one place that touches TRL private methods (checked against trl 1.16; pyproject caps trl < 1.17).

``GRPORolloutHooks`` is a mixin for ``trl.GRPOTrainer`` subclasses. TRL computes group-normalised
advantages inside its private ``_generate_and_score_completions``; upstream plans no public hook for
finer-grained advantages, so this mixin wraps that method (and ``_calculate_rewards``, to keep each
reward function's raw scores) and hands the result to a public-named ``after_rollout`` method.
TRL's ``_compute_loss`` accepts per-token advantages of shape (batch, completion_len).
"""

from __future__ import annotations

from typing import Any


class GRPORolloutHooks:
    """Mixin: ``after_rollout(inputs, output, rewards_per_func)`` may replace ``output["advantages"]``."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # trl 1.16 private
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards  # gathered over processes: (all completions, reward funcs)
        return rewards

    def _generate_and_score_completions(self, inputs):  # trl 1.16 private
        output = super()._generate_and_score_completions(inputs)
        return self.after_rollout(inputs, output, self._local_rows(self._last_rewards_per_func, len(inputs)))

    def _local_rows(self, gathered, count: int):
        start = self.accelerator.process_index * count
        return gathered[start:start + count]

    def after_rollout(self, inputs: list[dict], output: dict[str, Any], rewards_per_func) -> dict[str, Any]:
        return output

    def per_token_logps(self, model, input_ids, attention_mask, logits_to_keep: int, batch_size: int | None = None):
        """Log-probabilities of ``input_ids``' last ``logits_to_keep`` tokens under ``model``."""
        logps, _, _ = self._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, batch_size)
        return logps

    def record_metric(self, name: str, value: float) -> None:
        """Log a scalar with TRL's own metrics (averaged per logging step)."""
        mode = "train" if self.model.training else "eval"
        self._metrics[mode][name].append(float(value))
