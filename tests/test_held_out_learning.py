"""Each trainer beats its start on held-out questions of the arithmetic task, with the task's own verifier
as the reward (no stand-in reward, no training prompts in the evaluation).

Process-supervised GRPO adds the heuristic step reward (steps checked against the reference's numbers)
to the verifier's. The start (``conftest.arithmetic_start``) is a tiny model fine-tuned on references
whose answer line is one too high 70% of the time (``#### 7`` after ``3 + 3 = 6``): it writes its steps
right and then copies the result into the answer line one too high about three times in four, and
``noisy_start`` checks that habit before any test runs. That is a habit a reward can fix in a few steps and
that carries over to questions never seen, so a trainer that learns from the verifier raises held-out
accuracy (pass@1 from 8 samples per question, paired over the same questions, 95% bootstrap interval
above 0; greedy maj@1 is printed beside it) and one that does not, does not.
Held-out means no test question shares its reference solution (numbers and steps) with a train question.

Return-conditioned RL trains on every sample as drawn (``deduplicate=False``) for 10 epochs a round, and its
test reads greedy maj@1 conditioned on [GOOD], what RCRL's own evaluation reports.

Measured on a 2-core AVX-512 Xeon, seed 0, from greedy maj@1 0.200 / pass@1 0.206 (``pytest -m "slow or
not slow" -s tests/test_held_out_learning.py``): EI pass@1 +0.590 [+0.467, +0.685]; process GRPO +0.567
[+0.438, +0.685]; RCRL conditioned maj@1 +0.483 [+0.333, +0.617] (unconditioned 0.233); EI's verifier
over keeping everything +0.406 [+0.315, +0.483]; PPO in its test's comment. The earlier start (400
steps, half off by one) had half of its held-out samples on this Xeon wrong or misread in a step, and it
differed by CPU (greedy 0.183 here, 0.233 on an AVX2 EPYC): EI's test passed on the EPYC and gained
nothing here (seeds 0-3), which is why the start is now trained to its habit and checked (the old
start's samples were right or one too high 0.45 of the time, this one's 0.96).
"""

from __future__ import annotations

import pytest
from conftest import EASY_ARITHMETIC

from trl_reasoning.tasks import add_prompts, load_task

NUM_TRAIN, NUM_TEST, K = 250, 60, 8


@pytest.fixture(scope="module")
def noisy_start(arithmetic_start):
    """(start folder, train questions, held-out questions, the start's held-out greedy correctness)."""
    from trl_reasoning.loading import load_model, load_tokenizer

    train = load_task("arithmetic", split="train", num_examples=NUM_TRAIN, arithmetic_config=EASY_ARITHMETIC)
    test = load_task("arithmetic", split="test", num_examples=NUM_TEST, arithmetic_config=EASY_ARITHMETIC)
    assert not {r["solution"] for r in train} & {r["solution"] for r in test}  # held out by content
    train, test = add_prompts(train), add_prompts(test)
    before = held_out_correct(load_model(str(arithmetic_start)), load_tokenizer(str(arithmetic_start)), test)
    assert all(sum(before[k]) / NUM_TEST < 0.4 for k in ("maj@1", "pass@1")), before  # room to learn
    # the habit the tests are about: a wrong answer is mostly the right one plus one
    habit = (sum(before["pass@1"]) + sum(before["off by one"])) / NUM_TEST
    assert habit > 0.8, f"the start's samples are right or one too high {habit:.2f} of the time, not mostly"
    return arithmetic_start, train, test, before


def held_out_correct(model, tokenizer, test) -> dict[str, list[float]]:
    """Per held-out question, in the dataset's order: greedy correctness (1/0, maj@1), the share of K=8
    samples at T=0.7 that are right (pass@1, a finer measure of the same skill on 60 questions) and the
    share whose answer is one too high (``off by one``, the start's habit)."""
    from trl_reasoning.evaluation import EvalSettings, evaluate

    settings = EvalSettings(num_generations=K, temperature=0.7, max_new_tokens=32, batch_size=NUM_TEST * K,
                            seed=0)
    report = evaluate(model.eval(), tokenizer, test, "arithmetic", settings)
    greedy = {r["id"]: float(r["correct"]) for r in report["records"] if r["kind"] == "greedy"}
    sampled: dict[str, float] = {}
    high: dict[str, float] = {}
    for r in report["records"]:
        if r["kind"] != "greedy":
            sampled[r["id"]] = sampled.get(r["id"], 0.0) + float(r["correct"]) / K
            one_high = r["extracted_answer"] == str(int(r["reference"]) + 1)
            high[r["id"]] = high.get(r["id"], 0.0) + float(one_high) / K
    return {"maj@1": [greedy[row["id"]] for row in test], "pass@1": [sampled[row["id"]] for row in test],
            "off by one": [high[row["id"]] for row in test]}


def assert_gain(after: dict, before: dict, metric: str = "pass@1") -> None:
    """The held-out ``metric`` gain's paired 95% interval lies above 0 (the other is reported beside it)."""
    from trl_reasoning.metrics import paired_difference

    gains = {k: paired_difference(after[k], before[k]) for k in ("maj@1", "pass@1")}
    report = "; ".join(f"held-out {k} {sum(before[k]) / NUM_TEST:.3f} -> {sum(after[k]) / NUM_TEST:.3f}, "
                       f"gain {g.mean:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}]" for k, g in gains.items())
    print(report)  # shown with pytest -s: the figures the closing notes quote
    assert gains[metric].ci_low > 0, report


