"""The ``sft`` stage: TRL's ``SFTTrainer`` on the train questions' reference solutions."""

from __future__ import annotations

from pathlib import Path

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
    """Fine-tune the policy on the train questions' references; a run stopped mid-way goes on from its
    last complete checkpoint (an SFT of a real model takes an hour on a CPU core)."""
    from trl import SFTTrainer

    from .._compat import last_complete_checkpoint
    from ..loading import load_model, load_tokenizer, with_remote_code
    from ..trainers.sft import run_sft as fine_tune

    # checkpoints at every fifth of the run, two kept (as the RL stages: one whole survives a kill while
    # the next is written), so a stopped SFT goes on from the last one
    args = stage_config(_config(), ctx.recipe.section("sft"), folder, ctx.recipe.seed, section_name="sft",
                        save_strategy="steps", save_steps=0.2, save_total_limit=2,
                        report_to=ctx.recipe.report_to)
    quantization = quantization_config(ctx.recipe)
    trust = ctx.recipe.trust_remote_code
    with_remote_code(args, trust)  # the QLoRA merge reloads the policy through the trainer's args
    model = load_model(ctx.policy, device=str(ctx.state.device), quantization_config=quantization,
                       trust_remote_code=trust)
    last = last_complete_checkpoint(args.output_dir, SFTTrainer)
    done = {"questions": len(ctx.sft_train), "epochs": args.num_train_epochs,
            "resumed_from": Path(last).name if last else None}
    if quantization is not None:
        done["quantized_modules"] = quantized_modules(model)
    # QLoRA: the adapters trained on the 4-bit base are merged into the full-precision one
    merge_into = ctx.policy if quantization is not None else None
    fine_tune(model, load_tokenizer(ctx.policy, trust_remote_code=trust), ctx.sft_train, args,
              peft_config=peft_config(ctx.recipe),
              merge_into=merge_into, callbacks=training_eval_callbacks(ctx, folder, fine_tuning=True),
              resume_from_checkpoint=last)
    return done


def quantized_modules(model) -> int:
    """How many of ``model``'s linear layers hold bitsandbytes 4- or 8-bit weights."""
    return sum(type(m).__name__ in ("Linear4bit", "Linear8bitLt") for m in model.modules())


SFT = register_stage(Stage("sft", _config, run_sft, order=10, role="policy", output="",
                           help="trl.SFTConfig fields for the sft stage.",
                           title="supervised fine-tuning"))
