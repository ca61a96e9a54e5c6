"""Launched runs on real distributed engines, on CPU: 2 processes over gloo (DDP) and DeepSpeed ZeRO-2/3.

Each run asserts its world size from inside the run (``num_processes`` and ``distributed_type`` in the
records it writes), so a launch that falls back to one process fails. Each DeepSpeed run is killed at a
named point after a checkpoint and resumed by the same command; the checkpoints reload with
``from_pretrained``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EASY_ARITHMETIC, EASY_ARITHMETIC_RECIPE
from test_launch import SHORT

from trl_reasoning.faults import FAULT_ENV
from trl_reasoning.launch import LAUNCHED_ENV

# a reward-model epoch, then PPO steps that use it as a dense reward (HF sampling: no vLLM here)
RM_PPO = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [orm, ppo]
num_train_examples: 32
num_eval_examples: 8
rm_train_limit: 8
tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2}}
orm: {{num_generations: 2, max_new_tokens: 16, num_train_epochs: 1, per_device_train_batch_size: 4,
       sampling_backend: hf}}
ppo:
  dense_rewards: [orm]
  num_generations: 2
  max_completion_length: 16
  per_device_train_batch_size: 8
  max_steps: 2
  save_steps: 1
  gradient_checkpointing: false
  use_vllm: false
"""


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", LAUNCHED_ENV)}
    return {**env, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


def _launch(recipe: Path, config: str, **env) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "trl_reasoning", "train", str(recipe), "--accelerate_config", config,
               "--num_processes", "2"]
    return subprocess.run(command, env=_env(**env), capture_output=True, text=True, timeout=900)


