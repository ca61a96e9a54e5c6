"""Configuration of PPO with sparse and dense rewards (Havrilla et al., 2024, section 3.2)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig


@dataclass
class PPOConfig(GRPOConfig):
    r"""Configuration for [`PPOTrainer`]. Extends TRL's `GRPOConfig`, so generation (`num_generations`,
    `max_completion_length`, `temperature`, `use_vllm`, ...), the clipped surrogate (`epsilon`) and
    everything from `TrainingArguments` keep their TRL meaning.

    Parameters:
        > PPO epochs

        num_iterations (`int`, defaults to `4`): PPO epochs per rollout batch (TRL's name; GRPO's default is
            1). With 1 the old log-probabilities are the current ones, the ratio is 1 and the clipped
            surrogate never binds (an advantage actor-critic); trlx used 4.

        > Value model

        value_model_mode (`str`, defaults to `"separate"`): `separate`: a value model of its own (a copy of
            the policy's backbone with a scalar token head, or `value_model` passed to the trainer);
            `shared`: a scalar head on the policy's backbone, trained with the policy's optimizer.
        value_model_peft (`bool`, defaults to `True`): With a `peft_config`, train the separate value
            model as adapters of the same config on its backbone plus its full scalar head, instead of
            all its weights (a full copy with its own AdamW state holds ~4x the model's size).
        value_head_init (`str`, defaults to `"random"`): How a new value head starts (the separate
            model's, built from the policy; a `value_model` passed to the trainer keeps its own head):
            `random`, transformers' initialisation (on SmolLM2, values of std ~0.7 along a solution);
            `zero`, every value 0. Measured: `zero` learned less on the toy
            task's held-out questions (docs/algorithms/ppo.md). The value model's dropout follows TRL's
            `disable_dropout`.
        value_learning_rate (`float`, defaults to `1e-4`): Learning rate of the value model's optimizer,
            under a schedule of the policy's kind (`lr_scheduler_type`, warm-up); the value model steps once
            per policy optimizer step (gradients accumulated like the policy's).
        value_max_grad_norm (`float`, defaults to `1.0`): Gradient-norm clip of the separate value model
            (0: none).
        value_warmup_steps (`int`, defaults to `0`): Optimizer steps at the start in which only the value
            model learns (the policy loss is zeroed), so the baseline fits before the policy moves (the
            critic warm-up of verl and OpenRLHF). These rollouts count in the sample budget, and the
            policy's learning-rate schedule runs through them (a policy warm-up shorter than this one is
            spent before the policy learns).
        vf_coef (`float` or `None`): Weight of the value loss against the policy loss, when the two share an
            optimizer (`value_model_mode="shared"`; default 0.5 there). In `separate` mode the value model
            has an optimizer of its own, where a weight would only rescale AdamW's input: set
            `value_learning_rate` instead (setting `vf_coef` there is an error).
        cliprange_value (`float`, defaults to `0.2`): Clip range of value predictions around the old ones.

        > Advantages

        gamma (`float`, defaults to `1.0`): Discount. lam (`float`, defaults to `0.95`): GAE lambda.
        whiten_rewards (`bool`, defaults to `False`): Normalise per-token rewards before GAE.
        whiten_advantages (`bool`, defaults to `True`): Normalise advantages over the batch.

        > KL control

        kl_coef (`float`, defaults to `0.05`): Coefficient of the KL to the reference (initial) policy.
        kl_penalty (`str`, defaults to `"reward"`): `reward`: subtract `kl_coef * KL` from every token's
            reward (classic RLHF PPO); `loss`: add it to the loss (TRL's `beta`).
        kl_estimator (`str`, defaults to `"k1"`): Per-token KL estimate in the reward: `k1` or `k3`.
        target_kl (`float` or `None`): With `kl_penalty="reward"`, adapt `kl_coef` towards this KL per
            completion (Ziegler et al., 2019). `None` keeps it fixed.
        kl_horizon (`int`, defaults to `10000`): Horizon of the adaptive controller, in completions.

        > Rewards

        reward_weights (from `GRPOConfig`): weights of the sparse `reward_funcs`, placed on the last token.
        dense_reward_weights (`list[float]` or `None`): Weights of the dense per-step reward providers
            (`dense_reward_funcs`), each step's reward placed on its last token. Default: all 1.
        dense_reward_shaping (`str`, defaults to `"delta"`): How a reward model's step scores become rewards:
            `delta`: step i earns `score_i - score_(i-1)` (potential-based shaping, the score before the first
            step being the model's score at the prompt's end), so the return is the last score minus that
            baseline whatever the number of steps; `raw`: every step earns its score (the return grows with
            the number of steps). The heuristic reward is credit-once by construction and ignores this.
        step_delimiter (`str`, defaults to `"\n"`): What separates steps for dense rewards.
        dense_rewards (`list[str]`, defaults to `[]`): Recipes only: the dense providers the pipeline
            builds: `orm` / `prm` (the run's reward models, or the recipe's `reward_model`), `heuristic`,
            or a reward-model folder / Hub id. Python users pass `dense_reward_funcs` instead.
    """

    num_iterations: int = field(default=4, metadata={"help": "PPO epochs per rollout batch (GRPO's default "
                                                             "is 1, "
                                "which never clips)."})
    value_model_mode: str = field(default="separate", metadata={"help": "separate (a value model of its "
                                                                        "own) or shared (a head on the "
                                                                        "policy's backbone)."})
    value_model_peft: bool = field(default=True, metadata={"help": "With a peft_config, train the separate "
                                                                   "value model as adapters of the same "
                                                                   "config plus its scalar head, not all "
                                                                   "its weights."})
    value_head_init: str = field(default="random", metadata={"help": "A new value head's start: random "
                                                                  "(transformers' initialisation) or zero "
                                                                  "(every value 0)."})
    value_learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of the value model."})
    value_max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip of the separate "
                                                                      "value model (0: none)."})
    value_warmup_steps: int = field(default=0, metadata={"help": "First optimizer steps in which only the "
                                                                 "value model learns (policy loss zeroed)."})
    vf_coef: float | None = field(default=None, metadata={"help": "Value-loss weight when value and policy "
                                                                  "share an optimizer (shared mode; default "
                                                                  "0.5); separate mode: use "
                                                                  "value_learning_rate."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Clip range of value predictions around "
                                                                  "the old ones."})
    gamma: float = field(default=1.0, metadata={"help": "Discount factor."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    whiten_rewards: bool = field(default=False, metadata={"help": "Normalise per-token rewards before GAE."})
    whiten_advantages: bool = field(default=True, metadata={"help": "Normalise advantages over the batch."})
    kl_coef: float = field(default=0.05, metadata={"help": "Coefficient of the KL to the reference policy."})
    kl_penalty: str = field(default="reward", metadata={"help": "Where the KL goes: 'reward' (per token) or "
                                                                "'loss' (TRL's beta)."})
    kl_estimator: str = field(default="k1", metadata={"help": "Per-token KL estimate in the reward: k1 or "
                                                              "k3."})
    target_kl: float | None = field(default=None, metadata={"help": "Adaptive KL: target KL per completion "
                                                                    "(kl_penalty='reward' only)."})
    kl_horizon: int = field(default=10000, metadata={"help": "Adaptive KL controller horizon, in "
                                                             "completions."})
    dense_reward_weights: list[float] | None = field(default=None, metadata={"help": "Weights of the dense "
                                                                                     "step-reward providers "
                                                                                     "(default: 1 each)."})
    dense_reward_shaping: str = field(default="delta", metadata={"help": "Reward-model step rewards: delta "
                                      "(score change per step; length-neutral) or raw (each step's score)."})
    step_delimiter: str = field(default="\n", metadata={"help": "What separates steps for dense rewards."})
    dense_rewards: list[str] = field(default_factory=list, metadata={"help": "Recipes: dense reward "
                                                                             "providers to build: orm, prm, "
                                                                             "heuristic, or a reward-model "
                                                                             "path."})

    def __post_init__(self):
        checks = {
            "value_model_mode": (self.value_model_mode, ("separate", "shared")),
            "value_head_init": (self.value_head_init, ("random", "zero")),
            "kl_penalty": (self.kl_penalty, ("reward", "loss")),
            "kl_estimator": (self.kl_estimator, ("k1", "k3")),
            "dense_reward_shaping": (self.dense_reward_shaping, ("delta", "raw")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        if self.value_model_mode == "separate" and self.vf_coef is not None:
            raise ValueError("vf_coef: weighs the value loss only when value and policy share an optimizer "
                             "(value_model_mode='shared'); the separate value model has its own: set "
                             "value_learning_rate instead")
        if self.vf_coef is None and self.value_model_mode == "shared":
            self.vf_coef = 0.5
        if self.value_warmup_steps < 0:
            raise ValueError(f"value_warmup_steps: need >= 0, got {self.value_warmup_steps}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef: need >= 0, got {self.kl_coef}")
        if self.target_kl is not None and (self.kl_penalty != "reward" or self.target_kl <= 0):
            raise ValueError("target_kl: adaptive KL needs kl_penalty='reward' and target_kl > 0")
        if not 0 <= self.lam <= 1 or not 0 < self.gamma <= 1:
            raise ValueError("gamma/lam: need 0 < gamma <= 1 and 0 <= lam <= 1")
        self.beta = (
            self.kl_coef
        )  # GRPO builds the reference model when beta != 0; the trainer decides where KL goes
        super().__post_init__()
