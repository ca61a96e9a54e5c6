"""Trainers with TRL's constructor shape: Expert Iteration, and the SFT stage helpers."""

from .expert_iteration_config import ExpertIterationConfig
from .expert_iteration_trainer import ExpertIterationTrainer

__all__ = ["ExpertIterationConfig", "ExpertIterationTrainer"]
