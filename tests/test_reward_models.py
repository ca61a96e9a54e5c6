"""Outcome and process reward models: labels, scoring, saving, bad input, and learning."""

from __future__ import annotations

import math

import pytest

from trl_reasoning.reward_models.base import IGNORE_LABEL, RewardModelError, load_reward_model
from trl_reasoning.reward_models.outcome import OutcomeRewardModel
from trl_reasoning.reward_models.process import ProcessRewardModel, monte_carlo_step_labels
from trl_reasoning.sampling import Sampler, SamplingSettings

PROMPT = "Question: Ann has 3 cups. Ann gets 4 more cups. How many cups does Ann have now?\nAnswer:"
COMPLETION = " 3 + 4 = 7\n#### 7"


@pytest.fixture(scope="module")
def orm(tiny_model_dir):
    return OutcomeRewardModel.from_causal_lm(str(tiny_model_dir))


@pytest.fixture(scope="module")
def prm(tiny_model_dir):
    return ProcessRewardModel.from_causal_lm(str(tiny_model_dir))


def test_orm_labels_cover_completion_tokens_or_step_ends(orm):
    encoded = orm.encode(PROMPT, COMPLETION)
    final = orm.training_labels(encoded, {"label": True}, "final")
    assert [i for i, x in enumerate(final) if x != IGNORE_LABEL] == [len(encoded.input_ids) - 1]
    every = orm.training_labels(encoded, {"label": True}, "all")
    assert all(x == IGNORE_LABEL for x in every[:encoded.completion_start])
    assert all(x == 1.0 for x in every[encoded.completion_start:])
    ends = orm.training_labels(encoded, {"label": False}, "step_end")
    assert [i for i, x in enumerate(ends) if x != IGNORE_LABEL] == encoded.step_ends
    assert len(encoded.step_ends) == 2 and encoded.step_ends[-1] == len(encoded.input_ids) - 1
    tokens = orm.tokenizer.convert_ids_to_tokens(encoded.input_ids)
    assert tokens[encoded.step_ends[0]].endswith("7")


def test_prm_labels_on_step_ends_and_count_mismatch(prm):
    encoded = prm.encode(PROMPT, COMPLETION)
    labels = prm.training_labels(encoded, {"step_labels": [1, 0.5]})
    assert [labels[i] for i in encoded.step_ends] == [1.0, 0.5]
    with pytest.raises(RewardModelError, match="2 steps but 3 step_labels"):
        prm.training_labels(encoded, {"id": "q1", "step_labels": [1, 1, 1]})
    with pytest.raises(RewardModelError, match="step_labels"):
        prm.training_labels(encoded, {})


def test_score_shapes_empty_completion_and_trl_signature(orm, prm):
    scores = orm.score([PROMPT, PROMPT], [COMPLETION, ""])
    assert len(scores[0].steps) == 2 and 0 < scores[0].final < 1
    assert scores[0].final == scores[0].steps[-1]
    assert scores[1].final == 0.0 and scores[1].steps == []  # defined score for an empty completion
    # alone vs beside a shorter, padded row: the same score up to float noise
    assert orm(prompts=[PROMPT], completions=[COMPLETION], answer=["7"]) == [
        pytest.approx(scores[0].final, rel=1e-5)
    ]
    chat = orm(
        prompts=[[{"role": "user", "content": PROMPT}]],
        completions=[[{"role": "assistant", "content": COMPLETION}]],
    )
    assert len(chat) == 1 and 0 < chat[0] < 1
    process = prm.score([PROMPT], [COMPLETION])[0]
    assert process.final == min(process.steps)
    assert prm.step_scores([PROMPT], [COMPLETION]) == [process.steps]
    assert prm.step_rewards([PROMPT], [COMPLETION], shaping="raw") == [process.steps]
    shaped = prm.step_rewards([PROMPT], [COMPLETION])[0]  # delta: the return telescopes to last - start
    assert sum(shaped) == pytest.approx(process.steps[-1] - process.start, abs=1e-6)


