"""ReasoningEvalCallback: task accuracy during a plain TRL run, equal to ``trl-reasoning eval``'s."""

from __future__ import annotations

import json

import pytest

from trl_reasoning.cli import main
from trl_reasoning.eval_callback import ReasoningEvalCallback
from trl_reasoning.evaluation import EvalSettings
from trl_reasoning.rewards import make_correctness_reward
from trl_reasoning.tasks import add_prompts, load_task


def varied_characters(completions, **kwargs):
    """A reward an untrained model's samples differ on, so GRPO's advantages (and the weights) move;
    the correctness reward alone is 0 everywhere for it."""
    return [len(set(c)) / 10 for c in completions]


SETTINGS = dict(num_generations=4, temperature=0.7, max_new_tokens=16, batch_size=8, seed=3, backend="hf")


def _grpo_trainer(tiny_model_dir, tmp_path, callback_steps: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    train = add_prompts(load_task("arithmetic", split="train", num_examples=64)).select_columns(
        ["prompt", "answer"])
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"), learning_rate=5e-3, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=8, max_steps=4, save_strategy="steps", save_steps=2,
        use_cpu=True, bf16=False, report_to="none", logging_steps=1, disable_tqdm=True, seed=0,
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, padding_side="left")
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                          reward_funcs=[make_correctness_reward("arithmetic"), varied_characters], args=args,
                          train_dataset=train, processing_class=tokenizer)
    # the held-out questions and prompts the eval command builds with --seed 3
    held_out = add_prompts(load_task("arithmetic", split="test", limit=6, seed=3), seed=3)
    callback = ReasoningEvalCallback(trainer, held_out, task="arithmetic", settings=EvalSettings(**SETTINGS),
                                     eval_steps=callback_steps, save_samples=True)
    trainer.add_callback(callback)
    return trainer, callback


def test_grpo_logs_task_accuracy_during_training_matching_trl_reasoning_eval(tiny_model_dir, tmp_path):
    trainer, callback = _grpo_trainer(tiny_model_dir, tmp_path, callback_steps=2)
    trainer.train()
    logged = [r for r in trainer.state.log_history if "reasoning/maj@1" in r]
    assert [r["step"] for r in logged] == [2, 4]
    assert {"reasoning/pass@4", "reasoning/maj@4", "reasoning/samples_drawn"} <= set(logged[0])
    assert [r["reasoning/samples_drawn"] for r in logged] == [16, 32]  # 8 completions per step, 1 iteration
    report = json.loads((tmp_path / "grpo" / "reasoning_eval" / "metrics.json").read_text())
    assert [e["step"] for e in report["evaluations"]] == [2, 4]
    assert (tmp_path / "grpo" / "reasoning_eval" / "accuracy_vs_samples.png").stat().st_size > 0
    for step in (2, 4):  # the same checkpoint and seed through the eval command: same samples, same metrics
        out = tmp_path / f"eval-{step}"
        main(["eval", "--model", str(tmp_path / "grpo" / f"checkpoint-{step}"), "--task", "arithmetic",
              "--limit", "6", "--num_generations", "4", "--temperature", "0.7", "--max_new_tokens", "16",
              "--batch_size", "8", "--seed", "3", "--backend", "hf", "--output", str(out)])
        cli = json.loads((out / "metrics.json").read_text())
        during = next(e for e in report["evaluations"] if e["step"] == step)
        assert during["metrics"] == pytest.approx(cli["metrics"])
        texts = [json.loads(line)["completion"] for line in (out / "samples.jsonl").read_text().splitlines()]
        saved = tmp_path / "grpo" / "reasoning_eval" / f"samples-step-{step}.jsonl"
        assert [json.loads(line)["completion"] for line in saved.read_text().splitlines()] == texts
    first = [json.loads(line)["completion"] for line in
             (tmp_path / "grpo" / "reasoning_eval" / "samples-step-2.jsonl").read_text().splitlines()]
    assert first != texts, "training changed nothing between the two evaluations: the match proves little"


def test_sft_trainer_evaluates_every_epoch_without_samples_drawn(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from trl_reasoning.trainers.sft import sft_examples

    train = add_prompts(load_task("arithmetic", split="train", num_examples=32))
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=SFTConfig(output_dir=str(tmp_path / "sft"), num_train_epochs=2, per_device_train_batch_size=16,
                       use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True),
        train_dataset=Dataset.from_list(sft_examples(train)),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    held_out = add_prompts(load_task("arithmetic", split="test", limit=4, seed=0))
    trainer.add_callback(ReasoningEvalCallback(trainer, held_out, "arithmetic", EvalSettings(**SETTINGS)))
    trainer.train()
    logged = [r for r in trainer.state.log_history if "reasoning/maj@1" in r]
    assert len(logged) == 2 and all(r["reasoning/samples_drawn"] == 0 for r in logged)


def test_a_held_out_set_without_answers_fails_in_one_line(tiny_model_dir, tmp_path):
    from datasets import Dataset

    with pytest.raises(ValueError, match="eval_dataset: needs a 'answer' column"):
        ReasoningEvalCallback(None, Dataset.from_list([{"prompt": "1 + 1"}]), "arithmetic")
    rows = Dataset.from_list([{"prompt": "1 + 1", "answer": "2"}])
    unbound = ReasoningEvalCallback(None, rows, "arithmetic")
    with pytest.raises(ValueError, match="no trainer to evaluate"):
        unbound.on_train_begin(None, None, None)


def test_a_resumed_runs_evaluations_go_on_from_the_last_kept_seconds(tmp_path, monkeypatch):
    """Without a time budget the points' clock is the callback's own: a run resumed at step 4 goes on
    from the 100 s its kept evaluation had (a clock restarted at 0 drew the time axis backwards)."""
    from types import SimpleNamespace

    from trl_reasoning import eval_callback

    now = {"t": 500.0}
    monkeypatch.setattr(eval_callback, "time", SimpleNamespace(monotonic=lambda: now["t"]))
    questions = add_prompts(load_task("arithmetic", split="test", num_examples=2))
    callback = ReasoningEvalCallback(None, questions, "arithmetic", output_dir=tmp_path)
    callback.trainer = SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[]))
    kept, dropped = {"step": 4, "label": None, "seconds": 100.0}, {"step": 6, "label": None, "seconds": 150.0}
    (tmp_path / "metrics.json").write_text(json.dumps({"evaluations": [kept, dropped]}))
    callback.on_train_begin(None, SimpleNamespace(global_step=4), None)
    assert callback.history == [kept] and callback.training_seconds() == 100.0
    now["t"] += 30.0
    assert callback.training_seconds() == 130.0