def _samples(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _weights(folder: Path) -> dict:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


# Both slow (114 s alone for ZeRO-3): the fast suite's ZeRO-2 and ZeRO-3 smokes are the reward-model +
# PPO test below, and its EI smoke on two processes is test_an_ei_round_in_two_processes_keeps_...
@pytest.mark.slow
@pytest.mark.parametrize("config", ["zero2", "zero3"])
def test_ei_rounds_on_two_deepspeed_processes_checkpoint_and_resume(tmp_path, config):
    """One command: SFT then EI rounds under DeepSpeed in 2 CPU processes; killed after round 2's
    samples, the same command resumes there without resampling round 1 and trains round 2 (every round
    restarts from the SFT policy on all solutions kept so far, so round 2 trains even when it keeps
    nothing new: the resumed run must fine-tune, not just finish)."""
    from trl_reasoning.tasks import load_task

    out = tmp_path / "run"
    recipe = tmp_path / "short.yaml"
    recipe.write_text(SHORT.format(out=out, rounds=2) + "  reinit_each_round: true\n")
    crashed = _launch(recipe, config, **{FAULT_ENV: "samples_written:2"})
    assert crashed.returncode != 0
    assert (out / "ei" / "round_002" / "samples.jsonl").exists()
    assert not (out / "ei" / "round_002" / "metrics.json").exists()
    first_round = (out / "ei" / "round_001" / "samples.jsonl").read_text()
    done = _launch(recipe, config)
    assert done.returncode == 0, done.stderr[-3000:]
    for record in (json.loads((out / "ei" / "round_001" / "metrics.json").read_text()),
                   json.loads((out / "sft" / "stage_complete.json").read_text())):
        assert record["num_processes"] == 2 and record["distributed_type"] == "DEEPSPEED"
    assert (out / "ei" / "round_001" / "samples.jsonl").read_text() == first_round  # not resampled
    ids = [s["id"] for s in _samples(out / "ei" / "round_002" / "samples.jsonl")]
    train_ids = set(load_task("arithmetic", split="train", num_examples=48)["id"])
    assert set(ids) == train_ids and all(ids.count(i) == 2 for i in train_ids)  # each question once, K=2
    # each round fine-tuned the SFT policy (round 2 after the resume, with another seed): three models
    sft, final = _weights(out / "sft"), _weights(out / "ei" / "final_model")
    round_one, round_two = (_weights(out / "ei" / f"round_00{r}" / "checkpoint") for r in (1, 2))
    assert not _same(round_one, sft) and not _same(round_two, sft) and not _same(round_two, round_one)
    assert _same(round_two, final)


@pytest.mark.parametrize(
    ("config", "kind", "crash", "value_mode"),
    [("multi_cpu", "MULTI_CPU", False, "separate"), ("zero2", "DEEPSPEED", True, "shared"),
     ("zero3", "DEEPSPEED", True, "separate")],
)
def test_reward_model_epoch_and_ppo_steps_on_two_processes(tmp_path, config, kind, crash, value_mode):
    """An ORM epoch, then PPO with it as a dense reward, in 2 processes; under DeepSpeed the run dies right
    after PPO's step-1 checkpoint and the same command resumes from it; the checkpoints reload. Under
    ZeRO-2 the value head is PPO's shared one (on the policy, in DeepSpeed's engine), under ZeRO-3 a
    separate value model (outside it, synced by us)."""
    import torch

    out = tmp_path / "run"
    recipe = tmp_path / "rm_ppo.yaml"
    recipe.write_text(RM_PPO.format(out=out) + f"  value_model_mode: {value_mode}\n")
    if crash:
        crashed = _launch(recipe, config, **{FAULT_ENV: "checkpoint_saved:1"})
        assert crashed.returncode != 0 and (out / "ppo" / "checkpoint-1" / "value_model.pt").exists()
        assert not (out / "ppo" / "stage_complete.json").exists()
        value_state = torch.load(out / "ppo" / "checkpoint-1" / "value_model.pt", weights_only=True)
        if value_mode == "separate":
            first, second = value_state["replica_fingerprints"]  # each process's copy of the value model
            assert first == second  # trained alike: DeepSpeed does not sync a model outside its engine, we do
        else:  # the shared head trains inside DeepSpeed's engine with the policy; its weights ride along
            assert value_state["head"] and "model" not in value_state
        step_one = value_state["samples_seen"]
    done = _launch(recipe, config)
    assert done.returncode == 0, done.stderr[-3000:]
    orm = json.loads((out / "orm" / "stage_complete.json").read_text())
    ppo = json.loads((out / "ppo" / "stage_complete.json").read_text())
    assert orm["num_processes"] == ppo["num_processes"] == 2
    assert orm["distributed_type"] == ppo["distributed_type"] == kind
    assert ppo["steps"] == 2 and ppo["resumed_from"] == ("checkpoint-1" if crash else None)
    if crash:
        assert step_one > 0 and ppo["cumulative_samples"] == 2 * step_one  # the count went on from step 1
    last = _weights(out / "ppo" / "checkpoint-2")
    assert _same(last, _weights(out / "ppo" / "final_model"))
    assert not _same(last, _weights(out / "tiny_init"))


# one EI round from a policy that is right often enough to keep its own samples (no references)
EI_KEEPS = """
model: {model}
task: arithmetic
output_dir: {out}
stages: [ei]
num_train_examples: 48
num_eval_examples: 8
""" + EASY_ARITHMETIC_RECIPE.replace("{", "{{").replace("}", "}}") + """
ei: {{num_rounds: 1, num_generations: 4, max_new_tokens: 32, generation_batch_size: 64, sampling_backend: hf,
      include_reference_solutions: false, num_train_epochs: 1, per_device_train_batch_size: 16,
      gradient_checkpointing: false, max_length: 128, eval_num_generations: 1}}
"""


def test_an_ei_round_in_two_processes_keeps_what_one_process_keeps(arithmetic_start, tmp_path):
    """From the same policy, 2 processes over gloo (DDP) draw byte-identical samples, every question once
    with its K samples, and keep the same solutions as one process (sampling is seeded per question, not
    per process), and those are the policy's own right samples. Trained policies differ only by
    floating-point summation order, which many steps amplify, so whole runs match closely, not exactly."""
    outputs = {}
    for name, config in (("one", None), ("two", "multi_cpu")):
        outputs[name] = tmp_path / name
        path = tmp_path / f"{name}.yaml"
        path.write_text(EI_KEEPS.format(model=arithmetic_start, out=outputs[name]))
        if config is None:
            done = subprocess.run([sys.executable, "-m", "trl_reasoning", "train", str(path)], env=_env(),
                                  capture_output=True, text=True, timeout=900)
        else:
            done = _launch(path, config)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (outputs[n] / "ei" / "round_001" for n in ("one", "two"))
    record = json.loads((two / "metrics.json").read_text())
    assert record["num_processes"] == 2 and record["distributed_type"] == "MULTI_CPU"
    assert (one / "samples.jsonl").read_text() == (two / "samples.jsonl").read_text()
    assert (one / "kept.jsonl").read_text() == (two / "kept.jsonl").read_text()
    from trl_reasoning.tasks import load_task

    answers = {r["id"]: r["answer"] for r in load_task("arithmetic", split="train", num_examples=48,
                                                        arithmetic_config=EASY_ARITHMETIC)}
    kept = _samples(two / "kept.jsonl")  # the policy's own samples, each ending in its question's answer
    assert len(kept) >= 10
    assert all(k["completion"].rstrip().endswith(f"#### {answers[k['id']]}") for k in kept)
    ids = [s["id"] for s in _samples(two / "samples.jsonl")]
    assert len(ids) == 48 * 4 and all(ids.count(i) == 4 for i in set(ids))  # each question once, K=4


# SFT that does not move the weights (learning rate 0), then the eval stage: the models of a one- and a
# two-process run are the same, so everything evaluated from them must be too
FROZEN_SFT_EVAL = """
model: {model}
task: arithmetic
output_dir: {out}
stages: [sft, eval]
num_train_examples: 16
num_eval_examples: 10
training_eval: {{limit: 10, num_generations: 2, max_new_tokens: 8, backend: hf}}
sft: {{num_train_epochs: 1, per_device_train_batch_size: 4, learning_rate: 0.0, gradient_checkpointing: false,
       max_length: 64}}
eval: {{num_generations: 2, max_new_tokens: 8, backend: hf}}
"""


def test_training_time_and_stage_evaluations_on_two_processes_match_one(servable_dir, tmp_path):
    """``ReasoningEvalCallback`` during SFT and the eval stage, in one process and in two over gloo, on
    the same (unmoved) weights of a model taught the task's format (its completions vary): the
    two-process run evaluates every question once (each process samples its share, the shares are
    gathered) and writes one file with the one-process run's evaluations, and the eval stage's samples
    and metrics are the same."""
    outputs = {}
    for name, config in (("one", None), ("two", "multi_cpu")):
        outputs[name] = tmp_path / name
        path = tmp_path / f"{name}.yaml"
        path.write_text(FROZEN_SFT_EVAL.format(model=servable_dir, out=outputs[name]))
        if config is None:
            done = subprocess.run([sys.executable, "-m", "trl_reasoning", "train", str(path)], env=_env(),
                                  capture_output=True, text=True, timeout=900)
        else:
            done = _launch(path, config)
        assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((outputs["two"] / "sft" / "stage_complete.json").read_text())
    assert record["num_processes"] == 2 and record["distributed_type"] == "MULTI_CPU"
    during = {n: json.loads((outputs[n] / "sft" / "reasoning_eval" / "metrics.json").read_text())
              for n in outputs}
    keys = ("metrics", "confidence_intervals", "exploration")  # not the step: 2 processes take half
    strip = [{k: e[k] for k in keys} for e in during["one"]["evaluations"]]
    assert strip == [{k: e[k] for k in keys} for e in during["two"]["evaluations"]]
    assert len(strip) == 1 and during["two"]["num_questions"] == 10
    for name in ("samples.jsonl", "metrics.json"):
        one, two = ((outputs[n] / "eval" / "sft" / name) for n in outputs)
        if name == "samples.jsonl":
            assert one.read_text() == two.read_text()
            records = [json.loads(x) for x in two.read_text().splitlines()]
            assert len({r["id"] for r in records}) == 10
            assert len({r["completion"] for r in records}) > 5  # not one repeated token on both sides
        else:
            first, second = json.loads(one.read_text()), json.loads(two.read_text())
            assert first["metrics"] == second["metrics"] and second["num_processes"] == 2


def test_process_grpo_normalises_a_group_split_over_two_processes(tiny_model_dir, tmp_path):
    """A group of 4 completions, 2 on each process: every process normalises the step rewards of the
    whole group (gathered in rank order), and its own rows are its slice of them (a process that
    normalised its 2 rows alone would fail: 2 rows do not make a group of 4)."""
    from trl_reasoning.advantages import group_normalised_step_rewards

    script = Path(__file__).parent / "launched" / "process_grpo_groups.py"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", "0", str(script), str(tiny_model_dir), str(tmp_path)]
    done = subprocess.run(launch, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert [r["num_processes"] for r in ranks] == [2, 2] and [r["process_index"] for r in ranks] == [0, 1]
    everyone = ranks[0]["everyone"]
    assert ranks[1]["everyone"] == everyone and len(everyone) == 4 and ranks[0]["group_size"] == 4
    assert everyone[:2] == ranks[0]["local"] and everyone[2:] == ranks[1]["local"]
    assert len({tuple(row) for row in everyone}) > 1  # the group's rewards differ: normalising moves them
    whole = group_normalised_step_rewards(everyone, 4)
    for index, r in enumerate(ranks):
        assert r["normalised"] == whole and r["used"] == whole[2 * index:2 * index + 2]
