"""A whole recipe with every new stage (sft, orm, prm, ppo with dense ORM + heuristic rewards, rcrl, eval)
on a minute-sized tiny run: the stages connect, write their artefacts, and resume as done."""

from __future__ import annotations

import json

from trl_reasoning.pipeline import run_recipe
from trl_reasoning.recipes import load_recipe
from trl_reasoning.reporting import machine_label

RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [sft, orm, prm, ppo, rcrl, eval]
num_train_examples: 32
num_eval_examples: 8
rm_train_limit: 8
tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2}}
sft: {{num_train_epochs: 1, per_device_train_batch_size: 16, gradient_checkpointing: false, max_length: 128}}
orm: {{num_generations: 2, max_new_tokens: 16, num_train_epochs: 1, per_device_train_batch_size: 8}}
prm: {{num_generations: 2, max_new_tokens: 16, mc_rollouts: 2, num_train_epochs: 1,
       per_device_train_batch_size: 8}}
ppo:
  dense_rewards: [orm, heuristic]
  num_generations: 2
  max_completion_length: 16
  per_device_train_batch_size: 16
  max_steps: 2
  gradient_checkpointing: false
rcrl:
  num_rounds: 1
  num_generations: 2
  max_new_tokens: 16
  num_train_epochs: 1
  per_device_train_batch_size: 16
  gradient_checkpointing: false
  max_length: 128
  eval_num_generations: 2
eval: {{num_generations: 2, max_new_tokens: 16}}
"""


def _run(tmp_path, recipe: str):
    """Write ``recipe`` (its ``{out}`` filled in) and run it; returns the run folder, recipe path, results."""
    out = tmp_path / "run"
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe.format(out=out))
    return out, path, run_recipe(load_recipe(path))


def test_recipe_with_reward_models_ppo_and_rcrl(tmp_path):
    out, path, results = _run(tmp_path, RECIPE)
    assert set(results) == {"sft", "ppo", "rcrl", "rcrl unconditioned"}
    assert all("rerank@2" in r["metrics"] for r in results.values())  # reranked with the run's ORM
    for stage in ("orm", "prm"):
        metrics = json.loads((out / stage / "metrics.json").read_text())["heldout"]
        assert "final_auroc" in metrics
    assert "step_accuracy" in json.loads((out / "prm" / "metrics.json").read_text())["heldout"]
    rows = [json.loads(line) for line in (out / "prm" / "train_samples.jsonl").read_text().splitlines()]
    assert rows and all("step_labels" in r for r in rows)
    assert json.loads((out / "ppo" / "stage_complete.json").read_text())["cumulative_samples"] > 0
    assert "rcrl unconditioned" in (out / "results.md").read_text()
    again = run_recipe(load_recipe(path))  # everything is done: nothing reruns, same numbers
    assert again["ppo"]["metrics"] == results["ppo"]["metrics"]


def test_a_run_without_sft_is_compared_with_its_starting_model(tmp_path):
    """Pretrained-init runs (no sft stage): the eval stage scores the initial model too, gains are over
    it, and results.md lists each stage's wall time, peak memory and samples drawn."""
    from test_launch import SHORT

    out = tmp_path / "run"
    path = tmp_path / "recipe.yaml"
    recipe = SHORT.replace("{rounds}", "1").replace("stages: [sft, ei]", "stages: [ei, eval]")
    path.write_text(recipe.format(out=out) + "eval: {num_generations: 2, max_new_tokens: 16}\n")
    results = run_recipe(load_recipe(path))
    assert list(results) == ["initial", "ei"]
    done = json.loads((out / "ei" / "stage_complete.json").read_text())
    assert done["wall_seconds"] > 0 and done["peak_memory_gib"] > 0.1
    table = (out / "results.md").read_text()
    assert "maj@1 (greedy) gain over initial" in table and "peak memory GiB" in table
    assert "pass@1 gain over initial, paired bootstrap 95%" in table  # from the eval's 2 samples a question
    wall, memory = f"{done['wall_seconds']:.3f}", f"{done['peak_memory_gib']:.3f}"
    row = f"| ei | {wall} | {memory} | {done['cumulative_samples']} |"
    assert row in table
    # the CPU the stage ran on, with the cores this process could use (a wall time means little without)
    machine = done["machine"]
    assert machine["cpu"] and 1 <= machine["cores_used"] <= machine["cores"]
    assert f"{row} 1 | {machine_label(machine)} |" in table


TRAINING_EVAL_RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [sft, process_grpo, ei, eval]
num_train_examples: 16
num_eval_examples: 8
tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2}}
training_eval: {{eval_steps: 1, limit: 4, num_generations: 2, max_new_tokens: 8, backend: hf}}
sft: {{num_train_epochs: 1, per_device_train_batch_size: 8, gradient_checkpointing: false, max_length: 128}}
process_grpo: {{num_generations: 2, max_completion_length: 8, per_device_train_batch_size: 8, max_steps: 2,
               gradient_checkpointing: false}}
