"""A recipe's stages: one registry (``base``), one skeleton (``run_stage``) and the built-in stages.

``sft`` (10) -> ``orm`` (20) / ``prm`` (21) -> ``ei`` (30) / ``ppo`` (31) / ``rcrl`` (32) -> ``eval`` (90).
A new stage is a ``Stage`` passed to ``register_stage`` (``rl.rounds_stage`` builds one for a
``RoundsTrainer`` subclass); recipes then accept its name and its section.
"""

from . import evaluation, reward_model, rl, sft
from .base import (
    RunContext,
    Stage,
    cached_rows,
    first,
    get_stage,
    mark_done,
    peft_config,
    register_stage,
    run_stage,
    stage_config,
    stage_names,
)
from .evaluation import comparison_table, evaluate_models, gains_table, paired_gains, write_results
from .rl import rcrl_conditioning, resolve_use_vllm, rl_dataset, rounds_stage, step_reward_provider

__all__ = [
    "RunContext", "Stage", "cached_rows", "comparison_table", "evaluate_models", "evaluation", "first",
    "gains_table", "get_stage", "mark_done", "paired_gains", "peft_config", "rcrl_conditioning",
    "register_stage", "resolve_use_vllm", "reward_model", "rl", "rl_dataset", "rounds_stage", "run_stage",
    "sft", "stage_config", "stage_names", "step_reward_provider", "write_results",
]
