"""QLoRA on CPU (bitsandbytes' CPU backend): the sft stage trains LoRA adapters on a 4-bit NF4 base and
merges them into the full-precision base; the saved model is a plain one that fits the data better."""

from __future__ import annotations

import json

import pytest

from trl_reasoning.errors import RecipeError
from trl_reasoning.pipeline import run_recipe
from trl_reasoning.recipes import load_recipe

RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [sft]
num_train_examples: 64
num_eval_examples: 8
tiny: {{hidden_size: 64, num_layers: 2, num_heads: 2}}
peft: {{r: 8, lora_alpha: 16, target_modules: all-linear}}
quantization: {{load_in_4bit: true, bnb_4bit_quant_type: nf4, bnb_4bit_compute_dtype: float32}}
sft: {{num_train_epochs: 3, per_device_train_batch_size: 16, learning_rate: 5.0e-3,
       gradient_checkpointing: false, max_length: 128}}
"""


def _solution_loss(folder, rows) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from trl_reasoning.loading import load_tokenizer
    from trl_reasoning.trainers.sft import sft_examples

    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder).eval(), load_tokenizer(str(folder))
    losses = []
    for pair in sft_examples(rows):
        prompt = tokenizer(pair["prompt"])["input_ids"]
        ids = tokenizer(pair["prompt"] + pair["completion"])["input_ids"]
        labels = [-100] * len(prompt) + ids[len(prompt):]
        with torch.no_grad():
            losses.append(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item())
    return sum(losses) / len(losses)


def test_qlora_trains_adapters_on_a_4bit_base_and_merges_them_into_the_full_one(tmp_path):
    pytest.importorskip("bitsandbytes", reason="no bitsandbytes (pip install -e '.[quantization]')")
    from trl_reasoning.tasks import add_prompts, load_task

    out = tmp_path / "run"
    path = tmp_path / "qlora.yaml"
    path.write_text(RECIPE.format(out=out))
    run_recipe(load_recipe(path))
    done = json.loads((out / "sft" / "stage_complete.json").read_text())
    assert done["quantized_modules"] == 14  # 2 layers x 7 linear layers in 4 bits; the head stays full
    assert (out / "sft" / "adapter" / "adapter_config.json").exists()
    assert "quantization_config" not in json.loads((out / "sft" / "config.json").read_text())  # plain
    rows = add_prompts(load_task("arithmetic", split="train", num_examples=64).select(range(16)))
    assert _solution_loss(out / "sft", rows) < _solution_loss(out / "tiny_init", rows) - 0.2


def test_quantization_without_peft_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(RECIPE.format(out=tmp_path / "run").replace("peft:", "# peft:"))
    with pytest.raises(RecipeError, match="'quantization' \\(QLoRA\\) needs a 'peft' section"):
        load_recipe(path)


RL_RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [ei, ppo]
num_train_examples: 32
num_eval_examples: 8
tiny: {{hidden_size: 64, num_layers: 2, num_heads: 2}}
peft: {{r: 8, lora_alpha: 16, lora_dropout: 0.0, target_modules: all-linear}}
quantization: {{load_in_4bit: true, bnb_4bit_quant_type: nf4, bnb_4bit_compute_dtype: float32}}
ei:
  num_rounds: 1
  num_generations: 2
  max_new_tokens: 16
  num_train_epochs: 3
  per_device_train_batch_size: 16
  learning_rate: 5.0e-3
  gradient_checkpointing: false
  max_length: 128
  eval_num_generations: 1
  include_reference_solutions: true   # an untrained model solves nothing: the round trains on these
  sampling_backend: hf
ppo:
  num_generations: 4
  max_completion_length: 12
  temperature: 1.0
  per_device_train_batch_size: 16
  learning_rate: 5.0e-3
  max_steps: 4
  save_steps: 4
  gradient_checkpointing: false
  use_vllm: false
"""


