"""Configuration of Return-Conditioned RL (Havrilla et al., 2024, section 3.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .expert_iteration_config import ExpertIterationConfig


@dataclass
class ReturnConditionedConfig(ExpertIterationConfig):
    r"""Configuration for [`ReturnConditionedTrainer`]. Extends `ExpertIterationConfig`: rounds, sampling,
    verification and the SFT fields of each round's fine-tuning keep their meaning.

    Parameters:
        good_token (`str`, defaults to `"[GOOD]"`), bad_token (`str`, defaults to `"[BAD]"`): Return
            tokens, added to the tokenizer as special tokens.
        tag_mode (`str`, defaults to `"sparse"`): `sparse`: one tag for the whole solution, from the
            verifier; `dense`: one tag before every step, from `step_reward_func` (the ORM/PRM step
            scores or the heuristic) compared with `step_threshold`.
        step_threshold (`float`, defaults to `0.5`): A step is good when its step reward reaches it.
        step_reward (`str` or `None`): Recipes only, dense tags: `orm`, `prm`, `heuristic` or a
            reward-model path; Python users pass `step_reward_func` instead.
        eval_unconditioned (`bool`, defaults to `True`): Also record greedy accuracy without the good
            tag after each round (`unconditioned/maj@1`), to show what conditioning adds.
    """

    good_token: str = field(default="[GOOD]", metadata={"help": "Return token of good solutions/steps."})
    bad_token: str = field(default="[BAD]", metadata={"help": "Return token of bad solutions/steps."})
    tag_mode: str = field(default="sparse", metadata={"help": "sparse (one tag per solution) or dense (one "
                                                              "per step)."})
    step_threshold: float = field(default=0.5, metadata={"help": "Dense tags: a step is good when its step "
                                                                 "reward reaches this."})
    step_reward: str | None = field(default=None, metadata={"help": "Recipes, dense tags: orm, prm, "
                                                                    "heuristic or a reward-model path."})
    eval_unconditioned: bool = field(default=True, metadata={"help": "Also record greedy accuracy without "
                                                                     "the good tag."})

    def __post_init__(self):
        super().__post_init__()
        if self.tag_mode not in ("sparse", "dense"):
            raise ValueError(f"tag_mode: expected sparse or dense, got {self.tag_mode!r}")
        if not self.good_token or self.good_token == self.bad_token:
            raise ValueError("good_token/bad_token: need two different non-empty tokens")
