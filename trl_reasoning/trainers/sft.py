"""The SFT stage: fine-tune on a task's reference solutions with TRL's ``SFTTrainer``.

Examples are in TRL's prompt-completion format, so the loss covers the solution only
(``completion_only_loss``); chat prompts get the solution as the assistant message.
"""

from __future__ import annotations

from pathlib import Path

from ..tasks import TRAINING_PROMPT, completion_target


def sft_examples(dataset) -> list[dict]:
    """Prompt-completion pairs from schema rows that have a ``prompt`` column (``training_prompt``, when
    present, is the prompt trained on)."""
    pairs = []
    for row in dataset:
        prompt = row.get(TRAINING_PROMPT) or row["prompt"]
        if isinstance(prompt, str):
            pairs.append({"prompt": prompt, "completion": completion_target(row["solution"])})
        else:
            answer = [{"role": "assistant", "content": row["solution"]}]
            pairs.append({"prompt": prompt, "completion": answer})
    return pairs


def run_sft(model, tokenizer, dataset, args, peft_config=None, callbacks=None, merge_into=None,
            resume_from_checkpoint: str | None = None) -> Path:
    """Train with ``SFTTrainer`` and save model + tokenizer into ``args.output_dir``; returns that folder.

    ``merge_into`` (QLoRA: ``model`` is a quantized base): the full-precision base (folder, Hub id or
    model) the trained adapters are merged into, so the saved model is a plain full-precision one.
    ``resume_from_checkpoint``: a ``checkpoint-N`` folder of an earlier, interrupted run to go on from."""
    from datasets import Dataset
    from trl import SFTTrainer

    from ..eval_callback import bind_callbacks

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(sft_examples(dataset)),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    bind_callbacks(trainer, callbacks)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if merge_into is not None:
        trainer.model = merged_into_full_precision(trainer, merge_into, Path(args.output_dir) / "adapter")
    elif peft_config is not None:
        trainer.model = trainer.model.merge_and_unload()
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
    trainer.accelerator.wait_for_everyone()
    return Path(args.output_dir)


def merged_into_full_precision(trainer, base, adapter_folder: Path):
    """Save the trained adapters (``adapter_folder``) and merge them into the full-precision ``base`` (a
    folder or Hub id, or the model itself, merged in place): merging into the quantized base the adapters
    trained on would round the merged weights to 4 bits."""
    from peft import PeftModel

    from ..loading import load_model, trusts_remote_code

    if trainer.accelerator.is_main_process:  # every process holds the same adapters
        trainer.model.save_pretrained(adapter_folder)
    trainer.accelerator.wait_for_everyone()
    if isinstance(base, (str, Path)):
        base = load_model(str(base), device=str(trainer.accelerator.device),
                          trust_remote_code=trusts_remote_code(trainer.args))
    return PeftModel.from_pretrained(base, adapter_folder).merge_and_unload()
