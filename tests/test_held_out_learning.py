"""Each trainer beats its start on held-out questions of the arithmetic task, with the task's own verifier
as the reward (no stand-in reward, no training prompts in the evaluation).

The start is a tiny model fine-tuned on references whose answer line is off by one half the time
(``#### 7`` after ``3 + 3 = 6``): it computes most steps right and then copies the result into the
answer line right or wrong about equally. That is a habit a reward can fix in a few steps and that carries
over to questions never seen, so a trainer that learns from the verifier raises held-out greedy maj@1
(paired over the same questions, 95% bootstrap interval above 0) and one that does not, does not.
Held-out means no test question shares its reference solution (numbers and steps) with a train question.
"""

from __future__ import annotations

import random

import pytest

from trl_reasoning.tasks import ArithmeticConfig, add_prompts, build_prompt, completion_target, load_task

EASY = ArithmeticConfig(max_operand=4, operators=("+",), min_steps=2, max_steps=3)
NUM_TRAIN, NUM_TEST = 250, 60


def _off_by_one_half_the_time(solution: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        head, answer = solution.rsplit("#### ", 1)
        return f"{head}#### {int(answer) + 1}"
    return solution


@pytest.fixture(scope="module")
def noisy_start(tmp_path_factory):
    """(start folder, train questions, held-out questions, the start's held-out greedy correctness)."""
    import torch
    from conftest import fit_on_texts

    from trl_reasoning.loading import load_model, load_tokenizer
    from trl_reasoning.tiny import make_tiny_model

    train = load_task("arithmetic", split="train", num_examples=NUM_TRAIN, arithmetic_config=EASY)
    test = load_task("arithmetic", split="test", num_examples=NUM_TEST, arithmetic_config=EASY)
    assert not {r["solution"] for r in train} & {r["solution"] for r in test}  # held out by content
    folder = make_tiny_model(tmp_path_factory.mktemp("noisy_start"), hidden_size=64, num_layers=2, num_heads=2)
    model, tokenizer = load_model(str(folder)), load_tokenizer(str(folder), padding_side="right")
    rng = random.Random(0)
    texts = [build_prompt(r["question"]) + completion_target(_off_by_one_half_the_time(r["solution"], rng))
             + tokenizer.eos_token for r in train]
    torch.manual_seed(0)
    fit_on_texts(model, tokenizer, texts, steps=400)
    model.save_pretrained(folder)
    train, test = add_prompts(train), add_prompts(test)
    return folder, train, test, held_out_correct(model, load_tokenizer(str(folder)), test)


def held_out_correct(model, tokenizer, test, suffix: str = "") -> list[float]:
    """Greedy correctness (1/0) per held-out question, in the dataset's order."""
    from trl_reasoning.evaluation import EvalSettings, evaluate

    questions = test.map(lambda row: {"prompt": row["prompt"] + suffix}) if suffix else test
    settings = EvalSettings(num_generations=1, temperature=0.0, max_new_tokens=32, batch_size=NUM_TEST, seed=0)
    report = evaluate(model.eval(), tokenizer, questions, "arithmetic", settings)
    by_id = {r["id"]: float(r["correct"]) for r in report["records"] if r["kind"] == "greedy"}
    return [by_id[row["id"]] for row in test]


def assert_gain(after: list[float], before: list[float]) -> None:
    from trl_reasoning.metrics import paired_difference

    gain = paired_difference(after, before)
    report = (f"held-out maj@1 {sum(before) / len(before):.3f} -> {sum(after) / len(after):.3f}, "
              f"gain {gain.mean:+.3f} [{gain.ci_low:+.3f}, {gain.ci_high:+.3f}]")
    print(report)  # shown with pytest -s: the figures the closing notes quote
    assert gain.ci_low > 0, report


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
                  save_strategy="no", logging_steps=5, gradient_checkpointing=False, disable_tqdm=True, seed=0)
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


@pytest.mark.slow  # 3 epochs of rollouts with a value model: ~90 s alone
def test_ppo_beats_its_start_on_held_out_questions(noisy_start, tmp_path):
    from trl_reasoning.rewards import CorrectnessReward
    from trl_reasoning.trainers import PPOConfig, PPOTrainer

    folder, train, test, before = noisy_start
    args = _grpo_args(PPOConfig, tmp_path, learning_rate=5e-4, num_train_epochs=3, kl_coef=0.01,
                      value_learning_rate=1e-3)
    trainer = PPOTrainer(model=str(folder), reward_funcs=[CorrectnessReward("arithmetic")], args=args,
                         train_dataset=train.select_columns(["prompt", "answer", "solution"]))
    trainer.train()
    assert_gain(held_out_correct(trainer.model, trainer.processing_class, test), before)
