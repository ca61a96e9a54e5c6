"""The ``sft`` stage: TRL's ``SFTTrainer`` on the train questions' reference solutions."""

from __future__ import annotations

from .base import (
    Stage,
    peft_config,
    quantization_config,
    register_stage,
    stage_config,
    training_eval_callbacks,
)


def _config():
    from trl import SFTConfig

    return SFTConfig


def run_sft(ctx, folder) -> dict:
    from ..loading import load_model, load_tokenizer, with_remote_code
    from ..trainers.sft import run_sft as fine_tune

    args = stage_config(_config(), ctx.recipe.section("sft"), folder, ctx.recipe.seed, section_name="sft",
                        save_strategy="no", report_to=ctx.recipe.report_to)
    quantization = quantization_config(ctx.recipe)
    trust = ctx.recipe.trust_remote_code
    with_remote_code(args, trust)  # the QLoRA merge reloads the policy through the trainer's args
    model = load_model(ctx.policy, device=str(ctx.state.device), quantization_config=quantization,
                       trust_remote_code=trust)
    done = {"questions": len(ctx.sft_train), "epochs": args.num_train_epochs}
    if quantization is not None:
        done["quantized_modules"] = quantized_modules(model)
    # QLoRA: the adapters trained on the 4-bit base are merged into the full-precision one
    merge_into = ctx.policy if quantization is not None else None
    fine_tune(model, load_tokenizer(ctx.policy, trust_remote_code=trust), ctx.sft_train, args,
              peft_config=peft_config(ctx.recipe),
              merge_into=merge_into, callbacks=training_eval_callbacks(ctx, folder, fine_tuning=True))
    return done


def quantized_modules(model) -> int:
    """How many of ``model``'s linear layers hold bitsandbytes 4- or 8-bit weights."""
    return sum(type(m).__name__ in ("Linear4bit", "Linear8bitLt") for m in model.modules())


SFT = register_stage(Stage("sft", _config, run_sft, order=10, role="policy", output="",
                           help="trl.SFTConfig fields for the sft stage.",
                           title="supervised fine-tuning"))
