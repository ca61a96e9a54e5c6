"""A run killed with SIGKILL at an arbitrary moment, then rerun with the same command, finishes with every
artefact complete and parseable.

The moment is not a timer: the test reads the run's own output and kills it at its K-th line (K drawn
from a seed), wherever the run then is: inside a stage, in the middle of writing a checkpoint or a
report. The recipe runs SFT, PPO (a checkpoint every 2 steps, so some kills land mid-checkpoint) and the
evaluation.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_env

RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [sft, ppo, eval]
num_train_examples: 64
num_eval_examples: 8
ei_train_limit: 16
tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2}}
sft: {{num_train_epochs: 1, per_device_train_batch_size: 16, gradient_checkpointing: false, max_length: 128,
      logging_steps: 1}}
ppo:
  num_generations: 2
  max_completion_length: 12
  per_device_train_batch_size: 8
  max_steps: 6
  logging_steps: 1
  save_steps: 2
  gradient_checkpointing: false
  use_vllm: false
eval: {{num_generations: 2, temperature: 0.7, max_new_tokens: 16, batch_size: 16}}
"""


def _env() -> dict:
    return run_env(PYTHONUNBUFFERED="1")  # lines reach the test as the run prints them


def _kill_at_line(command: list[str], line: int) -> int:
    """Run ``command`` and SIGKILL it (its whole process group) once it has printed ``line`` lines;
    returns how many lines it printed (fewer than ``line``: it finished first)."""
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    seen = 0
    for _ in process.stdout:
        seen += 1
        if seen == line:
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.stdout.close()
    process.wait(timeout=600)
    return seen


def _check_artefacts(out: Path) -> None:
    """Every JSON file and JSON-lines row parses, every stage is marked done, the models load."""
    from transformers import AutoModelForCausalLM

    for path in out.rglob("*.json"):
        if not path.name.startswith("."):  # an atomic write's temporary file left by the kill
            json.loads(path.read_text())
    for path in out.rglob("*.jsonl"):
        if not path.name.startswith("."):
            [json.loads(row) for row in path.read_text().splitlines() if row.strip()]
    for stage in ("sft", "ppo"):
        assert (out / stage / "stage_complete.json").exists(), stage
    assert json.loads((out / "ppo" / "stage_complete.json").read_text())["steps"] == 6
    AutoModelForCausalLM.from_pretrained(out / "ppo" / "final_model")
    assert (out / "eval" / "results.md").exists() or any((out / "eval").rglob("metrics.json"))


@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 2, 3, 4))])
def test_a_run_killed_at_a_random_moment_finishes_on_rerun_with_complete_artefacts(tmp_path, seed):
    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(out=out))
    command = [sys.executable, "-m", "trl_reasoning", "train", str(recipe)]
    line = random.Random(seed).randint(10, 60)  # this recipe prints ~66 lines: every kill lands
    assert _kill_at_line(command, line) == line, "the run finished before the kill"
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    _check_artefacts(out)


def test_a_checkpoint_cut_short_while_saving_is_not_resumed_from(tmp_path):
    """``last_complete_checkpoint`` skips a newer checkpoint without ``trainer_state.json`` (or, for a
    trainer with checkpoint extras, without their marker); ``get_last_checkpoint`` would take it."""
    from transformers import Trainer
    from transformers.trainer_utils import get_last_checkpoint

    from trl_reasoning._compat import EXTRAS_WRITTEN, CheckpointHooks, last_complete_checkpoint

    class WithExtras(CheckpointHooks, Trainer):
        pass

    for step, files in ((2, ["trainer_state.json", EXTRAS_WRITTEN]), (4, ["trainer_state.json"]),
                        (6, ["model.safetensors"])):
        (tmp_path / f"checkpoint-{step}").mkdir()
        for name in files:
            (tmp_path / f"checkpoint-{step}" / name).write_text("{}")
    assert get_last_checkpoint(str(tmp_path)).endswith("checkpoint-6")
    assert last_complete_checkpoint(tmp_path, Trainer).endswith("checkpoint-4")
    assert last_complete_checkpoint(tmp_path, WithExtras).endswith("checkpoint-2")
    assert last_complete_checkpoint(tmp_path / "none", Trainer) is None


def test_a_run_killed_while_writing_a_checkpoint_resumes_from_the_one_before(tmp_path):
    """Killed after checkpoint-4's weights and before its trainer state (a fault point): the rerun resumes
    from checkpoint-2, not from the half-written checkpoint-4, and finishes."""
    from trl_reasoning.faults import FAULT_ENV

    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(out=out).replace("stages: [sft, ppo, eval]", "stages: [sft, ppo]"))
    command = [sys.executable, "-m", "trl_reasoning", "train", str(recipe)]
    killed = subprocess.run(command, env={**_env(), FAULT_ENV: "weights_saved:4"}, capture_output=True,
                            text=True, timeout=900)
    assert killed.returncode == 75, killed.stderr[-3000:]
    assert not (out / "ppo" / "checkpoint-4" / "trainer_state.json").exists()
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "ppo" / "stage_complete.json").read_text())
    assert record["resumed_from"] == "checkpoint-2" and record["steps"] == 6



SFT_RECIPE = """
model: {model}
task: arithmetic
output_dir: {out}
stages: [sft]
num_train_examples: 32
num_eval_examples: 4
sft: {{max_steps: 4, per_device_train_batch_size: 8, learning_rate: 1.0e-2, gradient_checkpointing: false,
      report_to: []}}
"""


def test_an_sft_stage_stopped_after_a_checkpoint_goes_on_from_it_to_the_uninterrupted_weights(
        tiny_model_dir, tmp_path, monkeypatch):
    """An SFT stage (its default checkpoints: every fifth of the run, here every step) that dies after
    checkpoint-2 resumes from it on the rerun: its record says so, it trains steps 3 and 4 only, and it
    ends with the weights of a run never stopped."""
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from trl_reasoning.pipeline import run_context
    from trl_reasoning.recipes import load_recipe
    from trl_reasoning.stages import sft as sft_stage

    class Steps(TrainerCallback):
        """Counts the optimizer steps a run takes; with ``die_at``, dies once that step's checkpoint is
        written (a kill between checkpoints)."""

        def __init__(self, die_at: int | None = None):
            self.taken, self.die_at = [], die_at

        def on_step_end(self, args, state, control, **kwargs):
            self.taken.append(state.global_step)

        def on_save(self, args, state, control, **kwargs):
            if state.global_step == self.die_at:
                raise RuntimeError(f"killed after checkpoint-{self.die_at}")

    def run(name: str, steps: Steps) -> tuple[dict, dict]:
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(SFT_RECIPE.format(model=tiny_model_dir, out=tmp_path / name))
        with monkeypatch.context() as patch:
            patch.setattr(sft_stage, "training_eval_callbacks", lambda *a, **k: [steps])
            record = sft_stage.run_sft(run_context(load_recipe(recipe)), tmp_path / name / "sft")
        return record, load_file(tmp_path / name / "sft" / "model.safetensors")

    steps = Steps()
    whole, expected = run("whole", steps)
    assert whole["resumed_from"] is None and steps.taken == [1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="killed after checkpoint-2"):
        run("stopped", Steps(die_at=2))
    steps = Steps()
    resumed, again = run("stopped", steps)
    assert resumed["resumed_from"] == "checkpoint-2" and steps.taken == [3, 4]
    assert expected.keys() == again.keys()
    assert all(torch.allclose(expected[k], again[k], rtol=1e-5, atol=1e-6) for k in expected)
    start = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.allclose(start[k], again[k]) for k in start if k in again)
