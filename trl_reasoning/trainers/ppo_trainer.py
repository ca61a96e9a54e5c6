"""PPO with sparse and dense rewards (Havrilla et al., 2024, section 3.2) on TRL's GRPOTrainer.

TRL's GRPOTrainer samples (HF generate or vLLM), scores with ``reward_funcs``, and optimises the
clipped surrogate for ``num_iterations`` PPO epochs per batch, with TRL's logging, checkpointing
and distributed set-up. This trainer replaces GRPO's group-normalised sequence advantage with
per-token GAE from a learned value model:

1. rewards per token: the weighted sparse reward (``reward_funcs``, e.g. final-answer correctness)
   on the last completion token; each dense provider's step rewards (ORM, PRM or the heuristic,
   ``dense_reward_funcs``) on each step's last token (a reward model's step scores shaped as score
   differences by default, ``dense_reward_shaping``); minus ``kl_coef * KL_t`` on every token when
   the KL penalty lives in the reward;
2. values ``V_t`` from the value model (``separate``: a copy of the policy backbone with a scalar token
   head, started as ``value_head_init`` says; ``shared``: a scalar head on the policy's own backbone,
   started at zero), computed in eval mode (no dropout), so the GAE baseline and the value loss's old
   values are the same on every path;
3. GAE advantages and returns (``advantages.gae``), advantages whitened;
4. loss: TRL's clipped policy loss on the per-token advantages for ``num_iterations`` PPO epochs per
   rollout batch (default 4, so the clip binds), plus ``vf_coef`` x the clipped value loss, whose
   gradient steps the value model's own optimizer.

Deviations: GRPO needs >= 2 generations per prompt (``num_generations``); the value model is
optimised per micro-batch with its own AdamW and is not sharded by DeepSpeed: under DeepSpeed it is a
replica per process, kept equal by broadcasting it once and averaging its gradients (``value_model``).
The ``shared`` mode (a scalar head on the policy's backbone, trained with the policy's optimizer) costs
a second backbone pass per batch, is single-process tested only and does not support PEFT yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch
from trl import GRPOTrainer

from .._compat import (
    CheckpointHooks,
    GRPORolloutHooks,
    distributed_env,
    enable_vllm_colocate_on_cpu,
    last_complete_checkpoint,
    restore_distributed_env,
)
from ..advantages import (
    AdaptiveKLController,
    clipped_value_loss,
    explained_variance,
    gae,
    kl_estimate,
    masked_mean,
    place_rewards,
    whiten,
)
from ..distributed import gathered
from ..loading import trusts_remote_code
from .ppo_config import PPOConfig
from .step_rewards import check_providers, completion_texts, policy_step_end_tokens, weighted_step_rewards
from .value_model import PPOError, build_value_model, value_fingerprints
from .value_optimizer import ValueOptimizer

VALUE_STATE = "value_model.pt"
VALUE_HEAD = "value_head"  # submodule name of the shared-backbone value head


class PPOTrainer(GRPORolloutHooks, CheckpointHooks, GRPOTrainer):
    """PPO with a value model and GAE, with the constructor of TRL trainers.

    Args:
        model, args, train_dataset, eval_dataset, processing_class, reward_funcs, callbacks, peft_config:
            as for ``trl.GRPOTrainer`` (``reward_funcs`` are the sparse rewards).
        dense_reward_funcs: providers with ``step_rewards(prompts, completions, **columns)`` returning
            one reward per step (``OutcomeRewardModel``, ``ProcessRewardModel``, ``HeuristicStepReward``).
        value_model: a token-classification model with one label, or a folder/Hub id to build one
            from; default: the policy's own checkpoint with a new scalar head. Must share the policy's
            tokenizer (it reads the policy's token ids).
    """

    _tag_names = ["trl", "trl-reasoning", "ppo"]

    def __init__(
        self,
        model,
        reward_funcs,
        args: PPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        callbacks=None,
        peft_config=None,
        dense_reward_funcs: Sequence | None = None,
        value_model=None,
        quantization_config=None,
        **kwargs,
    ):
        args = args or PPOConfig(output_dir="runs/ppo")
        if not isinstance(args, PPOConfig):
            raise PPOError(f"args: expected a PPOConfig, got {type(args).__name__}")
        self.dense_reward_funcs = list(dense_reward_funcs or [])
        self.dense_reward_weights = check_providers(self.dense_reward_funcs, args.dense_reward_weights,
                                                    PPOError)
        if args.use_vllm:
            enable_vllm_colocate_on_cpu()
        self._launch_env = distributed_env()  # restored after train(): TRL's colocated engine overwrites it
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, callbacks=callbacks,
                         peft_config=peft_config, quantization_config=quantization_config, **kwargs)
        if args.kl_penalty == "reward":
            self.beta = 0.0  # GRPO adds beta * KL to the loss; here KL is part of the reward instead
        self.kl_controller = AdaptiveKLController(args.kl_coef, args.target_kl, args.kl_horizon)
        self.value_model = self.value_optimizer = None
        if args.value_model_mode == "shared":
            self._add_value_head(value_model, peft_config)
        else:
            value_peft = peft_config if args.value_model_peft else None
            self.value_model = build_value_model(value_model, model, self.model, self.processing_class,
                                                 self.accelerator, peft_config=value_peft,
                                                 quantization_config=quantization_config,
                                                 trust_remote_code=trusts_remote_code(args),
                                                 zero_start=args.value_head_init == "zero",
                                                 no_dropout=args.disable_dropout)
            self.value_optimizer = ValueOptimizer(self.value_model, args, self.accelerator.num_processes)
        self.samples_seen = 0  # completions sampled for training, over all processes

    # ------------------------------------------------------------------ value model

    def _add_value_head(self, value_model, peft_config) -> None:
        """Shared mode: a scalar head on the policy's own backbone, trained by the policy's optimizer."""
        policy = self.accelerator.unwrap_model(self.model)
        if value_model is not None:
            raise PPOError("value_model: not used with value_model_mode='shared' (the head sits on the "
                           "policy)")
        if peft_config is not None or hasattr(policy, "peft_config"):
            raise PPOError("value_model_mode: 'shared' does not support PEFT yet; use 'separate'")
        head = torch.nn.Linear(policy.config.hidden_size, 1)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        policy.add_module(VALUE_HEAD, head.to(device=policy.device, dtype=policy.dtype))

    def _value_head(self):
        return getattr(self.accelerator.unwrap_model(self.model), VALUE_HEAD, None)

    def rollout_values(self, input_ids, attention_mask, logits_to_keep: int) -> torch.Tensor:
        """``V_t`` at rollout time: the value model (or the shared backbone) in eval mode, no dropout."""
        module = self.value_model if self.value_model is not None else self.model
        with torch.no_grad(), _eval_mode(module):
            return self._values(input_ids, attention_mask, logits_to_keep)

    def _values(self, input_ids, attention_mask, logits_to_keep: int) -> torch.Tensor:
        """``V_t`` for each completion token t: the value head on the token before it."""
        if self.value_model is not None:
            logits = self.value_model(input_ids=input_ids, attention_mask=attention_mask).logits[..., 0]
        else:  # shared: a second pass through the policy's backbone (its logits pass has no hidden states)
            policy = self.accelerator.unwrap_model(self.model)
            backbone = getattr(policy, policy.base_model_prefix)
            hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            logits = getattr(policy, VALUE_HEAD)(hidden)[..., 0]
        return logits[:, -logits_to_keep - 1:-1].float()

    # ------------------------------------------------------------------ rollout: rewards, values, GAE

    def after_rollout(self, inputs, output, rewards_per_func):
        """Per-token rewards, rollout values and GAE for one rollout batch; ``output`` gains
        ``advantages``, ``returns``, ``old_values`` and ``token_rewards`` (all (batch, T))."""
        training = self.model.training
        if training:
            self.samples_seen += len(inputs) * self.accelerator.num_processes
        prompt_ids, completion_ids = output["prompt_ids"], output["completion_ids"]
        mask = output["completion_mask"].float()
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        width = completion_ids.shape[1]
        values = self.rollout_values(input_ids, attention_mask, width) * mask
        with torch.no_grad():
            rewards = self._token_rewards(inputs, completion_ids, mask, rewards_per_func)
            if self.kl_controller.value > 0 and self.args.kl_penalty == "reward":
                kl = self._kl(input_ids, attention_mask, width, output) * mask
                rewards = rewards - self.kl_controller.value * kl
                self._record_kl(kl.sum(dim=1), training)
            if self.args.whiten_rewards:
                rewards = whiten(rewards, mask, shift_mean=False)
            advantages, returns = gae(rewards, values, mask, self.args.gamma, self.args.lam)
            if self.args.whiten_advantages:
                advantages = whiten(advantages, mask)
        self.record_metric("ppo/values_mean", masked_mean(values, mask).item())
        self.record_metric("ppo/explained_variance", explained_variance(values, returns, mask))
        output.update(advantages=advantages, returns=returns, old_values=values, token_rewards=rewards)
        return output

    def _record_kl(self, kl_per_completion: torch.Tensor, training: bool) -> None:
        """Log the KL per completion averaged over every process; only training rollouts move the
        adaptive coefficient (evaluation rollouts must not change training)."""
        gathered = self.accelerator.gather(kl_per_completion.detach())
        mean = gathered.float().mean().item()
        self.record_metric("ppo/kl", mean)
        self.record_metric("ppo/kl_coef", self.kl_controller.value)
        if training:
            self.kl_controller.update(mean, gathered.numel())

    def _token_rewards(self, inputs, completion_ids, mask, rewards_per_func) -> torch.Tensor:
        weights = self.reward_weights.to(rewards_per_func.device)
        sparse = torch.nan_to_num(rewards_per_func, nan=0.0) @ weights
        self.record_metric("ppo/reward/sparse", sparse.mean().item())
        if not self.dense_reward_funcs:
            return place_rewards(mask, sparse.to(mask.device))
        a = self.args
        ids, texts = completion_texts(self.processing_class, completion_ids, mask)
        steps = weighted_step_rewards(self.dense_reward_funcs, self.dense_reward_weights, inputs, texts,
                                      a.step_delimiter, a.dense_reward_shaping,
                                      lambda name, value: self.record_metric(f"ppo/reward/{name}", value),
                                      PPOError)
        ends = policy_step_end_tokens(self.processing_class, ids, texts, a.step_delimiter)
        return place_rewards(mask, sparse.to(mask.device), steps, ends)

    def _kl(self, input_ids, attention_mask, width: int, output) -> torch.Tensor:
        logps = output.get("old_per_token_logps")
        if logps is None:
            logps = self.per_token_logps(self.model, input_ids, attention_mask, width)
        if self.ref_model is not None:
            ref_logps = self.per_token_logps(self.ref_model, input_ids, attention_mask, width)
        else:  # PEFT: the base model is the policy with its adapter disabled
            with self.accelerator.unwrap_model(self.model).disable_adapter():
                ref_logps = self.per_token_logps(self.model, input_ids, attention_mask, width)
        return kl_estimate(logps, ref_logps, self.args.kl_estimator)

    # ------------------------------------------------------------- checkpoints: the value model rides along

    def save_checkpoint_extras(self, folder: Path) -> None:
        """The value model (or shared head), its optimizer, the KL coefficient and the sample count."""
        separate = self.value_model is not None
        fingerprints = value_fingerprints(self.value_model, self.accelerator) if separate else None
        with gathered(self._value_head()):  # ZeRO-3 shards the shared head
            if self.is_world_process_zero():
                state = {"kl_coef": self.kl_controller.value, "samples_seen": self.samples_seen}
                if self.value_model is not None:
                    state["model"] = self.accelerator.unwrap_model(self.value_model).state_dict()
                    state["optimizer"] = self.value_optimizer.state_dict()
                    state["replica_fingerprints"] = fingerprints
                else:
                    state["head"] = {k: v.clone() for k, v in self._value_head().state_dict().items()}
                torch.save(state, folder / VALUE_STATE)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """TRL's ``save_model``; a shared value head is left out, so the folder is a plain causal LM."""
        policy = self.accelerator.unwrap_model(self.model)
        head = policy._modules.pop(VALUE_HEAD, None)
        try:
            super().save_model(output_dir, _internal_call)
        finally:
            if head is not None:
                policy.add_module(VALUE_HEAD, head)

    def train(self, resume_from_checkpoint=None, **kwargs):
        """TRL's ``train``; resuming also restores the value model, its optimizer and the KL coefficient."""
        folder = resume_from_checkpoint
        if folder is True:
            folder = resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir, type(self))
        if isinstance(folder, str) and (Path(folder) / VALUE_STATE).exists():
            state = torch.load(Path(folder) / VALUE_STATE, map_location="cpu", weights_only=True)
            if self.value_model is not None:
                try:
                    self.accelerator.unwrap_model(self.value_model).load_state_dict(state["model"])
                except RuntimeError:
                    raise PPOError(f"resume_from_checkpoint: {folder}'s value model has other parameters "
                                   "than this one; resume with the value_model_peft / peft_config it "
                                   "was saved with") from None
                self.value_optimizer.load_state_dict(state["optimizer"])
            else:
                self._value_head().load_state_dict(state["head"])
            self.kl_controller.value, self.samples_seen = state["kl_coef"], state["samples_seen"]
        try:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:
            restore_distributed_env(self._launch_env)

    # ------------------------------------------------------------------ loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's clipped policy loss on per-token advantages, plus the value loss: added to it when the
        head shares the policy's backbone, stepped by the value model's own optimizer otherwise."""
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if torch.is_grad_enabled() and self.model.training:
            if self.state.global_step < self.args.value_warmup_steps:
                loss = loss * 0.0  # value warm-up: the baseline is fitted before the policy moves
            if self.value_model is None:
                return loss + self.args.vf_coef * self._value_loss(inputs) * self.shared_value_loss_scale()
            self.value_optimizer.start(self.state.max_steps)
            self.value_optimizer.backward(self._value_loss(inputs), self.accumulation_steps())
            self.record_metric("ppo/value_learning_rate", self.value_optimizer.learning_rate)
            if self.value_optimizer.last_grad_norm is not None:
                self.record_metric("ppo/value_grad_norm", self.value_optimizer.last_grad_norm)
        return loss

    def accumulation_steps(self) -> int:
        """Micro-batches per optimizer step now (the Trainer's last accumulation may be shorter)."""
        return getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)

    def shared_value_loss_scale(self) -> float:
        """Weight of one micro-batch's value loss in the shared mode: GRPO returns a loss already
        divided for gradient accumulation (``loss_is_scaled_for_ga``) and the Trainer does not divide
        again, so the value loss is divided here once, keeping ``vf_coef`` independent of
        ``gradient_accumulation_steps``."""
        return 1.0 / self.accumulation_steps()

    def _value_loss(self, inputs) -> torch.Tensor:
        input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        mask = inputs["completion_mask"].float()
        values = self._values(input_ids, attention_mask, mask.shape[1])
        value_loss, clipfrac = clipped_value_loss(
            values, inputs["old_values"], inputs["returns"], mask, self.args.cliprange_value
        )
        self.record_metric("ppo/value_loss", value_loss.item())
        self.record_metric("ppo/value_clipfrac", clipfrac.item())
        return value_loss


@contextlib.contextmanager
def _eval_mode(module):
    """Run ``module`` in eval mode (dropout off), restoring its mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)

