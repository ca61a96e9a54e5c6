"""trl-reasoning: the algorithms of "Teaching Large Language Models to Reason with Reinforcement
Learning" (Havrilla et al., 2024) as plugins for Hugging Face TRL.

Public names are imported lazily (PEP 562) so ``trl_reasoning.verifiers`` and ``trl_reasoning.metrics``
work without importing torch or TRL.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "is_correct": "verifiers",
    "extract_answer": "verifiers",
    "correctness_reward": "rewards",
    "make_correctness_reward": "rewards",
    "CorrectnessReward": "rewards",
    "register_task": "tasks",
    "TaskSpec": "tasks",
    "pass_at_k": "metrics",
    "maj_at_k": "metrics",
    "rerank_at_k": "metrics",
    "load_task": "tasks",
    "add_prompts": "tasks",
    "ExpertIterationConfig": "trainers",
    "ExpertIterationTrainer": "trainers",
    "PPOConfig": "trainers",
    "PPOTrainer": "trainers",
    "ProcessGRPOConfig": "trainers",
    "ProcessGRPOTrainer": "trainers",
    "ReasoningEvalCallback": "eval_callback",
    "ReturnConditionedConfig": "trainers",
    "ReturnConditionedTrainer": "trainers",
    "RewardModelConfig": "trainers",
    "RewardModelTrainer": "trainers",
    "OutcomeRewardModel": "reward_models",
    "ProcessRewardModel": "reward_models",
    "HeuristicStepReward": "reward_models",
    "load_reward_model": "reward_models",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'trl_reasoning' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