def _rounds_args(config_cls, tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path / "run"), num_rounds=2, num_generations=4, temperature=1.0,
                  max_new_tokens=32, generation_batch_size=256, learning_rate=1e-3, num_train_epochs=2,
                  per_device_train_batch_size=32, lr_scheduler_type="constant", use_cpu=True, bf16=False,
                  report_to="none", gradient_checkpointing=False, stop_when_no_new_solutions=False,
                  logging_steps=100, max_length=128, sampling_backend="hf", eval_num_generations=1)
    return config_cls(**{**values, **overrides})


def _grpo_args(config_cls, tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path / "run"), per_device_train_batch_size=32, num_generations=4,
                  max_completion_length=32, temperature=1.0, use_cpu=True, bf16=False, report_to="none",
                  save_strategy="no", logging_steps=5, gradient_checkpointing=False, disable_tqdm=True,
                  seed=0)
    return config_cls(**{**values, **overrides})


def test_expert_iteration_beats_its_start_on_held_out_questions(noisy_start, tmp_path):
    from trl_reasoning.trainers import ExpertIterationConfig, ExpertIterationTrainer

    folder, train, test, before = noisy_start
    trainer = ExpertIterationTrainer(model=str(folder), args=_rounds_args(ExpertIterationConfig, tmp_path),
                                     train_dataset=train)
    trainer.train()
    assert_gain(held_out_correct(trainer.model, trainer.processing_class, test), before)


def test_process_supervised_grpo_beats_its_start_on_held_out_questions(noisy_start, tmp_path):
    from trl_reasoning.reward_models import HeuristicStepReward
    from trl_reasoning.rewards import CorrectnessReward
    from trl_reasoning.trainers import ProcessGRPOConfig, ProcessGRPOTrainer

    folder, train, test, before = noisy_start
    args = _grpo_args(ProcessGRPOConfig, tmp_path, learning_rate=1e-3, num_train_epochs=2,
                      outcome_reward_weight=1.0)
    trainer = ProcessGRPOTrainer(model=str(folder), reward_funcs=[CorrectnessReward("arithmetic")], args=args,
                                 train_dataset=train.select_columns(["prompt", "answer", "solution"]),
                                 step_reward_funcs=[HeuristicStepReward()])
    trainer.train()
    assert_gain(held_out_correct(trainer.model, trainer.processing_class, test), before)


# 3 epochs of rollouts with a value model (~80 s). Measured here, pass@1 gain at seeds 0-4: lr 2.5e-4
# +0.677, +0.654, +0.725, +0.669, +0.671 (each interval's low end above +0.5); at lr 1e-3 with PPO's 4
# epochs per rollout a lottery, +0.015, +0.431, +0.106, +0.302, +0.233 (docs/algorithms/ppo.md)
@pytest.mark.slow
def test_ppo_beats_its_start_on_held_out_questions(noisy_start, tmp_path):
    from trl_reasoning.rewards import CorrectnessReward
    from trl_reasoning.trainers import PPOConfig, PPOTrainer

    folder, train, test, before = noisy_start
    args = _grpo_args(PPOConfig, tmp_path, learning_rate=2.5e-4, num_train_epochs=3, kl_coef=0.01,
                      value_learning_rate=1e-3)
    trainer = PPOTrainer(model=str(folder), reward_funcs=[CorrectnessReward("arithmetic")], args=args,
                         train_dataset=train.select_columns(["prompt", "answer", "solution"]))
    trainer.train()
    assert_gain(held_out_correct(trainer.model, trainer.processing_class, test), before)


@pytest.mark.slow  # ~950 optimizer steps (~95 s); measured in the module's docstring
def test_return_conditioned_rl_beats_its_start_on_held_out_questions_when_conditioned_on_good(noisy_start,
                                                                                              tmp_path):
    from trl_reasoning.trainers import ReturnConditionedConfig, ReturnConditionedTrainer

    folder, train, test, before = noisy_start
    args = _rounds_args(ReturnConditionedConfig, tmp_path, num_train_epochs=10, deduplicate=False)
    trainer = ReturnConditionedTrainer(model=str(folder), args=args, train_dataset=train)
    trainer.train()
    plain = held_out_correct(trainer.model, trainer.processing_class, test)
    print(f"unconditioned: held-out maj@1 {sum(plain['maj@1']) / NUM_TEST:.3f}")
    good = test.map(lambda row: {"prompt": row["prompt"] + args.good_token})
    assert_gain(held_out_correct(trainer.model, trainer.processing_class, good), before, metric="maj@1")


def _everything_right(completions, **kwargs):
    return [1.0] * len(completions)


# the control of the EI test: the same run with every sample called right (~20 s)
def test_expert_iteration_gains_from_the_verifier_not_from_fine_tuning_on_its_own_samples(noisy_start,
                                                                                            tmp_path):
    """EI whose reward calls every sample right keeps them all (off-by-one answer lines included): it
    fine-tunes on the start's own habits and must end below the EI that keeps only verified samples."""
    from trl_reasoning.metrics import paired_difference
    from trl_reasoning.trainers import ExpertIterationConfig, ExpertIterationTrainer

    folder, train, test, _ = noisy_start
    after = {}
    for name, reward in (("verified", None), ("everything", _everything_right)):
        trainer = ExpertIterationTrainer(model=str(folder), train_dataset=train,
                                         args=_rounds_args(ExpertIterationConfig, tmp_path / name),
                                         **({"reward_funcs": [reward]} if reward else {}))
        trainer.train()
        after[name] = held_out_correct(trainer.model, trainer.processing_class, test)
    gap = paired_difference(after["verified"]["pass@1"], after["everything"]["pass@1"])
    print(f"held-out pass@1, verified minus everything kept: {gap.mean:+.3f} [{gap.ci_low:+.3f}, "
          f"{gap.ci_high:+.3f}]")
    assert gap.ci_low > 0, gap
