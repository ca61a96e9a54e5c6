"""The SFT stage: fine-tune on a task's reference solutions with TRL's ``SFTTrainer``.

Examples are in TRL's prompt-completion format, so the loss covers the solution only
(``completion_only_loss``); chat prompts get the solution as the assistant message.
"""

from __future__ import annotations

from pathlib import Path

from ..tasks import completion_target


def sft_examples(dataset) -> list[dict]:
    """Prompt-completion pairs from schema rows that have a ``prompt`` column."""
    pairs = []
    for row in dataset:
        if isinstance(row["prompt"], str):
            pairs.append({"prompt": row["prompt"], "completion": completion_target(row["solution"])})
        else:
            pairs.append(
                {"prompt": row["prompt"], "completion": [{"role": "assistant", "content": row["solution"]}]}
            )
    return pairs


def run_sft(model, tokenizer, dataset, args, peft_config=None, callbacks=None) -> Path:
    """Train with ``SFTTrainer`` and save model + tokenizer into ``args.output_dir``; returns that folder."""
    from datasets import Dataset
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(sft_examples(dataset)),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.train()
    if peft_config is not None:
        trainer.model = trainer.model.merge_and_unload()
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
    trainer.accelerator.wait_for_everyone()
    return Path(args.output_dir)
