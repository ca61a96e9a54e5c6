"""Return-conditioned RL: tagging, conditioning, and learning from a TRL-style script."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_reasoning.tasks import add_prompts, load_task
from trl_reasoning.trainers.return_conditioned_config import ReturnConditionedConfig
from trl_reasoning.trainers.return_conditioned_trainer import ReturnConditionedTrainer


def digit_reward(completions, **kwargs):
    """About 15% of an untrained tiny model's samples contain a digit: both tags get enough examples."""
    return [1.0 if any(ch.isdigit() for ch in c) else 0.0 for c in completions]


def _args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "rcrl"),
        num_rounds=3,
        num_generations=8,
        temperature=1.0,
        max_new_tokens=8,
        generation_batch_size=128,
        learning_rate=3e-3,
        num_train_epochs=6,
        per_device_train_batch_size=32,
        lr_scheduler_type="constant",
        use_cpu=True,
        bf16=False,
        report_to="none",
        gradient_checkpointing=False,
        stop_when_no_new_solutions=False,
        logging_steps=100,
        max_length=128,
        disable_tqdm=True,
    )
    return ReturnConditionedConfig(**{**values, **overrides})


def _digit_rate(trainer, prompts) -> float:
    from trl_reasoning.sampling import sample_completions

    result = sample_completions(
        trainer.model,
        trainer.processing_class,
        prompts,
        num_generations=8,
        temperature=1.0,
        max_new_tokens=8,
        batch_size=256,
        seed=1,
        show_progress=False,
    )
    texts = [c.text for group in result.completions for c in group]
    return sum(digit_reward(texts)) / len(texts)


def test_good_tag_beats_unconditioned_from_a_trl_style_script(tiny_model_dir, tmp_path):
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
    assert (
        len(trainer.processing_class("[GOOD]", add_special_tokens=False)["input_ids"]) == 1
    )  # one new token


class DigitSteps:
    """Dense step scorer: a step is good when it holds a digit."""

    def step_scores(self, prompts, completions, **kwargs):
        from trl_reasoning.steps import split_steps

        return [[float(any(ch.isdigit() for ch in s.text)) for s in split_steps(c)] for c in completions]


def test_dense_tags_start_every_step_and_are_never_loss_targets(tiny_model_dir, tmp_path):
    train = add_prompts(load_task("arithmetic", split="train", num_examples=4))
    trainer = ReturnConditionedTrainer(model=str(tiny_model_dir), args=_args(tmp_path, tag_mode="dense"),
                                       train_dataset=train, step_reward_func=DigitSteps())
    completion = " 1 + 2 = 3\n\n3 + 4 = 8\n#### 8"
    tagged = trainer.tagged_text(completion, [True, False, False])
    # a tag right where generation continues: after the prompt and right after every delimiter
    assert tagged == "[GOOD] 1 + 2 = 3\n[BAD]\n[BAD]3 + 4 = 8\n[BAD]#### 8"
    example = trainer.training_pair("Q:", {"completion": completion, "step_tags": [True, False, False]})
    tokenizer = trainer.processing_class
    assert example["input_ids"][:-1] == tokenizer("Q:" + tagged)["input_ids"]
    assert example["input_ids"][-1] == tokenizer.eos_token_id
    losses = [t for t, m in zip(example["input_ids"], example["completion_mask"], strict=True) if m]
    assert not set(trainer.tag_ids) & set(losses)  # tags condition, they are never predicted
    assert tokenizer.decode(losses, skip_special_tokens=True) == completion  # every text token is a target
    assert losses[-1] == tokenizer.eos_token_id