def test_save_and_load_round_trip(orm, tmp_path):
    orm.save_pretrained(tmp_path / "orm")
    loaded = load_reward_model(str(tmp_path / "orm"))
    assert isinstance(loaded, OutcomeRewardModel)
    assert math.isclose(
        loaded.score([PROMPT], [COMPLETION])[0].final,
        orm.score([PROMPT], [COMPLETION])[0].final,
        rel_tol=1e-5,
    )
    with pytest.raises(RewardModelError, match="outcome model, not process"):
        ProcessRewardModel.from_pretrained(str(tmp_path / "orm"))


def test_plain_causal_lm_is_not_a_reward_model(tiny_model_dir):
    with pytest.raises(RewardModelError, match="not a trl-reasoning reward model"):
        load_reward_model(str(tiny_model_dir))


def test_scores_text_from_a_policy_with_another_tokenizer(orm, tmp_path):
    """The reward model re-tokenises text: a policy tokenizer with another vocabulary does not matter."""
    from trl_reasoning.tiny import build_tokenizer

    policy_tokenizer = build_tokenizer(["completely different words here\n#### 7"] * 20, vocab_size=300)
    ids = policy_tokenizer(COMPLETION)["input_ids"]
    assert ids != orm.tokenizer(COMPLETION)["input_ids"]
    text = policy_tokenizer.decode(ids)
    assert text == COMPLETION
    assert orm.score([PROMPT], [text])[0].final == orm.score([PROMPT], [COMPLETION])[0].final


def test_monte_carlo_labels_shape(tiny_model, tiny_tokenizer):
    rows = [{"prompt": PROMPT, "completion": COMPLETION, "answer": "7"},
            {"prompt": PROMPT, "completion": " 3 + 4 = 8\n8 - 1 = 7\n#### 7", "answer": "7"},
            {"prompt": PROMPT, "completion": "", "answer": "7"}]
    sampler = Sampler(tiny_model, tiny_tokenizer, SamplingSettings(max_new_tokens=8, show_progress=False))
    labels = monte_carlo_step_labels(sampler, rows, "arithmetic", mc_rollouts=2, estimate="soft")
    assert [len(x) for x in labels] == [2, 3, 0]
    assert labels[0][-1] == 1.0 and labels[1][-1] == 1.0  # the last step's label is the final verdict
    assert all(x in (0.0, 0.5, 1.0) for x in labels[1])
    with pytest.raises(RewardModelError, match="hard' or 'soft"):
        monte_carlo_step_labels(sampler, rows, "arithmetic", estimate="maybe")


def _orm_rows(num: int, seed: int) -> list[dict]:
    """Arithmetic solutions, half with a wrong, negative final answer (label 0): a rule an untrained
    2-layer model can learn in seconds (comparing numbers across lines takes far longer)."""
    import random

    from trl_reasoning.tasks import build_prompt, completion_target, load_task

    rng = random.Random(seed)
    rows = []
    for row in load_task("arithmetic", split="train" if seed == 0 else "test", num_examples=num, seed=seed):
        text = completion_target(row["solution"])
        good = rng.random() < 0.5
        if not good:
            wrong = -int(row["answer"]) - rng.randint(1, 9)
            text = text.rsplit("####", 1)[0] + f"#### {wrong}"
        rows.append(
            {"id": row["id"], "prompt": build_prompt(row["question"]), "completion": text, "label": good}
        )
    return rows


def test_orm_trainer_learns(tiny_model_dir, tmp_path):
    """A TRL-style script: the ORM learns to separate right from wrong final answers (AUROC up)."""
    from datasets import Dataset

    from trl_reasoning import RewardModelConfig, RewardModelTrainer
    from trl_reasoning.trainers.reward_model_trainer import reward_model_quality

    train, held_out = _orm_rows(400, 0), _orm_rows(100, 1)
    args = RewardModelConfig(
        output_dir=str(tmp_path / "orm"), kind="outcome", label_positions="final", num_train_epochs=3,
        learning_rate=1e-3, per_device_train_batch_size=8, use_cpu=True, report_to="none", save_strategy="no",
        disable_tqdm=True, logging_steps=1000, seed=0,
    )
    trainer = RewardModelTrainer(model=str(tiny_model_dir), args=args, train_dataset=Dataset.from_list(train))
    before = reward_model_quality(trainer.reward_model, held_out)["final_auroc"]
    trainer.train()
    after = reward_model_quality(trainer.reward_model, held_out)["final_auroc"]
    assert after > 0.85 and after > before + 0.2, (before, after)
    trainer.save_model(str(tmp_path / "saved"))
    assert load_reward_model(str(tmp_path / "saved")).score(
        [held_out[0]["prompt"]], [held_out[0]["completion"]]
    )


