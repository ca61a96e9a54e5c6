"""Trainers with TRL's constructor shape: Expert Iteration, PPO, process-supervised GRPO, return-conditioned
RL, reward models."""

from .expert_iteration_config import ExpertIterationConfig
from .expert_iteration_trainer import ExpertIterationTrainer
from .ppo_config import PPOConfig
from .ppo_trainer import PPOTrainer
from .process_grpo_config import ProcessGRPOConfig
from .process_grpo_trainer import ProcessGRPOTrainer
from .return_conditioned_config import ReturnConditionedConfig
from .return_conditioned_trainer import ReturnConditionedTrainer
from .reward_model_config import RewardModelConfig, RewardModelStageConfig
from .reward_model_trainer import RewardModelTrainer

__all__ = [
    "ExpertIterationConfig",
    "ExpertIterationTrainer",
    "PPOConfig",
    "PPOTrainer",
    "ProcessGRPOConfig",
    "ProcessGRPOTrainer",
    "ReturnConditionedConfig",
    "ReturnConditionedTrainer",
    "RewardModelConfig",
    "RewardModelStageConfig",
    "RewardModelTrainer",
]
