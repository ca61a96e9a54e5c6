"""Process-supervised GRPO (DeepSeekMath, Shao et al. 2024, section 4.1.3) on TRL's GRPOTrainer.

TRL's GRPO gives every token of a completion one advantage: its outcome reward normalised within the
group of completions of the same prompt. With process supervision each *step* has a reward (a PRM,
an ORM's step scores or the heuristic); every step reward is normalised by the mean and standard
deviation of all step rewards of the group, and a token's advantage is the sum of the normalised rewards
of the steps from its own step on (``advantages.process_supervised_advantages``). Step rewards are
computed from the completion text and placed on the policy's tokens by character offsets, so a reward
model may use a tokenizer of its own. Upstream TRL declined this (issue 3090); it needs only a different
advantage, which ``GRPORolloutHooks.after_rollout`` supplies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from trl import GRPOTrainer

from .._compat import GRPORolloutHooks, distributed_env, enable_vllm_colocate_on_cpu, restore_distributed_env
from ..advantages import advantages_to_go, group_normalised_step_rewards
from .process_grpo_config import ProcessGRPOConfig
from .step_rewards import check_providers, completion_texts, policy_step_end_tokens, weighted_step_rewards


class ProcessGRPOTrainer(GRPORolloutHooks, GRPOTrainer):
    """GRPO with per-step rewards normalised within each group, with the constructor of TRL trainers.

    Args:
        model, reward_funcs, args, train_dataset, eval_dataset, processing_class, callbacks, peft_config:
            as for ``trl.GRPOTrainer`` (``reward_funcs``: the outcome rewards, added to the last step).
        step_reward_funcs: providers with ``step_rewards(prompts, completions, **columns)`` returning one
            reward per step (``ProcessRewardModel``, ``OutcomeRewardModel``, ``HeuristicStepReward``).
    """

    _tag_names = ["trl", "trl-reasoning", "grpo", "process-supervision"]

    def __init__(self, model, reward_funcs, args: ProcessGRPOConfig | None = None, train_dataset=None,
                 eval_dataset=None, processing_class=None, callbacks=None, peft_config=None,
                 step_reward_funcs: Sequence | None = None, **kwargs):
        args = args or ProcessGRPOConfig(output_dir="runs/process_grpo")
        if not isinstance(args, ProcessGRPOConfig):
            raise ValueError(f"args: expected a ProcessGRPOConfig, got {type(args).__name__}")
        self.step_reward_funcs = list(step_reward_funcs or [])
        if not self.step_reward_funcs:
            raise ValueError("step_reward_funcs: process supervision needs at least one step-reward provider "
                             "(e.g. HeuristicStepReward() or a ProcessRewardModel)")
        self.step_reward_weights = check_providers(self.step_reward_funcs, args.dense_reward_weights)
        if args.use_vllm:
            enable_vllm_colocate_on_cpu()
        self._launch_env = distributed_env()
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, callbacks=callbacks,
                         peft_config=peft_config, **kwargs)
        self.samples_seen = 0  # completions sampled for training, over all processes

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:
            restore_distributed_env(self._launch_env)

    def after_rollout(self, inputs, output, rewards_per_func):
        """Replace GRPO's sequence advantages by process-supervised per-token ones, (batch, T)."""
        from accelerate.utils import gather_object

        if self.model.training:
            self.samples_seen += len(inputs) * self.accelerator.num_processes
        a, mask = self.args, output["completion_mask"]
        ids, texts = completion_texts(self.processing_class, output["completion_ids"], mask)
        steps = weighted_step_rewards(self.step_reward_funcs, self.step_reward_weights, inputs, texts,
                                      a.step_delimiter, a.dense_reward_shaping,
                                      lambda name, value: self.record_metric(f"process/{name}", value))
        weights = self.reward_weights.to(rewards_per_func.device)
        outcome = torch.nan_to_num(rewards_per_func, nan=0.0) @ weights
        for row, value in zip(steps, outcome.tolist(), strict=True):
            if row and a.outcome_reward_weight:
                row[-1] += a.outcome_reward_weight * value
        # a group's completions may sit on several processes: normalise over all of them
        everyone = gather_object(steps) if self.accelerator.num_processes > 1 else steps
        start = self.accelerator.process_index * len(steps)
        normalised = group_normalised_step_rewards(everyone, self.num_generations)[start:start + len(steps)]
        ends = policy_step_end_tokens(self.processing_class, ids, texts, a.step_delimiter)
        self.record_metric("process/steps_per_completion", sum(map(len, steps)) / max(len(steps), 1))
        output["advantages"] = advantages_to_go(normalised, ends, mask)
        return output