def test_fresh_implicit_head_scores_one_half_and_round_trips(tiny_model_dir, tmp_path):
    """Policy == reference at the start: every log-ratio is 0, so every step scores sigmoid(0)."""
    prm = ProcessRewardModel.from_causal_lm(str(tiny_model_dir), head="implicit", implicit_beta=0.3)
    score = prm.score([PROMPT], [COMPLETION])[0]
    assert prm.head == "implicit" and score.steps == pytest.approx([0.5, 0.5])
    prm.save_pretrained(tmp_path / "prm")
    loaded = load_reward_model(str(tmp_path / "prm"))
    assert isinstance(loaded, ProcessRewardModel) and loaded.head == "implicit" and loaded.model.beta == 0.3
    with pytest.raises(RewardModelError, match="head must be one of value, implicit"):
        OutcomeRewardModel.from_causal_lm(str(tiny_model_dir), head="linear")


def _step_counter():
    """A callback counting the optimizer steps this trainer ran (not those a checkpoint restored)."""
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    return StepCounter()


def _same_first_moments(first, second) -> bool:
    """Two Adam optimizers hold the same first moments, parameter by parameter (and hold some)."""
    import torch

    states = (first.state_dict()["state"].values(), second.state_dict()["state"].values())
    pairs = [(a["exp_avg"], b["exp_avg"]) for a, b in zip(*states, strict=True)]
    return bool(pairs) and all(torch.allclose(a, b, atol=1e-6) for a, b in pairs)


def test_implicit_orm_learns_and_resumes_from_a_checkpoint(tiny_model_dir, tmp_path):
    """The implicit head learns the same rule; resumed from its middle checkpoint (step 50 of 100), the
    run's last 50 steps give what the uninterrupted run gave: weights, optimizer state, step count,
    learning rate and loss."""
    import torch
    from datasets import Dataset

    from trl_reasoning import RewardModelConfig, RewardModelTrainer
    from trl_reasoning.trainers.reward_model_trainer import reward_model_quality

    train, held_out = _orm_rows(400, 0), _orm_rows(100, 1)
    args = RewardModelConfig(
        output_dir=str(tmp_path / "orm"),
        kind="outcome",
        head="implicit",
        implicit_beta=0.5,
        label_positions="final",
        num_train_epochs=2,
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        use_cpu=True,
        report_to="none",
        save_strategy="steps",
        save_steps=50,
        disable_tqdm=True,
        logging_steps=10,
        seed=0,
    )
    trainer = RewardModelTrainer(model=str(tiny_model_dir), args=args, train_dataset=Dataset.from_list(train))
    trainer.train()
    after = reward_model_quality(trainer.reward_model, held_out)["final_auroc"]
    assert after > 0.85, after
    trained = trainer.reward_model.model.policy.state_dict()
    checkpoint = str(tmp_path / "orm" / "checkpoint-50")
    assert load_reward_model(checkpoint).head == "implicit"  # a checkpoint is a reward model too
    counter = _step_counter()
    resumed = RewardModelTrainer(model=str(tiny_model_dir), args=args, train_dataset=Dataset.from_list(train),
                                 callbacks=[counter])
    resumed.train(resume_from_checkpoint=checkpoint)
    assert counter.steps == 50  # only the second half ran: the first came from the checkpoint
    assert resumed.state.global_step == trainer.state.global_step == 100
    mine = resumed.reward_model.model.policy.state_dict()
    assert all(torch.allclose(v, mine[k], atol=1e-6) for k, v in trained.items())
    assert _same_first_moments(trainer.optimizer, resumed.optimizer)
    last = [[e for e in t.state.log_history if "loss" in e][-1] for t in (trainer, resumed)]
    assert last[0]["step"] == last[1]["step"] == 100
    assert last[0]["learning_rate"] == pytest.approx(last[1]["learning_rate"])
    assert last[0]["loss"] == pytest.approx(last[1]["loss"], rel=1e-4)
    trainer.save_model(str(tmp_path / "saved"))
    loaded = load_reward_model(str(tmp_path / "saved"))
    row = held_out[0]
    assert loaded.score([row["prompt"]], [row["completion"]])[0].final == pytest.approx(
        trainer.reward_model.score([row["prompt"]], [row["completion"]])[0].final, rel=1e-5)


