"""PPO's separate value model: built from the policy (or a given model), checked against the policy's
tokenizer, and kept equal on every process.

Under DDP the value model is wrapped like any model. DeepSpeed's engine trains only the policy, so
there the value model is a replica per process: rank 0's parameters are broadcast at the start and
``distributed.average_gradients`` averages each step's gradients (``PPOTrainer.compute_loss``).
"""

from __future__ import annotations

import torch
from trl.trainer.utils import disable_dropout_in_model

from ..distributed import broadcast_parameters, gathered


class PPOError(ValueError):
    """A PPO set-up or reward that cannot be trained on; the message says what was expected."""


def build_value_model(value_model, policy_ref, policy, tokenizer, accelerator, peft_config=None,
                      quantization_config=None, trust_remote_code: bool = False, zero_start: bool = False,
                      no_dropout: bool = False):
    """The value model to train: ``value_model`` (a model, folder or Hub id), else the policy's backbone
    under a new scalar head (``policy_ref`` when the policy was given by name, else ``policy``). With
    ``peft_config`` it trains as adapters of that config plus its whole head (``value_adapters``);
    ``quantization_config`` (QLoRA) loads a value model given by name quantized, as TRL loads the
    policy. ``zero_start``: a new head starts at zero (``zero_head``); ``no_dropout``: the value model's
    dropout is off (TRL's ``disable_dropout``, as for the policy)."""
    new_head = value_model is None  # the policy's backbone under a new head, not a model the user gave
    if value_model is None and isinstance(policy_ref, str):
        value_model = policy_ref
    if quantization_config is not None and peft_config is None:
        raise PPOError("value_model_peft: a quantized value model trains through adapters only (its 4-bit "
                       "weights take no gradient); set value_model_peft: true, or leave out quantization")
    if value_model is None:
        if quantization_config is not None:
            raise PPOError("quantization_config: the value model is loaded quantized from a folder or Hub "
                           "id; pass the policy (or value_model) by name, not as a model")
        value_model = value_model_like(accelerator.unwrap_model(policy))
    elif isinstance(value_model, str):
        from ..loading import load_scalar_head_model

        check_value_tokenizer(value_model, tokenizer, trust_remote_code)
        quantized = {} if quantization_config is None else {
            "quantization_config": _head_kept_whole(quantization_config), "device": str(accelerator.device)}
        value_model = load_scalar_head_model(value_model, trust_remote_code=trust_remote_code, **quantized)
    if getattr(value_model.config, "num_labels", None) != 1:
        raise PPOError("value_model: expected a token-classification model with num_labels=1")
    if value_model.config.vocab_size < len(tokenizer):
        raise PPOError(
            f"value_model: its vocabulary ({value_model.config.vocab_size}) is smaller than the policy "
            f"tokenizer's ({len(tokenizer)}); it must read the policy's token ids"
        )
    if new_head and zero_start:
        zero_head(value_model)
    if no_dropout:  # rollouts score in eval mode, the value loss trains in train mode: then one function
        disable_dropout_in_model(value_model)
    if peft_config is not None and not hasattr(value_model, "peft_config"):  # not a given PeftModel
        value_model = value_adapters(value_model, peft_config)
    value_model.train()  # same mode on every path: dropout in the value loss, eval mode at rollout time
    # on CPU in float32 (bf16 is slow there); a quantized model's 4-bit weights stay as they are
    on_cpu = accelerator.device.type == "cpu" and quantization_config is None
    prepared = accelerator.prepare_model(value_model.float() if on_cpu else value_model)
    if not isinstance(prepared, torch.nn.parallel.DistributedDataParallel):  # DeepSpeed: no DDP
        broadcast_parameters(prepared, accelerator.num_processes)  # a fresh head differs per process
    return prepared


def zero_head(value_model) -> None:
    """Start a new scalar head at V = 0 on every token (its weight and bias zeroed), instead of
    transformers' initialisation (weights of std 0.02: on SmolLM2's final hidden states, norm ~47, values
    of mean 0.5 and std 0.68 along a solution against returns of mean 0.19 in [0, 1], an explained
    variance of -3.6 at PPO's first step). The head's gradient, the features times the value error, is
    not zero, so it trains; measured, it did not make PPO learn more (``PPOConfig.value_head_init``)."""
    named = [getattr(value_model, name, None) for name in ("score", "classifier")]  # transformers' names
    heads = [m for m in named if isinstance(m, torch.nn.Linear)] or [
        m for m in value_model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
    if not heads:
        raise PPOError("value_model: found no one-output linear head to start at zero")
    with torch.no_grad():
        heads[-1].weight.zero_()
        if heads[-1].bias is not None:
            heads[-1].bias.zero_()


def _head_kept_whole(quantization_config):
    """``quantization_config`` leaving the new scalar head out: a freshly initialised layer is not in the
    checkpoint, so bitsandbytes would never quantize its weights (its forward fails), and the head trains
    whole anyway."""
    import copy

    config = copy.deepcopy(quantization_config)
    config.llm_int8_skip_modules = [*(config.llm_int8_skip_modules or []), "score", "classifier"]
    return config


def value_adapters(value_model, peft_config):
    """``value_model`` with new adapters of ``peft_config``'s kind on its backbone; the scalar head stays
    fully trained (PEFT's token-classification task keeps ``score``/``classifier`` as modules to save).
    A full copy trained with AdamW would hold four times the model's size for a LoRA run."""
    import copy

    from peft import get_peft_model

    config = copy.deepcopy(peft_config)
    config.task_type = "TOKEN_CLS"
    return get_peft_model(value_model, config)


def check_value_tokenizer(reference: str, tokenizer, trust_remote_code: bool = False) -> None:
    """The value model at ``reference`` must read the policy's token ids."""
    from ..loading import load_tokenizer

    try:
        theirs = load_tokenizer(reference, trust_remote_code=trust_remote_code)
    except Exception:  # no tokenizer saved with the value model: nothing to compare
        return
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise PPOError(f"value_model: {reference!r} uses a different tokenizer than the policy; "
                       "the value model reads the policy's token ids, so they must match")


def value_model_like(policy):
    """A value model with the policy's architecture and backbone weights (policy given as an object)."""
    from transformers import AutoModelForTokenClassification

    base = policy.get_base_model() if hasattr(policy, "peft_config") else policy  # TRL wrapped it in PEFT
    config = base.config.__class__.from_dict({**base.config.to_dict(), "num_labels": 1})
    value_model = AutoModelForTokenClassification.from_config(config)
    prefix = base.base_model_prefix
    with gathered(policy):  # ZeRO-3: the policy TRL loaded is sharded
        getattr(value_model, prefix).load_state_dict(_without_adapters(getattr(base, prefix).state_dict()))
    return value_model


def _without_adapters(state: dict) -> dict:
    """A backbone's weights with LoRA's layers taken out: ``x.base_layer.weight`` read as ``x.weight``."""
    return {k.replace(".base_layer.", "."): v for k, v in state.items() if "lora_" not in k}


def value_fingerprints(value_model, accelerator) -> list[float]:
    """Each process's sum of |value-model parameters|: equal when the replicas are."""
    total = sum(p.detach().double().abs().sum() for p in value_model.parameters())
    return accelerator.gather(total.reshape(1).to(accelerator.device)).tolist()
