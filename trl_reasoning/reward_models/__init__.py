"""Reward models: outcome-based (ORM), process-based (PRM), and the heuristic dense step reward.

Each can be a TRL ``reward_funcs`` callable (sparse: one score per completion), a dense per-step
reward provider (``step_rewards``) and, for the learned ones, a reranker (``rerank_scorer``).
"""

from .base import RewardModelError, RewardScore, TokenRewardModel, load_reward_model, reward_model_class
from .heuristic import HeuristicStepReward, heuristic_step_rewards, heuristic_step_scores
from .outcome import OutcomeRewardModel
from .process import ProcessRewardModel, monte_carlo_step_labels

__all__ = [
    "HeuristicStepReward",
    "OutcomeRewardModel",
    "ProcessRewardModel",
    "RewardModelError",
    "RewardScore",
    "TokenRewardModel",
    "heuristic_step_rewards",
    "heuristic_step_scores",
    "load_reward_model",
    "monte_carlo_step_labels",
    "reward_model_class",
]