def test_trainer_rejects_bad_datasets(tiny_model_dir, tmp_path):
    from datasets import Dataset

    from trl_reasoning import RewardModelConfig, RewardModelTrainer

    def args(kind):
        return RewardModelConfig(output_dir=str(tmp_path / kind), kind=kind, use_cpu=True, report_to="none")

    with pytest.raises(RewardModelError, match="missing column"):
        RewardModelTrainer(
            str(tiny_model_dir), args("outcome"), Dataset.from_list([{"prompt": "q", "completion": "a"}])
        )
    with pytest.raises(RewardModelError, match="2 steps but 1 step_labels"):
        RewardModelTrainer(str(tiny_model_dir), args("process"),
                           Dataset.from_list([{"prompt": "q", "completion": "a\nb", "step_labels": [1]}]))
    with pytest.raises(RewardModelError, match="no row has a labelled completion token"):
        RewardModelTrainer(
            str(tiny_model_dir),
            args("outcome"),
            Dataset.from_list([{"prompt": "q", "completion": "", "label": True}]),
        )
    stepwise = Dataset.from_list(
        [{"prompt": "q", "completions": ["1 + 1 = 2", "#### 2"], "labels": [True, True]}]
    )
    assert len(RewardModelTrainer(str(tiny_model_dir), args("process"), stepwise).train_dataset) == 1


