"""The wall-clock budget (``time_budget_seconds``, ``WallClockBudget``): it stops a TRL trainer after the
step that spends it, a resumed trainer counts the time before its checkpoint, rounds start only while
the last round fits, and a recipe's budget reaches every RL stage. The clock is replaced by one that
each optimizer step moves 10 s: nothing here waits on real time."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset

from trl_reasoning import time_budget
from trl_reasoning.errors import RecipeError
from trl_reasoning.time_budget import WallClockBudget, round_fits

STEP_SECONDS = 10.0


@pytest.fixture
def clock(monkeypatch):
    """A clock that only optimizer steps move, by ``STEP_SECONDS`` each (before the budget looks)."""
    now = {"t": 1000.0}
    monkeypatch.setattr(time_budget, "_now", lambda: now["t"])
    look = WallClockBudget.on_step_end

    def ticking(self, args, state, control, **kwargs):
        now["t"] += STEP_SECONDS
        return look(self, args, state, control, **kwargs)

    monkeypatch.setattr(WallClockBudget, "on_step_end", ticking)
    return now


def _sft_trainer(model_dir, out, budget, max_steps, **args):
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_dict({"prompt": ["1 + 1 ="] * 64, "completion": [" 2"] * 64})
    values = dict(output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=2, learning_rate=1e-4,
                  use_cpu=True, report_to="none", disable_tqdm=True, logging_steps=100, save_strategy="no",
                  gradient_checkpointing=False)
    config = SFTConfig(**{**values, **args})
    return SFTTrainer(model=str(model_dir), args=config, train_dataset=data, callbacks=[budget])


def test_a_budget_stops_a_trl_trainer_after_the_step_that_spends_it(tiny_model_dir, tmp_path, clock):
    budget = WallClockBudget(25)
    trainer = _sft_trainer(tiny_model_dir, tmp_path / "sft", budget, max_steps=20)
    trainer.train()
    assert trainer.state.global_step == 3 and budget.stopped  # 30 s spent after step 3 of 20


def test_a_resumed_trainer_counts_the_time_spent_before_its_checkpoint(tiny_model_dir, tmp_path, clock):
    out = tmp_path / "sft"
    first = _sft_trainer(tiny_model_dir, out, WallClockBudget(45), max_steps=2, save_strategy="steps",
                         save_steps=2)
    first.train()  # "killed" after its checkpoint at step 2: 20 s spent
    resumed = _sft_trainer(tiny_model_dir, out, WallClockBudget(45), max_steps=20,
                           restore_callback_states_from_checkpoint=True)
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    assert resumed.state.global_step == 5  # 20 s before + 3 steps of 10 s: a fresh budget would reach 7


def test_rounds_start_only_while_the_last_round_fits(clock):
    budget = WallClockBudget(100)
    history = [{"seconds": {"evaluation": 5.0}}]
    assert round_fits(budget, history) and budget.elapsed() == 5.0  # round 0's time counts
    history.append({"seconds": {"sampling": 30.0, "fine_tuning": 10.0}})
    clock["t"] += 40.0
    assert round_fits(budget, history)  # 45 s spent: a 40 s round fits in the 55 left
    history.append({"seconds": {"sampling": 30.0, "fine_tuning": 10.0}})
    clock["t"] += 40.0
    assert not round_fits(budget, history) and budget.stopped  # 85 s spent: 40 s does not fit in 15
    resumed = WallClockBudget(100)
    assert not round_fits(resumed, history) and resumed.elapsed() == 85.0  # the recorded rounds count
    assert round_fits(None, history)


def test_a_budget_must_be_positive():
    for bad in (0, -1.0, None):
        with pytest.raises(ValueError, match="seconds"):
            WallClockBudget(bad)


RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [grpo, ei]
num_train_examples: 16
num_eval_examples: 4
time_budget_seconds: 25
tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2}}
grpo: {{num_generations: 2, max_completion_length: 8, per_device_train_batch_size: 2, max_steps: 8,
       gradient_checkpointing: false, logging_steps: 100}}
ei: {{num_rounds: 3, num_generations: 2, max_new_tokens: 8, num_train_epochs: 1,
     per_device_train_batch_size: 2, gradient_checkpointing: false, max_length: 128,
     eval_num_generations: 1, eval_temperature: 0.0, include_reference_solutions: true,
     stop_when_no_new_solutions: false}}
"""


def test_a_recipes_time_budget_reaches_every_rl_stage(tmp_path, clock):
    """GRPO stops at step 3 of 8; EI's first round fine-tunes on the 16 reference solutions (8 steps),
    stopped at step 3, and no round follows it."""
    from trl_reasoning.pipeline import run_recipe
    from trl_reasoning.recipes import load_recipe

    out, path = tmp_path / "run", tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(out=out))
    run_recipe(load_recipe(path))
    assert json.loads((out / "grpo" / "stage_complete.json").read_text())["steps"] == 3
    log = json.loads((out / "grpo" / "trainer_state.json").read_text())  # past the last checkpoint too
    assert log["global_step"] == 3 and not list((out / "grpo").glob("checkpoint-*"))
    rounds = json.loads((out / "ei" / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]


@pytest.mark.parametrize("bad", [0, -5, "an hour", True])
def test_a_bad_time_budget_in_a_recipe_fails_naming_the_key(tmp_path, bad):
    from trl_reasoning.recipes import load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(f"model: tiny\ntask: arithmetic\nstages: [ei]\ntime_budget_seconds: {json.dumps(bad)}\n")
    with pytest.raises(RecipeError, match="'time_budget_seconds' must be"):
        load_recipe(path)
