"""The project's own models under DeepSpeed ZeRO-3, where a trained module's parameters are shards.

Models this project loads are whole on every process (``whole_models``): sampling with
``transformers.generate``, vLLM weight reloads and ``save_pretrained`` all need the full weights, and a
DeepSpeed engine partitions what it trains when training starts. After a ZeRO-3 fine-tune, ``whole_copy``
gathers the shards back into a plain model. A model trained outside DeepSpeed's engine (PPO's separate
value model) is replicated: ``broadcast_parameters`` starts the replicas equal and ``average_gradients``
keeps them so.
"""

from __future__ import annotations

import contextlib


def zero3_enabled() -> bool:
    """True while a DeepSpeed ZeRO-3 config is live (an accelerate launch with a zero3 config)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


def deepspeed_enabled() -> bool:
    """True in a process accelerate launched with a DeepSpeed config (any ZeRO stage)."""
    import os

    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def whole_models():
    """Context in which ``from_pretrained`` loads whole models, not ZeRO-3 shards."""
    from ._compat import zero3_init_disabled

    return zero3_init_disabled() if zero3_enabled() else contextlib.nullcontext()


def is_partitioned(module) -> bool:
    """True when ``module`` holds ZeRO-3 parameter shards."""
    parameters = getattr(module, "parameters", None)  # test doubles of a policy may have none
    return parameters is not None and any(hasattr(p, "ds_id") for p in parameters())


@contextlib.contextmanager
def gathered(module):
    """Full parameters of a ZeRO-3 ``module`` inside the block (a collective: enter it on every
    process); a plain module (or ``None``) is left as it is."""
    params = [] if module is None else [p for p in module.parameters() if hasattr(p, "ds_id")]
    if not params:
        yield module
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params):
        yield module


def whole_copy(model):
    """A plain copy of a ZeRO-3 trained transformers model (every process gets one); ``model`` itself
    when it is not partitioned."""
    if not is_partitioned(model):
        return model
    from transformers import AutoModelForCausalLM

    with gathered(model):
        state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    with whole_models():
        copy = AutoModelForCausalLM.from_config(model.config, dtype=next(iter(state.values())).dtype)
    copy.load_state_dict(state)
    return copy.to(next(iter(state.values())).device)


def broadcast_parameters(module, num_processes: int) -> None:
    """Give every process rank 0's parameters (what DDP does when it wraps a module)."""
    import torch.distributed as dist

    if num_processes < 2 or not dist.is_initialized():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def average_gradients(module, num_processes: int) -> None:
    """Average ``module``'s gradients over the processes (a module no DDP or DeepSpeed wrapper syncs)."""
    import torch.distributed as dist

    if num_processes < 2 or not dist.is_initialized():
        return
    for param in module.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= num_processes


def world(state) -> dict:
    """How many processes ran something, and how: ``distributed_type`` NO, MULTI_CPU, DEEPSPEED, ..."""
    kind = str(state.distributed_type).split(".")[-1]
    return {"num_processes": state.num_processes, "distributed_type": kind}