def test_a_dense_round_trains_on_the_completion_text_only_not_the_prompt_or_tags(tiny_model_dir, tmp_path):
    train = add_prompts(load_task("arithmetic", split="train", num_examples=4))
    trainer = ReturnConditionedTrainer(model=str(tiny_model_dir), args=_args(tmp_path, tag_mode="dense"),
                                       train_dataset=train, step_reward_func=DigitSteps())
    row = {"id": train[0]["id"], "completion": " 1 + 2 = 3\n#### 3", "step_tags": [True, False]}
    example = trainer.training_pair(train[0]["prompt"], row)
    sft = trainer.round_trainer([row], tmp_path / "round_001")
    batch = sft.data_collator([sft.train_dataset[0]])
    assert batch["input_ids"][0].tolist() == example["input_ids"]
    targets = [t for t in batch["labels"][0].tolist() if t != -100]
    expected = [t for t, m in zip(example["input_ids"], example["completion_mask"], strict=True) if m]
    # TRL puts the loss on every token of a pre-tokenised row unless told the mask counts
    assert targets == expected and len(targets) < len(example["input_ids"])
    assert not set(trainer.tag_ids) & set(targets)


def test_good_tag_is_forced_after_every_step_at_generation_time(tiny_model_dir, tmp_path):
    from trl_reasoning.sampling import sample_completions
    from trl_reasoning.sampling.forcing import ForcedToken

    train = add_prompts(load_task("arithmetic", split="train", num_examples=4))
    trainer = ReturnConditionedTrainer(model=str(tiny_model_dir), args=_args(tmp_path, tag_mode="dense"),
                                       train_dataset=train, step_reward_func=DigitSteps())
    tokenizer, good = trainer.processing_class, trainer.tag_ids[0]
    seen = []
    original = trainer.model.generate

    def recording_generate(**kwargs):
        output = original(**kwargs)
        seen.extend(output[:, kwargs["input_ids"].shape[1]:].tolist())
        return output

    trainer.model.generate = recording_generate
    newline = [i for i in range(len(tokenizer)) if tokenizer.decode([i]).endswith("\n")][0]
    prompts = [p + "[GOOD]" for p in train["prompt"]]
    forced = ForcedToken(tokenizer, good)
    sample_completions(
        trainer.model,
        tokenizer,
        [p + tokenizer.decode([newline]) for p in prompts],
        num_generations=4,
        temperature=1.0,
        max_new_tokens=12,
        show_progress=False,
        logits_processors=[forced],
    )
    del trainer.model.generate
    assert all(row[0] == good for row in seen)  # the prompt ends a step: the good tag comes first
    for row in seen:
        for position, token in enumerate(row[:-1]):
            if tokenizer.decode([token]).endswith("\n"):
                assert row[position + 1] == good


@pytest.mark.slow  # 59 s alone; the fast suite's RCRL smoke is the sparse TRL-style script test
def test_dense_good_tag_beats_unconditioned(tiny_model_dir, tmp_path):
    """Dense tags (a step is good when it has a digit): conditioned on [GOOD] before every step, the
    policy writes digit steps more often than unconditioned or conditioned on [BAD]."""
    from trl_reasoning.sampling import sample_completions
    from trl_reasoning.sampling.forcing import ForcedToken

    train = add_prompts(load_task("arithmetic", split="train", num_examples=64))
    trainer = ReturnConditionedTrainer(
        model=str(tiny_model_dir),
        args=_args(tmp_path, tag_mode="dense", max_new_tokens=16),
        train_dataset=train,
        reward_funcs=[digit_reward],
        step_reward_func=DigitSteps(),
    )
    trainer.train()
    tokenizer = trainer.processing_class

    def digit_step_rate(tag: str | None) -> float:
        processors = (
            [ForcedToken(tokenizer, tokenizer.convert_tokens_to_ids(tag))] if tag else []
        )
        prompts = [p + (tag or "") for p in train["prompt"][:32]]
        result = sample_completions(
            trainer.model,
            tokenizer,
            prompts,
            num_generations=8,
            temperature=1.0,
            max_new_tokens=16,
            batch_size=256,
            seed=1,
            show_progress=False,
            logits_processors=processors,
        )
        scores = DigitSteps().step_scores(None, [c.text for g in result.completions for c in g])
        steps = [s for row in scores for s in row]
        return sum(steps) / max(len(steps), 1)

    good, plain, bad = digit_step_rate("[GOOD]"), digit_step_rate(None), digit_step_rate("[BAD]")
    assert good > plain + 0.1 and good > bad + 0.2, (good, plain, bad)