def test_implicit_head_with_a_lora_adapter(tiny_model_dir, tmp_path):
    """PEFT: the adapter sits on the policy (the reference stays frozen), checkpoints keep the
    adapter and resume (from the middle one: the 5 steps after it reproduce the uninterrupted run's
    scores), and the final save merges it into a plain reward model."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        def __init__(self):
            self.seen = []

        def on_step_end(self, args, state, control, **kwargs):
            self.seen.append(state.global_step)

    from trl_reasoning import RewardModelConfig, RewardModelTrainer

    args = RewardModelConfig(
        output_dir=str(tmp_path / "orm"),
        kind="outcome",
        head="implicit",
        implicit_beta=0.5,
        label_positions="final",
        num_train_epochs=2,
        learning_rate=1e-2,
        per_device_train_batch_size=8,
        use_cpu=True,
        report_to="none",
        save_strategy="epoch",
        disable_tqdm=True,
        seed=0,
    )
    lora = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    rows = Dataset.from_list(_orm_rows(40, 0))
    trainer = RewardModelTrainer(str(tiny_model_dir), args, train_dataset=rows, peft_config=lora)
    trainer.train()
    checkpoint = tmp_path / "orm" / "checkpoint-5"  # the end of epoch 1 of 2
    assert (checkpoint / "adapter_config.json").is_file() and trainer.state.global_step == 10
    steps = Steps()
    resumed = RewardModelTrainer(str(tiny_model_dir), args, train_dataset=rows, peft_config=lora,
                                 callbacks=[steps])
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert steps.seen == [6, 7, 8, 9, 10]  # it went on from the checkpoint; it did not start over
    trainer.save_model(str(tmp_path / "merged"))
    loaded = load_reward_model(str(tmp_path / "merged"))
    first = trainer.reward_model.score([PROMPT], [COMPLETION])[0].final
    assert first != 0.5 and loaded.score([PROMPT], [COMPLETION])[0].final == pytest.approx(first, rel=1e-5)
    assert resumed.reward_model.score([PROMPT], [COMPLETION])[0].final == pytest.approx(first, rel=1e-4)


def _addition_samples(split: str, num: int, seed: int) -> list[list[dict]]:
    """Per one-step addition question, 4 samples: the right one and three that misread the question's
    first number by 1 to 3, with true arithmetic after it ('18 + 5 = 23\\n#### 23' for 17 + 5), the error a
    model makes when it copies a number wrong. Train and held-out questions share no solution (the task
    splits by content): a held-out pick needs the rule (does the solution use the question's numbers?),
    not a remembered fact."""
    import random

    from trl_reasoning.tasks import build_prompt, load_task
    from trl_reasoning.tasks.arithmetic import ArithmeticConfig

    config = ArithmeticConfig(min_steps=1, max_steps=1, max_operand=30, operators=("+",))
    rng, groups = random.Random(seed), []
    for row in load_task("arithmetic", split=split, num_examples=num, seed=seed, arithmetic_config=config):
        a, b = (int(x) for x in row["solution"].split("=")[0].split("+"))
        firsts = [a, *(a + d for d in rng.sample([d for d in (-3, -2, -1, 1, 2, 3) if a + d > 0], 3))]
        rng.shuffle(firsts)
        groups.append([{"id": row["id"], "prompt": build_prompt(row["question"]), "label": x == a,
                        "completion": f" {x} + {b} = {x + b}\n#### {x + b}"} for x in firsts])
    return groups


def test_orm_ranks_samples_within_a_question(tiny_model_dir, tmp_path):
    """Held-out questions (no solution shared with training), one right sample among four: reranking by
    the trained ORM picks the right one clearly more often than a random sample (pass@1 = 0.25)."""
    from datasets import Dataset

    from trl_reasoning import RewardModelConfig, RewardModelTrainer
    from trl_reasoning.metrics import rerank_at_k

    train = [s for group in _addition_samples("train", 700, 0) for s in group]
    held_out = _addition_samples("test", 150, 1)  # of the ~180 one-step sums the test split holds
    args = RewardModelConfig(
        output_dir=str(tmp_path / "orm"),
        kind="outcome",
        head="implicit",
        implicit_beta=1.0,
        label_positions="final",
        num_train_epochs=2,
        learning_rate=2e-3,
        per_device_train_batch_size=16,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1000,
        seed=0,
    )
    trainer = RewardModelTrainer(model=str(tiny_model_dir), args=args, train_dataset=Dataset.from_list(train))
    trainer.train()
    picks = []
    for group in held_out:
        scores = trainer.reward_model.rerank_scorer(
            [s["prompt"] for s in group], [s["completion"] for s in group]
        )
        answers = [s["completion"].rsplit("#### ", 1)[1] for s in group]
        picks.append(rerank_at_k(answers, [s["label"] for s in group], scores))
    pass_at_1 = sum(s["label"] for g in held_out for s in g) / sum(len(g) for g in held_out)
    # chance is 0.25 (sd 0.035 over 150 questions); measured 0.41 on 100 held-out questions
    assert pass_at_1 == 0.25 and sum(picks) / len(picks) > 0.33, sum(picks) / len(picks)


class CarryForwardPolicy:
    """A scripted policy for Monte-Carlo rollouts: it finishes a two-step addition solution correctly
    from whatever its prefix last wrote, so a wrong step makes every rollout after it wrong."""

    def __init__(self, tokenizer):
        import torch
        from transformers import GenerationConfig

        self.tokenizer, self.device = tokenizer, torch.device("cpu")
        self.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id)

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        import re

        import torch

        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            text = self.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            question, written = text.split("Answer:", 1)
            operands = [int(x) for x in re.findall(r"gets (\d+) more", question)]
            lines = [line for line in written.split("\n") if "=" in line]
            value = (
                int(lines[-1].rsplit("=", 1)[1]) if lines else int(re.search(r"has (\d+)", question).group(1))
            )
            steps = []
            for b in operands[len(lines):]:
                steps.append(f"{value} + {b} = {value + b}")
                value += b
            continuation = "".join(f"{s}\n" for s in steps) + f"#### {value}"
            rows.append(
                self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
                + [self.tokenizer.eos_token_id]
            )
        width = max(map(len, rows))
        new = torch.tensor([r + [self.tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, new], dim=1)


def _two_step_rows(split: str, num: int, seed: int) -> list[dict]:
    """Two-step additions: the reference, one whose first step misreads a question number (carried
    forward) and one whose second step does; ``true_steps[i]``: steps 1..i are all right (what a
    Monte-Carlo label estimates: after a wrong step no continuation reaches the answer). Train and held-out
    questions share no solution, so the PRM must check each step against the question, not recall it."""
    import random

    from trl_reasoning.tasks import build_prompt, load_task
    from trl_reasoning.tasks.arithmetic import ArithmeticConfig

    config = ArithmeticConfig(min_steps=2, max_steps=2, max_operand=20, operators=("+",))
    rng, rows = random.Random(seed), []
    for row in load_task("arithmetic", split=split, num_examples=num, seed=seed, arithmetic_config=config):
        (a, b), (_, d) = [
            tuple(int(x) for x in line.split("=")[0].split("+")) for line in row["solution"].split("\n")[:2]
        ]
        a2 = a + rng.choice([d for d in (-3, -2, -1, 1, 2, 3) if a + d > 0])
        d2 = d + rng.choice([x for x in (-3, -2, -1, 1, 2, 3) if d + x > 0])
        variants = [(a, d, [True, True]), (a2, d, [False, False]), (a, d2, [True, False])]
        for first, second, truth in variants:
            c, e = first + b, first + b + second
            rows.append({"id": row["id"], "prompt": build_prompt(row["question"]), "answer": row["answer"],
                         "completion": f" {first} + {b} = {c}\n{c} + {second} = {e}\n#### {e}",
                         "true_steps": truth,
                         "label": truth == [True, True]})
    return rows


@pytest.mark.slow  # ~4 min alone on 2 cores; the PRM's fast smoke tests stay in the suite
def test_prm_learns_from_monte_carlo_step_labels(tiny_model_dir, tmp_path):
    """Step labels from rollouts (a wrong first step makes every continuation wrong) train a PRM whose
    step scores separate right from wrong steps on held-out questions."""
    from datasets import Dataset

    from trl_reasoning import RewardModelConfig, RewardModelTrainer
    from trl_reasoning.loading import load_tokenizer
    from trl_reasoning.metrics import auroc

    tokenizer = load_tokenizer(str(tiny_model_dir))
    train = _two_step_rows("train", 1500, 0)
    settings = SamplingSettings(temperature=1.0, max_new_tokens=32, show_progress=False, backend="hf")
    labels = monte_carlo_step_labels(Sampler(CarryForwardPolicy(tokenizer), tokenizer, settings), train,
                                     "arithmetic", mc_rollouts=1)
    assert [lab for lab in labels[:3]] == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    for row, step_labels in zip(train, labels, strict=True):
        row["step_labels"] = step_labels
    args = RewardModelConfig(
        output_dir=str(tmp_path / "prm"),
        kind="process",
        head="implicit",
        implicit_beta=1.0,
        num_train_epochs=3,
        learning_rate=2e-3,
        per_device_train_batch_size=16,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1000,
        seed=0,
    )
    trainer = RewardModelTrainer(model=str(tiny_model_dir), args=args, train_dataset=Dataset.from_list(train))
    trainer.train()
    held_out = _two_step_rows("test", 300, 1)[:150]
    scores = trainer.reward_model.score([r["prompt"] for r in held_out], [r["completion"] for r in held_out])
    pairs = [
        (p, t)
        for r, s in zip(held_out, scores, strict=True)
        for p, t in zip(s.steps[:2], r["true_steps"], strict=True)
    ]
    step_auroc = auroc([p for p, _ in pairs], [t for _, t in pairs])
    assert step_auroc > 0.7, step_auroc  # an untrained PRM scores every step 0.5