def test_qlora_in_an_ei_round_and_in_ppo_trains_on_4bit_weights_and_saves_a_plain_model(tmp_path,
                                                                                       monkeypatch):
    """The ``quantization`` key reaches the RL stages: the EI round's fine-tune and PPO's policy and value
    model train adapters on NF4 weights; each stage's adapters are merged into the full-precision policy,
    so its saved model reloads without a ``quantization_config``. The EI round's merged policy fits its
    kept solutions better than its start did, and PPO's differs from the EI policy."""
    pytest.importorskip("bitsandbytes", reason="no bitsandbytes (pip install -e '.[quantization]')")
    import torch
    from bitsandbytes.nn import Params4bit
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from trl_reasoning.rewards import CorrectnessReward
    from trl_reasoning.tasks import add_prompts, load_task
    from trl_reasoning.trainers.ppo_trainer import PPOTrainer

    def quantized_modules(model) -> int:  # weights in 4 bits (PEFT's wrappers show each one twice)
        return sum(isinstance(p, Params4bit) for p in model.parameters())

    trained_on = {}
    sft_train, ppo_train = SFTTrainer.train, PPOTrainer.train

    def sft_spy(self, *args, **kwargs):
        trained_on["ei"] = quantized_modules(self.model)
        return sft_train(self, *args, **kwargs)

    def ppo_spy(self, *args, **kwargs):
        trained_on["ppo"] = quantized_modules(self.model)
        trained_on["ppo value"] = quantized_modules(self.value_model)
        # an untrained model's answers are all wrong: with an all-zero reward only the value head's noise
        # moves the policy (nothing at all with value_head_init: zero); paid 1 per odd-length completion
        monkeypatch.setattr(CorrectnessReward, "__call__",
                            lambda reward, completions, **kw: [float(len(c) % 2) for c in completions])
        return ppo_train(self, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "train", sft_spy)
    monkeypatch.setattr(PPOTrainer, "train", ppo_spy)
    out = tmp_path / "run"
    path = tmp_path / "qlora_rl.yaml"
    path.write_text(RL_RECIPE.format(out=out))
    run_recipe(load_recipe(path))
    assert trained_on == {"ei": 14, "ppo": 14, "ppo value": 14}  # 2 layers x 7 linear layers, each run
    ei_model, ppo_model = out / "ei" / "round_001" / "checkpoint", out / "ppo" / "final_model"
    for folder in (ei_model, ppo_model):
        assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert (out / "ei" / "round_001" / "adapter" / "adapter_config.json").exists()
    assert (out / "ppo" / "adapter" / "adapter_config.json").exists()
    rows = add_prompts(load_task("arithmetic", split="train", num_examples=32).select(range(16)))
    assert _solution_loss(ei_model, rows) < _solution_loss(out / "tiny_init", rows) - 0.2
    init, start, final = (AutoModelForCausalLM.from_pretrained(f).state_dict()
                          for f in (out / "tiny_init", ei_model, ppo_model))
    assert any(not torch.equal(final[name], value) for name, value in start.items() if "layers" in name)
    # each stage's adapters were merged into the full-precision policy it started from (both RL stages
    # start from the recipe's initial policy), not into a dequantized 4-bit copy: each projection moved
    # by one LoRA product (rank <= r = 8), where 4-bit rounding would have moved it at full rank
    projections = [n for n in init if n.endswith("proj.weight")]
    for stage, after in (("ei", start), ("ppo", final)):
        ranks = [int(torch.linalg.matrix_rank(after[n] - init[n])) for n in projections]
        assert projections and 0 < max(ranks) <= 8, (stage, ranks)


def test_a_quantized_value_model_without_adapters_is_one_line():
    from transformers import BitsAndBytesConfig

    from trl_reasoning.trainers.value_model import PPOError, build_value_model

    with pytest.raises(PPOError, match="value_model_peft: a quantized value model trains through adapters"):
        build_value_model("unused", "unused", None, None, None, peft_config=None,
                          quantization_config=BitsAndBytesConfig(load_in_4bit=True))


def test_quantization_under_deepspeed_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("bitsandbytes", reason="no bitsandbytes (pip install -e '.[quantization]')")
    from trl_reasoning.stages.base import quantization_config

    path = tmp_path / "q.yaml"
    path.write_text(RECIPE.format(out=tmp_path / "run"))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(RecipeError, match=r"does not run under DeepSpeed here \(the launch uses DeepSpeed"):
        quantization_config(load_recipe(path))
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    path.write_text(RECIPE.format(out=tmp_path / "run").replace("sft: {", "sft: {deepspeed: zero2.json, "))
    with pytest.raises(RecipeError, match="'sft.deepspeed' is set"):
        quantization_config(load_recipe(path))


RCRL_RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [rcrl]
num_train_examples: 32
num_eval_examples: 8
tiny: {{hidden_size: 64, num_layers: 2, num_heads: 2, tie_word_embeddings: false}}  # LoRA trains the tag rows
peft: {{r: 8, lora_alpha: 16, lora_dropout: 0.0, target_modules: all-linear}}
quantization: {{load_in_4bit: true, bnb_4bit_quant_type: nf4, bnb_4bit_compute_dtype: float32}}
rcrl:
  num_rounds: 1
  num_generations: 2
  max_new_tokens: 16
  num_train_epochs: 1
  per_device_train_batch_size: 16
  learning_rate: 5.0e-3
  gradient_checkpointing: false
  max_length: 128
  eval_num_generations: 1
  include_reference_solutions: true
  stop_when_no_new_solutions: false
  sampling_backend: hf
"""


def test_qlora_in_rcrl_rounds_trains_on_4bit_weights_whose_tag_rows_are_the_policys(tmp_path, monkeypatch):
    """An RCRL round under ``quantization`` trains adapters on an NF4 copy of the round's starting policy
    (for round 1 the initial model, which has no tag rows: resizing draws new ones). The copy's tag rows,
    input and output (untied here), are the in-memory policy's, and the merged round reloads as a plain
    model. (Later rounds load the previous round's checkpoint, which has the policy's rows already.)"""
    pytest.importorskip("bitsandbytes", reason="no bitsandbytes (pip install -e '.[quantization]')")
    import torch
    from bitsandbytes.nn import Params4bit

    from trl_reasoning.trainers.return_conditioned_trainer import ReturnConditionedTrainer

    checks = []
    original = ReturnConditionedTrainer._quantized_base

    def spy(self):
        base = original(self)
        rows = [(layer(base), layer(self.model)) for layer in (lambda m: m.get_input_embeddings(),
                                                               lambda m: m.get_output_embeddings())]
        same = all(torch.equal(mine.weight[self.tag_ids].float(), policy.weight[self.tag_ids].float())
                   for mine, policy in rows)
        checks.append((sum(isinstance(p, Params4bit) for p in base.parameters()), same))
        return base

    monkeypatch.setattr(ReturnConditionedTrainer, "_quantized_base", spy)
    out = tmp_path / "run"
    path = tmp_path / "qlora_rcrl.yaml"
    path.write_text(RCRL_RECIPE.format(out=out))
    run_recipe(load_recipe(path))
    assert checks == [(14, True)]  # 2 layers x 7 linear layers in 4 bits
    folder = out / "rcrl" / "round_001" / "checkpoint"
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
