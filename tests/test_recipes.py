import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_file

from trl_reasoning.cli import EvalArguments, SampleArguments, main
from trl_reasoning.evaluation import EvalSettings
from trl_reasoning.recipes import Recipe, RecipeError, load_recipe, parse_overrides
from trl_reasoning.trainers import (
    ExpertIterationConfig,
    PPOConfig,
    ReturnConditionedConfig,
    RewardModelConfig,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: tiny\nnum_round: 3\n", "unknown key 'num_round'; valid keys:"),
        ("model: tiny\nei: {num_round: 3}\n", "unknown key 'ei.num_round'; valid keys:"),
        ("model: tiny\nei: {num_rounds: three}\n", "'ei.num_rounds' must be int, got 'three'"),
        ("model: tiny\nseed: 1.5\n", "'seed' must be int, got 1.5"),
        ("task: gsm8k\n", "missing key 'model'"),
        ("model: tiny\nstages: [sft, rl]\n", "'stages' has unknown stage(s) ['rl']"),
        ("model: ./no/such/model\n", "model: path './no/such/model' does not exist"),
        ("model: tiny\ntask: gsm9k\n", "'task' must be one of"),
        ("model: tiny\ntiny: {width: 3}\n", "unknown key 'tiny.width'"),
        ("model: tiny\neval: {num_generations: 0}\n", None),  # validated when the stage config is built
        ("model: [unclosed\n", "is not valid YAML"),
        ("model: tiny\norm: {label_positions: 3}\n", "'orm.label_positions' must be str, got 3"),
        ("model: tiny\nreward_model: ./no/such/orm\n", "reward_model: model: path './no/such/orm' does not "
                                                       "exist"),
        ("model: tiny\nstages: [ppo, eval]\nppo: {dense_rewards: [orm]}\n",
         "'ppo.dense_rewards' uses 'orm' but the recipe has no orm stage and no 'reward_model'"),
        ("model: tiny\nstages: [rcrl]\nrcrl: {tag_mode: dense}\n", "'rcrl.tag_mode: dense' needs "
                                                                   "'rcrl.step_reward'"),
        ("model: tiny\nppo: {dense_rewards: [./no/rm]}\n", "'ppo.dense_rewards': model: path './no/rm' does "
                                                           "not exist"),
    ],
)
def test_bad_recipes_fail_with_one_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    if message is None:
        load_recipe(path)
        return
    with pytest.raises(RecipeError, match=None) as info:
        load_recipe(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_recipe_exits_nonzero_without_traceback(tmp_path):
    path = _write(tmp_path, "model: tiny\nei: {num_rounds: three}\n")
    done = subprocess.run(
        [sys.executable, "-m", "trl_reasoning", "train", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip().splitlines()[-1]
        == "trl-reasoning: error: recipe: 'ei.num_rounds' must be int, got 'three'"
    )


def test_overrides(tmp_path):
    path = _write(tmp_path, "model: tiny\nei: {num_rounds: 3}\n")
    recipe = load_recipe(
        path, parse_overrides(["--ei.num_rounds", "2", "--task=svamp", "--stages", "[sft, eval]"])
    )
    assert recipe.ei == {"num_rounds": 2} and recipe.task == "svamp" and recipe.stages == ["sft", "eval"]
    for text, stages in (("ei", ["ei"]), ("sft,ei", ["sft", "ei"]), ("sft, eval", ["sft", "eval"])):
        assert load_recipe(path, parse_overrides(["--stages", text])).stages == stages
    with pytest.raises(RecipeError, match="has no value"):
        parse_overrides(["--task"])
    with pytest.raises(RecipeError, match="unknown key 'ei.bogus'"):
        load_recipe(path, parse_overrides(["--ei.bogus", "1"]))


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path):
    text = path.read_text()
    for data in re.findall(r"\.\./shared/data/([\w./-]*\w)", text):
        shared_file(data)  # the real data beside the checkout: skip (or fail in CI) without it
    recipe = load_recipe(path) if "tiny" in text else None
    if recipe is None:  # Hub and pip models: validate everything but the model reference
        recipe = load_recipe(path, [("model", "tiny")])
    assert recipe.stages


@pytest.mark.parametrize(
    "config_cls",
    [
        ExpertIterationConfig,
        RewardModelConfig,
        PPOConfig,
        ReturnConditionedConfig,
        Recipe,
        EvalArguments,
        SampleArguments,
        EvalSettings,
    ],
)
def test_every_field_has_help(config_cls):
    from transformers import TrainingArguments
    from trl import SFTConfig

    own = dataclasses.fields(config_cls)
    from trl import GRPOConfig

    base = {ExpertIterationConfig: SFTConfig, RewardModelConfig: TrainingArguments, PPOConfig: GRPOConfig,
            ReturnConditionedConfig: ExpertIterationConfig}.get(config_cls)
    if base is not None:
        inherited = {f.name for f in dataclasses.fields(base)}
        own = [f for f in own if f.name not in inherited]
    missing = [f.name for f in own if not f.metadata.get("help")]
    assert not missing


def test_use_vllm_auto_is_a_ppo_value_only(tmp_path, tiny_model_dir):
    from trl_reasoning.stages import resolve_use_vllm

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: tiny\ntask: arithmetic\nstages: [ppo]\nppo: {use_vllm: auto}\n")
    assert load_recipe(str(recipe)).ppo["use_vllm"] == "auto"
    recipe.write_text("model: tiny\ntask: arithmetic\nstages: [ppo]\nppo: {use_vllm: maybe}\n")
    with pytest.raises(RecipeError, match="'ppo.use_vllm' must be bool"):
        load_recipe(str(recipe))
    # auto: TRL's colocated engine only where vLLM is installed and serves the model (head size 16: never)
    assert resolve_use_vllm("auto", str(tiny_model_dir)) is False
    assert resolve_use_vllm(True, str(tiny_model_dir)) is True
    assert resolve_use_vllm(False, str(tiny_model_dir)) is False


def test_eval_settings_fields_are_recipe_keys():
    assert {f.name for f in dataclasses.fields(EvalSettings)} >= {
        "num_generations",
        "temperature",
        "batch_size",
    }


def test_help_renders(capsys):
    from transformers import HfArgumentParser

    HfArgumentParser(ExpertIterationConfig).format_help()
    HfArgumentParser(RewardModelConfig).format_help()
    HfArgumentParser(PPOConfig).format_help()
    HfArgumentParser(ReturnConditionedConfig).format_help()
    main(["train", "--help"])
    assert "usage: trl-reasoning train" in capsys.readouterr().out


CUSTOM_CONFIG = """from transformers import Qwen2Config


class CustomConfig(Qwen2Config):
    model_type = "trl_reasoning_custom"
"""
CUSTOM_MODEL = """from transformers import Qwen2ForCausalLM

from .configuration_custom import CustomConfig


class CustomForCausalLM(Qwen2ForCausalLM):
    config_class = CustomConfig
"""


def _custom_code_model(folder: Path) -> Path:
    """A tiny model whose config and class live in its own folder (loaded only with trust_remote_code)."""
    from trl_reasoning.tiny import make_tiny_model

    make_tiny_model(folder, hidden_size=32, num_layers=1, num_heads=2)
    (folder / "configuration_custom.py").write_text(CUSTOM_CONFIG)
    (folder / "modeling_custom.py").write_text(CUSTOM_MODEL)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="trl_reasoning_custom", architectures=["CustomForCausalLM"],
                  auto_map={"AutoConfig": "configuration_custom.CustomConfig",
                            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_remote_code_runs_only_where_a_load_asks_for_it(tmp_path):
    """No module state: each load says whether the model's own code may run (loaders' keyword, the
    recipe key in stages, TRL's model_init_kwargs in trainers), and a refusal is one line naming them."""
    from datasets import Dataset

    from trl_reasoning.loading import ModelLoadError, load_model, resolve, runs_remote_code
    from trl_reasoning.pipeline import run_context
    from trl_reasoning.recipes import Recipe, load_recipe
    from trl_reasoning.stages.sft import run_sft
    from trl_reasoning.tiny import make_tiny_model
    from trl_reasoning.trainers import ExpertIterationConfig, ExpertIterationTrainer

    assert Recipe(model="tiny").trust_remote_code is False
    assert "trust_remote_code" not in resolve("some-org/some-model")[1]
    assert resolve("some-org/some-model", trust_remote_code=True)[1] == {"trust_remote_code": True}
    folder = _custom_code_model(tmp_path / "custom")
    refusal = "ships its own modelling code.*trust_remote_code: true"
    with pytest.raises(ModelLoadError, match=refusal) as refused:
        load_model(str(folder))
    assert "\n" not in str(refused.value)
    assert runs_remote_code(load_model(str(folder), trust_remote_code=True))
    plain = make_tiny_model(tmp_path / "plain", hidden_size=32, num_layers=1, num_heads=2)
    assert not runs_remote_code(load_model(str(plain), trust_remote_code=True))  # transformers' own class
    rows = Dataset.from_list([{"id": "q1", "prompt": "Question: 1 + 2?\nAnswer:", "answer": "3",
                              "solution": "1 + 2 = 3"}])
    args = dict(output_dir=str(tmp_path / "ei"), num_rounds=1, report_to=[], bf16=False)
    with pytest.raises(ModelLoadError, match="model_init_kwargs"):
        ExpertIterationTrainer(str(folder), args=ExpertIterationConfig(**args), train_dataset=rows)
    trainer = ExpertIterationTrainer(str(folder), train_dataset=rows, args=ExpertIterationConfig(
        **args, model_init_kwargs={"trust_remote_code": True}))
    assert runs_remote_code(trainer.model)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(f"model: {folder}\ntask: arithmetic\noutput_dir: {tmp_path / 'run'}\n"
                           "stages: [sft]\nnum_train_examples: 8\nnum_eval_examples: 4\n"
                           "sft: {max_steps: 1, per_device_train_batch_size: 4, report_to: []}\n")
    recipe = load_recipe(recipe_file)
    with pytest.raises(ModelLoadError, match="trust_remote_code: true in the recipe"):
        run_sft(run_context(recipe), tmp_path / "run" / "sft")
    trusted = load_recipe(recipe_file, [("trust_remote_code", "true")])
    run_sft(run_context(trusted), tmp_path / "run" / "sft")
    saved = json.loads((tmp_path / "run" / "sft" / "config.json").read_text())
    assert saved["model_type"] == "trl_reasoning_custom"


def test_help_describes_commands_and_recipe_sections_without_heavy_imports():
    """Help is built before torch, transformers or TRL load (that is what made it take 5-7 s)."""
    code = (
        "import sys, io, contextlib\n"
        "from trl_reasoning.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['eval', '--help'], ['sample', '--help']):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        main(argv)\n"
        "    print('=====', ' '.join(argv)); print(out.getvalue())\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') if m in "
        "sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "HEAVY []" in out
    overview = out.split("===== --help")[1].split("=====")[0]
    assert all(f"  {name}" in overview for name in ("train", "eval", "sample"))
    train = out.split("===== train --help")[1].split("=====")[0]
    assert "recipe keys:" in train and "stage sections" in train and "README.md, section 'Recipes'" in train
    assert all(f"  {stage}" in train for stage in ("sft", "ei", "ppo", "rcrl", "orm", "prm", "eval"))
    evaluation = out.split("===== eval --help")[1].split("=====")[0]
    assert "--num_generations" in evaluation and "(default: 8)" in evaluation
    assert all(line.count("(default:") <= 1 for line in evaluation.split("  --")), evaluation


def test_missing_model_names_the_recipe_that_makes_it(tmp_path):
    (tmp_path / "first.yaml").write_text(f"model: tiny\noutput_dir: {tmp_path}/runs/first\n")
    second = tmp_path / "second.yaml"
    second.write_text(f"model: {tmp_path}/runs/first/sft\ntask: gsm8k\n")
    with pytest.raises(RecipeError, match=r"does not exist; .*first.yaml makes it: run 'trl-reasoning train"):
        load_recipe(second)


def test_a_recipe_over_a_base_states_only_what_it_changes(tmp_path):
    """``base:``: top-level keys replace the base's, sections merge key by key, overrides apply last."""
    (tmp_path / "base.yaml").write_text(
        "model: tiny\ntask: arithmetic\nstages: [sft, ei, eval]\nnum_train_examples: 300\n"
        "sft: {learning_rate: 1.0e-3, num_train_epochs: 3}\nei: {num_rounds: 2}\n")
    (tmp_path / "child.yaml").write_text(
        f"base: base.yaml\noutput_dir: {tmp_path / 'run'}\nnum_train_examples: 50\n"
        "sft: {num_train_epochs: 6}\n")
    recipe = load_recipe(tmp_path / "child.yaml", parse_overrides(["--ei.num_rounds", "5"]))
    assert recipe.num_train_examples == 50 and recipe.task == "arithmetic"
    assert recipe.section("sft") == {"learning_rate": 1.0e-3, "num_train_epochs": 6}
    assert recipe.section("ei") == {"num_rounds": 5}


def test_a_cycle_of_bases_fails_in_one_line(tmp_path):
    (tmp_path / "r.yaml").write_text("base: r.yaml\nmodel: tiny\n")
    with pytest.raises(RecipeError, match="a cycle of bases"):
        load_recipe(tmp_path / "r.yaml")
    (tmp_path / "a.yaml").write_text("base: b.yaml\nmodel: tiny\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ntask: arithmetic\n")
    with pytest.raises(RecipeError, match="a cycle of bases"):
        load_recipe(tmp_path / "a.yaml")


@pytest.mark.parametrize("bf16_units, section, warns", [
    (False, {"bf16": True}, True), (True, {"bf16": True}, False), (False, {}, False)])
def test_bf16_on_a_cpu_without_bf16_kernels_warns_naming_the_field(monkeypatch, tmp_path, bf16_units,
                                                                    section, warns):
    """On an AVX2 CPU bf16 matmuls ran ~100x slower than float32 and a SmolLM2 PPO step in bf16 did not
    finish in 15 minutes (benchmarks/ppo_step_profile.py): a stage asked for bf16 on a CPU without bf16
    units says so in one line naming the recipe key; a CPU with them and the CPU default (bf16 off) stay
    quiet."""
    import platform
    import warnings

    import torch
    from trl import SFTConfig

    from trl_reasoning.sampling import vllm_backend
    from trl_reasoning.stages.base import stage_config

    monkeypatch.setattr(vllm_backend, "cpu_has_native_bf16", lambda: bf16_units)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stage_config(SFTConfig, section, tmp_path, 0, section_name="sft")
    messages = [str(w.message) for w in caught if "bf16" in str(w.message)]
    assert len(messages) == int(warns), messages
    if warns:
        assert messages[0].startswith("sft.bf16: true on a CPU without bf16 units (AMX, AVX512-BF16)")
        assert "\n" not in messages[0]
