"""Return-conditioned RL: tagging, conditioning, and learning from a TRL-style script."""

from __future__ import annotations

import pytest

from trl_reasoning.tasks import add_prompts, load_task
from trl_reasoning.trainers.return_conditioned_config import ReturnConditionedConfig
from trl_reasoning.trainers.return_conditioned_trainer import ReturnConditionedTrainer


def digit_reward(completions, **kwargs):
    """About 15% of an untrained tiny model's samples contain a digit: both tags get enough examples."""
    return [1.0 if any(ch.isdigit() for ch in c) else 0.0 for c in completions]


def _args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "rcrl"), num_rounds=3, num_generations=8, temperature=1.0, max_new_tokens=8,
        generation_batch_size=128, learning_rate=3e-3, num_train_epochs=6, per_device_train_batch_size=32,
        lr_scheduler_type="constant", use_cpu=True, bf16=False, report_to="none", gradient_checkpointing=False,
        stop_when_no_new_solutions=False, logging_steps=100, max_length=128, disable_tqdm=True,
    )
    return ReturnConditionedConfig(**{**values, **overrides})


def _digit_rate(trainer, prompts) -> float:
    from trl_reasoning.sampling import sample_completions

    result = sample_completions(trainer.model, trainer.processing_class, prompts, num_samples=8, temperature=1.0,
                                max_new_tokens=8, batch_size=256, seed=1, show_progress=False)
    texts = [c.text for group in result.completions for c in group]
    return sum(digit_reward(texts)) / len(texts)


def test_good_tag_beats_unconditioned_from_a_trl_style_script(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train = add_prompts(load_task("arithmetic", split="train", num_examples=64))
    trainer = ReturnConditionedTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=_args(tmp_path), train_dataset=train,
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir), reward_funcs=[digit_reward],
    )
    history = trainer.train()
    prompts = train["prompt"][:32]
    conditioned = _digit_rate(trainer, [p + "[GOOD]" for p in prompts])
    plain = _digit_rate(trainer, prompts)
    bad = _digit_rate(trainer, [p + "[BAD]" for p in prompts])
    assert conditioned > plain + 0.2 and conditioned > bad + 0.2, (conditioned, plain, bad)
    assert history[1]["train"]["kept"] > history[1]["train"]["samples"] * 0.5  # bad samples are kept too
    assert len(trainer.processing_class("[GOOD]", add_special_tokens=False)["input_ids"]) == 1  # one new token


def test_dense_tags_go_before_every_step(tiny_model_dir, tmp_path):
    from trl_reasoning.reward_models import HeuristicStepReward

    train = add_prompts(load_task("arithmetic", split="train", num_examples=4))
    trainer = ReturnConditionedTrainer(model=str(tiny_model_dir), args=_args(tmp_path, tag_mode="dense"),
                                       train_dataset=train, step_reward_func=HeuristicStepReward())
    row = {"completion": " 1 + 2 = 3\n3 + 4 = 8\n#### 8", "step_tags": [True, False, False]}
    pair = trainer.training_pair("Q:", row)
    assert pair == {"prompt": "Q: [GOOD]", "completion": "1 + 2 = 3\n[BAD]3 + 4 = 8\n[BAD]#### 8"}
    assert trainer.training_pair("Q:", {"completion": " 1", "correct": True, "step_tags": [True]})["prompt"] == "Q: [GOOD]"


def test_bad_set_ups_fail_clearly(tiny_model_dir, tmp_path):
    train = add_prompts(load_task("arithmetic", split="train", num_examples=4))
    with pytest.raises(ValueError, match="dense tags need a step reward provider"):
        ReturnConditionedTrainer(model=str(tiny_model_dir), args=_args(tmp_path, tag_mode="dense"), train_dataset=train)
    with pytest.raises(ValueError, match="tag_mode"):
        _args(tmp_path, tag_mode="sometimes")