def test_cap_references_and_good_fraction(tiny_model_dir, tmp_path):
    train = add_prompts(load_task("arithmetic", split="train", num_examples=2))
    trainer = ReturnConditionedTrainer(
        model=str(tiny_model_dir),
        train_dataset=train,
        args=_args(tmp_path, max_solutions_per_question=2, include_reference_solutions=True),
    )
    qid = train[0]["id"]
    samples = [
        {"id": qid, "completion": f" {n}\n#### {n}", "correct": n == 1, "num_tokens": 3} for n in range(1, 5)
    ]
    rows = trainer.training_rows(samples)
    own = [r for r in rows if not r.get("reference")]
    assert len(own) == 2 and [r["correct"] for r in own] == [True, False]  # capped, right and wrong kept
    assert {r["id"] for r in rows if r.get("reference")} == set(train["id"])  # references join, tagged good
    stats = trainer._train_stats(samples, rows)
    assert stats["good_fraction"] == pytest.approx(3 / 4) and stats["good_rows"] == 3


def test_lora_keeps_the_tags_distinguishable(tiny_model_dir, tmp_path):
    """Under LoRA the tag embeddings are distinct vectors (from the words good/bad), not two copies of
    the mean embedding; an untied model also trains them (trainable_token_indices)."""
    import torch
    from peft import LoraConfig

    train = add_prompts(load_task("arithmetic", split="train", num_examples=4))
    lora = LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = ReturnConditionedTrainer(
        model=str(tiny_model_dir), args=_args(tmp_path), train_dataset=train, peft_config=lora
    )
    weight = trainer.model.get_input_embeddings().weight
    good, bad = weight[trainer.tag_ids].detach()
    typical = (weight[10] - weight[11]).norm()
    assert (good - bad).norm() > 0.2 * typical, ((good - bad).norm(), typical)
    assert trainer.peft_config.trainable_token_indices is None  # tied embeddings: kept frozen, distinct
    untied = AutoModelForCausalLM.from_pretrained(tiny_model_dir, tie_word_embeddings=False)
    other = ReturnConditionedTrainer(
        model=untied,
        args=_args(tmp_path / "untied"),
        train_dataset=train,
        peft_config=lora,
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    assert other.peft_config.trainable_token_indices == sorted(other.tag_ids)
    assert torch.is_tensor(good)


def test_bad_set_ups_fail_clearly(tiny_model_dir, tmp_path):
    train = add_prompts(load_task("arithmetic", split="train", num_examples=4))
    with pytest.raises(ValueError, match="dense tags need a step reward provider"):
        ReturnConditionedTrainer(
            model=str(tiny_model_dir), args=_args(tmp_path, tag_mode="dense"), train_dataset=train
        )
    with pytest.raises(ValueError, match="tag_mode"):
        _args(tmp_path, tag_mode="sometimes")
    served = _args(tmp_path, tag_mode="dense", sampling_backend="vllm_server",
                   vllm_server_urls=["http://127.0.0.1:9"])
    with pytest.raises(ValueError, match="a running vllm serve does not do"):  # before round 1 trains
        ReturnConditionedTrainer(model=str(tiny_model_dir), args=served, train_dataset=train,
                                 step_reward_func=DigitSteps())


def test_model_card_names_the_algorithm(tiny_model_dir, tmp_path):
    train = add_prompts(load_task("arithmetic", split="train", num_examples=4))
    trainer = ReturnConditionedTrainer(model=str(tiny_model_dir), args=_args(tmp_path), train_dataset=train)
    trainer.history = [
        {"round": 0, "cumulative_samples": 0, "eval": {"maj@1": 0.5, "ci95/maj@1": [0.4, 0.6]}}
    ]
    card = trainer.model_card()
    assert "# Return-Conditioned RL policy" in card and "return-conditioned-rl" in card
    assert "Expert Iteration" not in card and "ci95" not in card
