"""Process-supervised GRPO: it learns from step rewards, credits them per step, and checks its set-up."""

from __future__ import annotations

import pytest

from trl_reasoning.tasks import add_prompts, load_task
from trl_reasoning.trainers.process_grpo_config import ProcessGRPOConfig
from trl_reasoning.trainers.process_grpo_trainer import ProcessGRPOTrainer


class ApplesSteps:
    """A step reward an untrained tiny model can learn: 1 for each step (line) that mentions apples."""

    def step_rewards(self, prompts, completions, **kwargs):
        return [[float("apples" in line) for line in c.split("\n") if line.strip()] for c in completions]


def no_outcome(completions, **kwargs):
    return [0.0] * len(completions)


def _args(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path / "pgrpo"), learning_rate=5e-3, per_device_train_batch_size=32,
                  num_generations=4, max_completion_length=8, temperature=1.0, use_cpu=True, bf16=False,
                  report_to="none", save_strategy="no", logging_steps=1, num_train_epochs=3,
                  gradient_checkpointing=False, disable_tqdm=True, seed=0, outcome_reward_weight=0.0)
    return ProcessGRPOConfig(**{**values, **overrides})


def _train(n: int):
    return add_prompts(load_task("arithmetic", split="train", num_examples=n)).select_columns(
        ["prompt", "answer", "solution"])


def test_process_supervised_grpo_learns_from_step_rewards(tiny_model_dir, tmp_path):
    trainer = ProcessGRPOTrainer(model=str(tiny_model_dir), reward_funcs=[no_outcome], args=_args(tmp_path),
                                 train_dataset=_train(160), step_reward_funcs=[ApplesSteps()])
    trainer.train()
    name = "process/dense/ApplesSteps"
    logs = [r[name] for r in trainer.state.log_history if name in r]
    assert sum(logs[-3:]) / 3 > logs[0] + 0.2, [round(x, 3) for x in logs]
    assert trainer.samples_seen == 160 * 4 * 3


def test_process_supervision_needs_a_step_reward(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="step_reward_funcs: process supervision needs"):
        ProcessGRPOTrainer(model=str(tiny_model_dir), reward_funcs=[no_outcome], args=_args(tmp_path),
                           train_dataset=_train(8))
    with pytest.raises(ValueError, match="dense_reward_shaping: expected one of raw, delta"):
        _args(tmp_path, dense_reward_shaping="sum")
