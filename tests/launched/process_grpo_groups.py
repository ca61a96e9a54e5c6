"""Launched by tests/test_distributed.py (``accelerate launch --multi_gpu --num_processes 2``): one
process-supervised GRPO step whose group of 4 completions sits 2 on each process. Each process writes
the step rewards it normalised over (every process's), its own and the normalised values, to OUT/rank_N.json.

    python -m accelerate.commands.launch --multi_gpu --num_processes 2 process_grpo_groups.py MODEL OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trl_reasoning.tasks import add_prompts, load_task
from trl_reasoning.trainers import process_grpo_trainer
from trl_reasoning.trainers.process_grpo_config import ProcessGRPOConfig
from trl_reasoning.trainers.process_grpo_trainer import ProcessGRPOTrainer


class LineLengths:
    """Step rewards that differ between completions: each line's length modulo 5."""

    def step_rewards(self, prompts, completions, **kwargs):
        return [[float(len(line) % 5) for line in c.split("\n") if line.strip()] for c in completions]


def no_outcome(completions, **kwargs):
    return [0.0] * len(completions)


def main(model: str, out: Path) -> None:
    seen = {}
    normalise = process_grpo_trainer.group_normalised_step_rewards

    def recording(rows, group_size, **kwargs):
        seen["everyone"], seen["group_size"] = [list(r) for r in rows], group_size
        seen["normalised"] = normalise(rows, group_size, **kwargs)
        return seen["normalised"]

    process_grpo_trainer.group_normalised_step_rewards = recording
    score = process_grpo_trainer.weighted_step_rewards

    def scoring(*args, **kwargs):
        seen["local"] = score(*args, **kwargs)
        return seen["local"]

    process_grpo_trainer.weighted_step_rewards = scoring
    place = process_grpo_trainer.advantages_to_go

    def placing(step_rewards, *args, **kwargs):
        seen["used"] = [list(r) for r in step_rewards]  # this process's slice of the normalised group
        return place(step_rewards, *args, **kwargs)

    process_grpo_trainer.advantages_to_go = placing
    args = ProcessGRPOConfig(output_dir=str(out / "run"), learning_rate=1e-3, per_device_train_batch_size=2,
                             num_generations=4, max_completion_length=12, temperature=1.0, use_cpu=True,
                             bf16=False, report_to="none", save_strategy="no", max_steps=1, seed=0,
                             gradient_checkpointing=False, disable_tqdm=True, outcome_reward_weight=0.0)
    rows = add_prompts(load_task("arithmetic", split="train", num_examples=8)).select_columns(
        ["prompt", "answer", "solution"])
    trainer = ProcessGRPOTrainer(model=model, reward_funcs=[no_outcome], args=args, train_dataset=rows,
                                 step_reward_funcs=[LineLengths()])
    trainer.train()
    state = trainer.accelerator
    record = {**seen, "process_index": state.process_index, "num_processes": state.num_processes}
    (out / f"rank_{state.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
