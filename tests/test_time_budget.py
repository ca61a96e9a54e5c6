"""The wall-clock budget (``time_budget_seconds``, ``WallClockBudget``): it stops a TRL trainer after the
step that spends it, a resumed trainer counts the time before its checkpoint, rounds start only while
the last round fits, and a recipe's budget reaches every RL stage. The clock is replaced by one that
each optimizer step moves 10 s: nothing here waits on real time."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert round_fits(budget, history) and budget.elapsed() == 0.0  # round 0 trains nothing: not counted
    history.append({"seconds": {"sampling": 30.0, "fine_tuning": 10.0}})
    clock["t"] += 40.0
    assert round_fits(budget, history)  # 40 s spent: a 40 s round fits in the 60 left
    history.append({"seconds": {"sampling": 30.0, "fine_tuning": 10.0}})
    clock["t"] += 40.0
    assert not round_fits(budget, history) and budget.stopped  # 80 s spent: 40 s does not fit in 20
    resumed = WallClockBudget(100)
    assert not round_fits(resumed, history) and resumed.elapsed() == 80.0  # rounds 1 and 2 count
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
training_eval: {{eval_steps: 1, limit: 2, num_generations: 1, max_new_tokens: 4, backend: hf}}
tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2}}
grpo: {{num_generations: 2, max_completion_length: 8, per_device_train_batch_size: 2, max_steps: 8,
       gradient_checkpointing: false, logging_steps: 100}}
ei: {{num_rounds: 3, num_generations: 2, max_new_tokens: 8, num_train_epochs: 1,
     per_device_train_batch_size: 2, gradient_checkpointing: false, max_length: 128,
     eval_num_generations: 1, eval_temperature: 0.0, include_reference_solutions: true,
     stop_when_no_new_solutions: false}}
"""


def _run(tmp_path, recipe: str) -> Path:
    from trl_reasoning.pipeline import run_recipe
    from trl_reasoning.recipes import load_recipe

    out, path = tmp_path / "run", tmp_path / "recipe.yaml"
    path.write_text(recipe.format(out=out))
    run_recipe(load_recipe(path))
    return out


def test_a_recipes_time_budget_reaches_the_on_policy_and_the_rounds_stages(tmp_path, clock, monkeypatch):
    """GRPO stops at step 3 of 8; EI's first round fine-tunes on the 16 reference solutions (8 steps),
    stopped at step 3, and no round follows it. The rounds' own recorded seconds are 0 here."""
    from types import SimpleNamespace

    from trl_reasoning.trainers import rounds

    monkeypatch.setattr(rounds, "time", SimpleNamespace(perf_counter=lambda: 0.0))
    out = _run(tmp_path, RECIPE)
    done = json.loads((out / "grpo" / "stage_complete.json").read_text())
    assert done["steps"] == 3 and done["stopped_by_time_budget"] and done["time_budget_seconds"] == 25
    log = json.loads((out / "grpo" / "trainer_state.json").read_text())  # past the last checkpoint too
    assert log["global_step"] == 3 and not list((out / "grpo").glob("checkpoint-*"))
    points = json.loads((out / "grpo" / "reasoning_eval" / "metrics.json").read_text())["evaluations"]
    assert [p["seconds"] for p in points] == [0.0, 10.0, 20.0]  # the budget's clock (it ticks after them)
    rounds_run = json.loads((out / "ei" / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in rounds_run] == [0, 1]
    assert json.loads((out / "ei" / "stage_complete.json").read_text())["stopped_by_time_budget"]


GRPO_ONLY = """
model: tiny
task: arithmetic
output_dir: {{out}}
stages: [grpo]
num_train_examples: 16
num_eval_examples: 4
{budget}
tiny: {{{{hidden_size: 32, num_layers: 1, num_heads: 2}}}}
grpo: {{{{num_generations: 2, max_completion_length: 8, per_device_train_batch_size: 2, max_steps: {steps},
       save_steps: 2, gradient_checkpointing: false, logging_steps: 100}}}}
"""


def test_a_resumed_stage_counts_the_time_before_its_checkpoint_and_takes_a_budget_it_lacked(tmp_path,
                                                                                          clock):
    """A GRPO stage checkpointed without a budget resumes with one (transformers' save looked the budget's
    entry up and failed); resumed again, it counts the 20 s spent before its checkpoint at step 4."""
    out = tmp_path / "run"

    def run(budget: str, steps: int) -> dict:
        (out / "grpo" / "stage_complete.json").unlink(missing_ok=True)  # rerun the stage, resumed
        _run(tmp_path, GRPO_ONLY.format(budget=budget, steps=steps))
        return json.loads((out / "grpo" / "stage_complete.json").read_text())

    assert run("", 2)["steps"] == 2  # checkpoint-2, no budget in it
    resumed = run("time_budget_seconds: 45", 4)  # checkpoint-4 holds 20 s spent
    assert resumed["steps"] == 4 and resumed["resumed_from"] == "checkpoint-2"
    again = run("time_budget_seconds: 45", 20)
    assert again["steps"] == 7 and again["stopped_by_time_budget"]  # 20 s + 3 steps; 4 + 5 = 9 if not


@pytest.mark.parametrize("bad", [0, -5, "an hour", True])
def test_a_bad_time_budget_in_a_recipe_fails_naming_the_key(tmp_path, bad):
    from trl_reasoning.recipes import load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(f"model: tiny\ntask: arithmetic\nstages: [ei]\ntime_budget_seconds: {json.dumps(bad)}\n")
    with pytest.raises(RecipeError, match="'time_budget_seconds' must be"):
        load_recipe(path)


def _vote(rank: int, folder: str) -> None:
    import torch.distributed as dist

    from trl_reasoning.time_budget import any_process

    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    votes = [any_process(rank == 0), any_process(False)]  # only rank 0's clock ran out, then no one's
    dist.destroy_process_group()
    Path(folder, f"rank{rank}.json").write_text(json.dumps(votes))


def test_every_process_stops_when_any_process_spent_the_budget(tmp_path):
    """Two gloo processes: where only rank 0 is over budget both stop (one rank stopping alone would hang
    DDP/ZeRO at its next collective)."""
    import torch.multiprocessing as mp

    mp.start_processes(_vote, args=(str(tmp_path),), nprocs=2, join=True, start_method="fork")
    assert [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)] == [[True, False]] * 2