ei: {{num_rounds: 1, num_generations: 2, max_new_tokens: 8, num_train_epochs: 1,
     per_device_train_batch_size: 8, gradient_checkpointing: false, max_length: 128,
     eval_num_generations: 1, eval_temperature: 0.0, include_reference_solutions: true}}
eval: {{num_generations: 2, max_new_tokens: 8}}
"""


def test_a_recipe_switches_on_held_out_accuracy_during_every_stages_training(tmp_path):
    out, _, results = _run(tmp_path, TRAINING_EVAL_RECIPE)
    assert {"sft", "process_grpo", "ei"} <= set(results)
    steps = {"sft": [1, 2], "process_grpo": [1, 2]}
    for stage, expected in steps.items():
        report = json.loads((out / stage / "reasoning_eval" / "metrics.json").read_text())
        assert [e["step"] for e in report["evaluations"]] == expected
        assert report["num_questions"] == 4 and "pass@2" in report["evaluations"][0]["metrics"]
    drawn = [e["samples_drawn"] for e in json.loads(
        (out / "process_grpo" / "reasoning_eval" / "metrics.json").read_text())["evaluations"]]
    assert drawn == [8, 16]
    ei = json.loads((out / "ei" / "reasoning_eval" / "metrics.json").read_text())["evaluations"]
    assert ei and all(e["label"] == "round 1" and e["samples_drawn"] == 16 * 2 for e in ei)


def test_on_policy_checkpoints_fall_on_generation_boundaries():
    """A checkpoint inside a batch of completions would be resumed by sampling that batch again (the
    seed-0 comparison's resumed PPO drew 8,032 of 8,000): save steps are rounded up to whole cycles."""
    from types import SimpleNamespace

    from trl_reasoning.stages.rl import generation_aligned

    assert generation_aligned(50, SimpleNamespace(steps_per_generation=4, num_iterations=4)) == 64
    assert generation_aligned(50, SimpleNamespace(steps_per_generation=1, num_iterations=4)) == 52
    assert generation_aligned(50, SimpleNamespace(steps_per_generation=None, num_iterations=1)) == 50
    # steps_per_generation counts micro-batches: with 2 per optimizer step, a cycle is 4 * 4 / 2 = 8 steps
    assert generation_aligned(50, SimpleNamespace(steps_per_generation=4, num_iterations=4,
                                                  gradient_accumulation_steps=2)) == 56


LORA_PPO = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [ppo]
num_train_examples: 32
tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2}}
peft: {{r: 8, lora_alpha: 16, lora_dropout: 0.0, target_modules: all-linear}}
ppo:
  num_generations: 4
  max_completion_length: 12
  temperature: 1.0
  per_device_train_batch_size: 16
  learning_rate: 5.0e-3
  kl_coef: 0.05
  max_steps: 8                    # 2 rollouts of 4 PPO epochs: the second one's KL is not 0
  logging_steps: 1
  save_steps: 8
  gradient_checkpointing: false
  use_vllm: false
"""


def test_the_ppo_stage_with_lora_trains_merges_and_keeps_its_reference(tmp_path, monkeypatch):
    """The SmolLM2 rows' set-up: the PPO stage with LoRA adapters. The saved model is a plain causal LM
    (adapters merged) that differs from the start, and the KL reference is the base through
    ``disable_adapter()`` (no second model): the KL is 0 at step 0 and grows once the adapters move."""
    import torch
    from transformers import AutoModelForCausalLM

    from trl_reasoning.rewards import CorrectnessReward
    from trl_reasoning.trainers.ppo_trainer import PPOTrainer

    references = []
    kl = PPOTrainer._kl

    def recording_kl(self, *args, **kwargs):
        references.append(self.ref_model is None)  # PEFT: the adapter-disabled policy is the reference
        return kl(self, *args, **kwargs)

    monkeypatch.setattr(PPOTrainer, "_kl", recording_kl)
    # an untrained model's answers are all wrong: with an all-zero reward only the value head's noise moves
    # the policy (nothing at all with value_head_init: zero); paid 1 for each completion of odd length
    monkeypatch.setattr(CorrectnessReward, "__call__",
                        lambda reward, completions, **kw: [float(len(c) % 2) for c in completions])
    out, _, _ = _run(tmp_path, LORA_PPO)
    start = AutoModelForCausalLM.from_pretrained(out / "tiny_init")
    final = AutoModelForCausalLM.from_pretrained(out / "ppo" / "final_model")
    assert not any("lora" in name for name in final.state_dict())
    moved = [name for name, value in final.state_dict().items()
             if not torch.equal(value, start.state_dict()[name])]
    assert moved and all("layers" in name for name in moved)  # LoRA targets: the linear layers only
    assert references and all(references)
    logs = json.loads(next((out / "ppo").glob("checkpoint-*/trainer_state.json")).read_text())["log_history"]
    kls = [r["ppo/kl"] for r in logs if "ppo/kl" in r]
    assert kls[0] == 0.0 or abs(kls[0]) < 1e-6
    assert max(map(abs, kls)) > 1e-4  # k1 estimates the KL from one batch: either sign once it moves
