"""Configuration of process-supervised GRPO (DeepSeekMath, section 4.1.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig


@dataclass
class ProcessGRPOConfig(GRPOConfig):
    r"""Configuration for [`ProcessGRPOTrainer`]. Extends TRL's `GRPOConfig`: generation, the clipped
    surrogate, `beta` (KL in the loss) and everything from `TrainingArguments` keep their TRL meaning.

    Parameters:
        step_delimiter (`str`, defaults to `"\n"`): What separates a completion's steps.
        dense_reward_weights (`list[float]` or `None`): Weights of the step-reward providers
            (`step_reward_funcs`); default 1 each.
        dense_reward_shaping (`str`, defaults to `"raw"`): How a reward model's step scores become step
            rewards: `raw` (each step's score, as DeepSeekMath's PRM) or `delta` (score changes).
        outcome_reward_weight (`float`, defaults to `1.0`): The weighted `reward_funcs` (e.g. final-answer
            correctness) are added, times this, to each completion's last step reward before the group
            normalisation; 0 trains on the step rewards alone, as DeepSeekMath does.
        dense_rewards (`list[str]`, defaults to `["heuristic"]`): Recipes only: the step-reward providers
            the pipeline builds (`heuristic`, `orm`, `prm` or a reward-model path).
    """

    step_delimiter: str = field(default="\n", metadata={"help": "What separates a completion's steps."})
    dense_reward_weights: list[float] | None = field(default=None, metadata={
        "help": "Weights of the step-reward providers (default: 1 each)."})
    dense_reward_shaping: str = field(default="raw", metadata={
        "help": "Reward-model step rewards: raw (each step's score) or delta (score change per step)."})
    outcome_reward_weight: float = field(default=1.0, metadata={
        "help": "Weight of the outcome reward (reward_funcs) added to the last step before normalising; 0: "
                "step rewards only."})
    dense_rewards: list[str] = field(default_factory=lambda: ["heuristic"], metadata={
        "help": "Recipes: step-reward providers to build: heuristic, orm, prm, or a reward-model path."})

    def __post_init__(self):
        if self.dense_reward_shaping not in ("raw", "delta"):
            raise ValueError(f"dense_reward_shaping: expected one of raw, delta, got "
                             f"{self.dense_reward_shaping!r}")
        if not self.step_delimiter:
            raise ValueError("step_delimiter: need a non-empty string")
        super().__post_init__()
