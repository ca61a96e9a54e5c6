"""The rollout reward against the start's pass rate on the same questions (``rollout_logs``): read from
TRL's completion logs of a real PPO run, and the arithmetic of the adjusted trend."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from trl_reasoning.rewards import CorrectnessReward
from trl_reasoning.rollout_logs import (
    Rollout,
    adjusted_reward_trend,
    drawn_questions,
    logged_rollouts,
    order_kept,
    read_rollouts,
    start_pass_rates,
    steps_per_rollout,
)
from trl_reasoning.tasks import add_prompts, load_task


class OddLengthReward(CorrectnessReward):
    """Logs the question ids as the correctness reward does, and pays 1 for a completion of odd length: a
    reward an untrained model gets about half the time, so that the means below are not all 0."""

    def __call__(self, completions, answer, **kwargs):
        super().__call__(completions, answer, **kwargs)
        return [float(len(c) % 2) for c in completions]


def test_a_ppo_runs_completion_logs_give_each_rollout_once_with_its_questions_reward_and_advantages(
        tiny_model_dir, tmp_path):
    """PPO (8 of 16 questions x 4 completions a rollout, each used for 2 optimizer steps) with TRL's
    ``log_completions``: one Rollout per rollout batch, at the step that drew it, its questions the ids of
    the dataset rows it sampled (4 completions each), its mean reward the reward the trainer logged; and
    the same rollouts rebuilt from the trainer's settings and its logged rewards alone. The logs' advantage
    column holds PPO's own advantages (each completion's mean over its tokens), not the GRPO group
    advantages TRL computed first and PPO replaced."""
    import pandas as pd

    from trl_reasoning.metrics import logged_values
    from trl_reasoning.trainers.ppo_config import PPOConfig
    from trl_reasoning.trainers.ppo_trainer import PPOTrainer

    rows = load_task("arithmetic", split="train", num_examples=16)
    data = add_prompts(rows).map(lambda row, i: {"id": f"q{i}"}, with_indices=True)
    args = PPOConfig(output_dir=str(tmp_path / "ppo"), per_device_train_batch_size=16, num_generations=4,
                     gradient_accumulation_steps=2, num_iterations=2, max_completion_length=8,
                     temperature=1.0, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                     logging_steps=1, max_steps=6, gradient_checkpointing=False, disable_tqdm=True, seed=0,
                     log_completions=True, num_completions_to_print=1)
    trained_on = []  # each rollout's advantages, per completion: the mean over its real tokens

    class Recording(PPOTrainer):
        def after_rollout(self, inputs, output, rewards_per_func):
            output = super().after_rollout(inputs, output, rewards_per_func)
            mask = output["completion_mask"].float()
            trained_on.append(((output["advantages"] * mask).sum(1) / mask.sum(1)).tolist())
            return output

    trainer = Recording(model=str(tiny_model_dir), reward_funcs=[OddLengthReward("arithmetic")], args=args,
                        train_dataset=data.select_columns(["id", "prompt", "answer", "solution"]))
    trainer.train()
    for step, advantages in zip((1, 3, 5), trained_on, strict=True):
        logs = pd.read_parquet(tmp_path / "ppo" / "completions" / f"completions_{step:05d}.parquet")
        assert logs["advantage"].tolist() == pytest.approx(advantages, abs=1e-5)
    rollouts = read_rollouts(tmp_path / "ppo")
    logged = logged_values(trainer.state.log_history)
    assert [r.step for r in rollouts] == [1, 3, 5] == [step for step, _ in logged]  # 2, 4, 6 reused them
    for rollout, (_, reward) in zip(rollouts, logged, strict=True):
        assert len(rollout.questions) == 32 and set(rollout.questions) <= set(data["id"])
        assert all(rollout.questions.count(q) == 4 for q in set(rollout.questions))
        assert sum(rollout.rewards) / 32 == pytest.approx(reward)
    assert 0 < sum(sum(r.rewards) for r in rollouts) < 96
    assert set(rollouts[0].questions) | set(rollouts[1].questions) == set(data["id"])
    # rebuilt from the sampler's settings (the third rollout opens the second epoch, shuffled anew)
    assert drawn_questions(data["id"], args, 3) == [r.questions for r in rollouts]
    rebuilt = logged_rollouts(logged, data["id"], args)
    assert [(r.step, r.questions, r.rewards[0]) for r in rebuilt] == [
        (r.step, r.questions, pytest.approx(sum(r.rewards) / 32)) for r in rollouts]


def test_a_logged_reward_is_paired_with_every_rollout_since_the_last_log():
    """TRL logs the mean of the rollouts drawn since its last log: with a rollout every 2 steps and logs at
    steps 3 and 8, the first covers the rollouts of steps 1 and 3, the second those of 5 and 7."""
    args = SimpleNamespace(generation_batch_size=4, num_generations=2, num_iterations=1,
                           steps_per_generation=2, gradient_accumulation_steps=1, shuffle_dataset=True,
                           seed=3)
    ids = [f"q{i}" for i in range(8)]
    drawn = drawn_questions(ids, args, 4)
    assert steps_per_rollout(args) == 2 and all(len(batch) == 4 for batch in drawn)
    rollouts = logged_rollouts([(3, 0.5), (8, 0.25)], ids, args)
    assert [r.questions for r in rollouts] == [drawn[0] + drawn[1], drawn[2] + drawn[3]]
    assert [r.rewards for r in rollouts] == [(0.5,) * 8, (0.25,) * 8]
    with pytest.raises(ValueError, match="not a multiple of gradient_accumulation_steps"):
        steps_per_rollout(SimpleNamespace(num_iterations=1, steps_per_generation=3,
                                          gradient_accumulation_steps=2))
    assert order_kept(4, 8, args) and not order_kept(3, 8, args) and not order_kept(4, 4, args)


def test_the_adjusted_trend_takes_the_questions_difficulty_out():
    """Batches alternate easy and hard questions, and the policy gains 0.05 a step on each: the raw reward
    zig-zags (its slope's interval spans 0) while the adjusted one rises by 0.05 a step exactly."""
    baseline = {"easy": 0.9, "hard": 0.1}
    rollouts = []
    for k in range(10):
        question = "easy" if k % 2 else "hard"
        gain = 0.01 * k
        rollouts.append(Rollout(step=k + 1, questions=(question,) * 4,
                                rewards=(baseline[question] + gain,) * 4))
    trend = adjusted_reward_trend(rollouts, baseline, per=100)
    assert trend["slope"]["mean"] == pytest.approx(1.0)
    assert trend["slope"]["ci95"] == pytest.approx([1.0, 1.0])
    assert trend["raw_slope"]["ci95"][0] < 0 < trend["raw_slope"]["ci95"][1]
    assert trend["mean_adjusted"]["mean"] == pytest.approx(0.045)
    assert trend["adjusted"] == pytest.approx([0.01 * k for k in range(10)])
    assert trend["baseline_exact"] and trend["first_to_last_draw"] is not None


def test_the_means_interval_carries_the_starts_own_error():
    """Three rollouts exactly at the start's rate (no spread): the interval is the baseline's alone, its
    binomial error from 4 samples (p smoothed to (2 + 1/2) / 5 = 0.5): +-1.96 x sqrt(0.25 / 4)."""
    rollouts = [Rollout(step=s, questions=("a",) * 4, rewards=(1.0, 0.0, 1.0, 0.0)) for s in (1, 2, 3)]
    exact = adjusted_reward_trend(rollouts, {"a": 0.5})
    assert exact["mean_adjusted"] == {"mean": 0.0, "ci95": [0.0, 0.0]}
    shared = adjusted_reward_trend(rollouts, {"a": 0.5}, {"a": 4})
    assert shared["mean_adjusted"]["ci95"] == pytest.approx([-0.49, 0.49]) and not shared["baseline_exact"]


def test_first_to_last_draw_pairs_each_repeated_question():
    """a: first draw 0/2, last 2/2 (+1); b: 2/2 then 1/2 (-0.5); c drawn once, left out: mean +0.25.
    Logged means (every completion given the batch mean) say nothing per question: None."""
    rollouts = [Rollout(1, ("a", "a", "b", "b"), (0.0, 0.0, 1.0, 1.0)),
                Rollout(2, ("c", "c", "a", "a"), (1.0, 1.0, 1.0, 0.0)),
                Rollout(3, ("b", "b", "a", "a"), (1.0, 0.0, 1.0, 1.0))]
    again = adjusted_reward_trend(rollouts, {"a": 0.5, "b": 0.5, "c": 0.5})["first_to_last_draw"]
    assert again["mean"] == pytest.approx(0.25) and again["questions"] == 2 and again["draws"] == 2.5
    means = [Rollout.of_mean(r.step, r.questions, sum(r.rewards) / 4) for r in rollouts]
    assert adjusted_reward_trend(means, {"a": 0.5, "b": 0.5, "c": 0.5})["first_to_last_draw"] is None
    fresh = [Rollout(s, (f"q{s}",), (1.0,)) for s in (1, 2, 3)]
    assert adjusted_reward_trend(fresh, {f"q{s}": 0.5 for s in (1, 2, 3)})["first_to_last_draw"] is None


def test_first_to_last_against_a_control_pairs_questions_at_equal_rollouts():
    """Run: a 0 -> 1 (+1), b 1 -> 1 (0). Control, cut to the run's 3 rollouts: a 0 -> 0 (0), b 1 -> 0 (-1);
    its 4th rollout (a: 1) is past the run's last and must not count (with it a would be +1 and the mean
    +0.5). Per question the run gains +1 more on both: +1.0, interval [+1, +1]. Questions only one run drew
    twice are left out; logged means give None."""
    from trl_reasoning.rollout_logs import first_to_last_against

    run = [Rollout(1, ("a", "b"), (0.0, 1.0)), Rollout(2, ("a", "c"), (1.0, 1.0)),
           Rollout(3, ("b", "c"), (1.0, 0.0))]
    control = [Rollout(1, ("a", "b"), (0.0, 1.0)), Rollout(2, ("a", "d"), (0.0, 1.0)),
               Rollout(3, ("b", "d"), (0.0, 1.0)), Rollout(4, ("a", "d"), (1.0, 1.0))]
    against = first_to_last_against(run, control)
    assert against == {"mean": pytest.approx(1.0), "ci95": [pytest.approx(1.0)] * 2, "questions": 2,
                       "rollouts": 3}
    means = [Rollout.of_mean(r.step, r.questions, 0.5) for r in run]
    assert first_to_last_against(means, control) is None
    assert first_to_last_against(run[:1], control) is None
    # the other way round the longer run is the one cut, and the order given does not matter: -1.0
    mirrored = first_to_last_against(control[::-1], run)
    assert mirrored["mean"] == pytest.approx(-1.0) and mirrored["rollouts"] == 3
    with pytest.raises(ValueError, match="equal rollouts would not be equal draws"):
        first_to_last_against(run, [Rollout(1, ("a", "b", "c"), (0.0, 1.0, 1.0)), *control[1:]])


def test_the_logged_advantages_are_replaced_by_the_trained_ones_and_older_rollouts_kept():
    """``_log_advantages`` swaps this rollout's entries at the end of TRL's log for each completion's mean
    token advantage (over its real tokens), leaves an older rollout's entries before them, and keeps the
    log's length limit (the newest entries win, as in TRL's other columns)."""
    from collections import deque

    import torch

    from trl_reasoning._compat import GRPORolloutHooks

    hooks = GRPORolloutHooks()
    hooks.accelerator = SimpleNamespace(gather=lambda tensor: tensor)
    hooks._logs = {"advantages": deque([9.0, 9.5, 0.1, -0.1, 0.2], maxlen=6)}  # 2 older, then 3 of GRPO's
    advantages = torch.tensor([[1.0, 3.0, 7.0], [2.0, 0.0, 0.0], [-1.0, -2.0, -3.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    hooks._log_advantages(advantages, mask)
    assert list(hooks._logs["advantages"]) == [9.0, 9.5, 2.0, 2.0, -2.0]
    hooks._logs = {"advantages": deque([0.1, -0.1], maxlen=2)}
    hooks._log_advantages(torch.tensor([0.5, -0.5, 1.5]), None)  # sequence advantages: as they are
    assert list(hooks._logs["advantages"]) == [-0.5, 1.5]


def test_missing_pass_rates_and_too_few_rollouts_are_refused():
    rollouts = [Rollout(step=s, questions=("a",), rewards=(1.0,)) for s in (1, 2, 3)]
    with pytest.raises(KeyError, match="no start pass rate for 1 question"):
        adjusted_reward_trend(rollouts, {"b": 0.5})
    with pytest.raises(ValueError, match="needs 3 rollouts"):
        adjusted_reward_trend(rollouts[:2], {"a": 0.5})
    assert adjusted_reward_trend(rollouts, {"a": 0.5})["slope"]["ci95"] is None  # 3 points: no interval


def test_start_pass_rates_pool_every_file(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(json.dumps({"id": i, "correct": c}) for i, c in
                               [("q1", True), ("q1", False), ("q2", False)]) + "\n")
    second.write_text(json.dumps({"id": "q1", "correct": True}) + "\n")
    assert start_pass_rates([first, second]) == {"q1": pytest.approx(2 / 3), "q2": 0.0}


def test_the_correctness_reward_logs_each_completions_question_id():
    logged = {}
    reward = CorrectnessReward("arithmetic")
    scores = reward(["#### 4", "#### 5"], ["4", "4"], id=[7, 8],
                    log_extra=lambda column, values: logged.setdefault(column, values))
    assert scores == [1.0, 0.0] and logged == {"id": ["7", "8"]}
    assert reward(["#### 4"], ["4"]) == [1.0]  # no id column, no log_extra: nothing to log
