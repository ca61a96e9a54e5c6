"""Train outcome (ORM) and process (PRM) reward models with transformers' ``Trainer``.

The network gives one logit per token: a causal-LM backbone with a value head, or the implicit head
(``reward_models.base``). The loss is binary cross-entropy on the labelled tokens only: every
completion token (ORM, ``all``), each step's last token (ORM ``step_end``, PRM) or the last one
(``final``). Rows are tokenised once, up front, so bad data (missing labels, step labels that do not
match the steps) fails before training with one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from transformers import Trainer

from .._compat import CheckpointHooks
from ..metrics import auroc
from ..reward_models.base import (
    IGNORE_LABEL,
    RewardModelError,
    TokenRewardModel,
    prompt_as_text,
    reward_model_class,
)
from ..reward_models.data import check_reward_rows, stepwise_to_completion
from .reward_model_config import RewardModelConfig


class _PadCollator:
    """Right-pads ``input_ids`` (pad id), ``attention_mask`` (0) and ``labels`` (ignored); marks the
    completion tokens (``completion_mask``)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        batch = {
            "input_ids": torch.full((len(features), width), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(features), width), dtype=torch.long),
            "labels": torch.full((len(features), width), IGNORE_LABEL, dtype=torch.float),
            "completion_mask": torch.zeros((len(features), width), dtype=torch.long),
        }
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            batch["input_ids"][row, :n] = torch.tensor(f["input_ids"])
            batch["attention_mask"][row, :n] = 1
            batch["completion_mask"][row, f["completion_start"]:n] = 1
            batch["labels"][row, :n] = torch.tensor(f["labels"], dtype=torch.float)
        return batch


class RewardModelTrainer(CheckpointHooks, Trainer):
    """Trains an ``OutcomeRewardModel`` or ``ProcessRewardModel`` (TRL-style constructor).

    Args:
        model: a reward model, or a causal LM reference (folder / Hub id) whose backbone starts a new
            reward model of ``args.kind`` (the paper starts the ORM from the SFT policy).
        args: a ``RewardModelConfig``.
        train_dataset / eval_dataset: rows with ``prompt``, ``completion`` and ``label`` (ORM) or
            ``step_labels`` (PRM); TRL's stepwise ``completions`` + ``labels`` also works for a PRM.
        processing_class: the reward model's tokenizer (default: the model's own).
        peft_config: a PEFT config to train an adapter instead (``task_type="TOKEN_CLS"`` for the
            value head, ``"CAUSAL_LM"`` for the implicit head, whose reference stays a full copy).
        callbacks: ``transformers.TrainerCallback``s.
    """

    def __init__(self, model, args: RewardModelConfig | None = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, peft_config=None, callbacks=None, **kwargs):
        args = args or RewardModelConfig(output_dir="runs/reward_model")
        cls = reward_model_class(args.kind)
        if isinstance(model, TokenRewardModel):
            if model.kind != args.kind:
                raise RewardModelError(f"kind: args.kind is {args.kind!r} but the model is a {model.kind} "
                                       "reward model")
            self.reward_model = model
        else:
            self.reward_model = cls.from_causal_lm(
                model, args.step_delimiter, args.max_length, args.head, args.implicit_beta,
                **(args.model_init_kwargs or {}),
            )
        if processing_class is not None:
            self.reward_model.tokenizer = processing_class
        self.reward_model.step_delimiter, self.reward_model.max_length = args.step_delimiter, args.max_length
        if args.kind == "process":
            self.reward_model.aggregation = args.aggregation
        if train_dataset is None:
            raise RewardModelError("train_dataset: required (rows with prompt, completion and labels)")
        network = self.reward_model.model
        if peft_config is not None:
            from peft import get_peft_model

            if self.reward_model.head == "implicit":
                network.policy = get_peft_model(network.policy, peft_config)
            else:
                network = get_peft_model(network, peft_config)
        super().__init__(
            model=network, args=args, data_collator=_PadCollator(self.reward_model.tokenizer.pad_token_id),
            train_dataset=self._tokenise(train_dataset, args),
            eval_dataset=self._tokenise(eval_dataset, args) if eval_dataset is not None else None,
            processing_class=self.reward_model.tokenizer, callbacks=callbacks, **kwargs,
        )

    def _tokenise(self, dataset, args: RewardModelConfig):
        """Token ids and per-token labels of every row; rows with no labelled token are dropped."""
        from datasets import Dataset

        check_reward_rows(dataset.column_names, args.kind)
        rows = []
        for index, row in enumerate(dataset):
            row = stepwise_to_completion(row, args.step_delimiter)
            if not isinstance(row["completion"], str):
                raise RewardModelError(f"reward data: row {index}: 'completion' must be text, got "
                                       f"{type(row['completion']).__name__}")
            encoded = self.reward_model.encode(prompt_as_text(row["prompt"]), row["completion"])
            labels = self.reward_model.training_labels(encoded, row, args.label_positions)
            if any(label != IGNORE_LABEL for label in labels):
                rows.append(
                    {
                        "input_ids": encoded.input_ids,
                        "labels": labels,
                        "completion_start": encoded.completion_start,
                    }
                )
        if not rows:
            raise RewardModelError("reward data: no row has a labelled completion token (all completions "
                                   "empty?)")
        return Dataset.from_list(rows)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Binary cross-entropy of the token logits against the labelled tokens."""
        import torch

        labels = inputs["labels"]
        logits = self.reward_model.network_logits(
            model, inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
        )
        mask = labels != IGNORE_LABEL
        if mask.any():
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask].float(), labels[mask])
        else:
            loss = logits.sum() * 0.0
        return (loss, {"logits": logits}) if return_outputs else loss

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Save the reward model (network, tokenizer, reward-model settings), loadable with
        ``load_reward_model``; checkpoints and ``push_to_hub`` write the same. A PEFT adapter is merged
        in, except in checkpoints, which keep the adapter so that training can go on."""
        network = self.accelerator.unwrap_model(self.model)
        policy = getattr(network, "policy", network)
        if _internal_call and hasattr(policy, "merge_and_unload"):
            return super().save_model(output_dir, _internal_call)
        if self.is_world_process_zero():
            if hasattr(network, "merge_and_unload"):
                network = network.merge_and_unload()
            elif hasattr(policy, "merge_and_unload"):
                network.policy = policy.merge_and_unload()
            self.reward_model.model = network
            self.reward_model.save_pretrained(output_dir or self.args.output_dir)

    def save_weights(self, output_dir: str) -> bool:
        """Adapter checkpoints of an implicit head hold the policy's adapter only: the frozen reference
        is the starting model, rebuilt by the constructor on resume."""
        if self.reward_model.head != "implicit":
            return False
        import os

        import torch
        from transformers.trainer import TRAINING_ARGS_NAME

        if self.args.should_save:
            self.accelerator.unwrap_model(self.model).policy.save_pretrained(output_dir)
            self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
        return True

    def load_weights(self, folder: str, model=None) -> bool:
        """An implicit head resumes its policy (or the policy's adapter); the reference stays as built."""
        if self.reward_model.head != "implicit":
            return False
        resume_from_checkpoint = folder
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from ..loading import from_pretrained

        policy = self.reward_model.model.policy
        if isinstance(policy, PeftModel):
            policy.load_adapter(resume_from_checkpoint, policy.active_adapter, is_trainable=True)
        else:
            saved = from_pretrained(AutoModelForCausalLM, resume_from_checkpoint, what="checkpoint",
                                    **(self.args.model_init_kwargs or {}))
            policy.load_state_dict(saved.state_dict())
        return True

    def evaluate_samples(self, rows: Sequence[dict]) -> dict[str, float]:
        """Quality of the model on labelled samples: AUROC and accuracy of the final score against
        ``label``; with ``step_labels`` also step accuracy (threshold 0.5) and step AUROC."""
        return reward_model_quality(self.reward_model, rows)


def reward_model_quality(reward_model: TokenRewardModel, rows: Sequence[dict]) -> dict[str, float]:
    """AUROC / accuracy of final scores vs ``label``, step accuracy / AUROC vs ``step_labels``."""
    scores = reward_model.score([r["prompt"] for r in rows], [r["completion"] for r in rows])
    labels = [bool(r["label"]) for r in rows]
    finals = [s.final for s in scores]
    out = {
        "samples": len(rows),
        "positive_share": sum(labels) / max(len(labels), 1),
        "final_auroc": auroc(finals, labels),
        "final_accuracy": sum((f >= 0.5) == y for f, y in zip(finals, labels, strict=True))
        / max(len(rows), 1),
    }
    pairs = [(p, t >= 0.5) for r, s in zip(rows, scores, strict=True) if "step_labels" in r
             for p, t in zip(s.steps, r["step_labels"], strict=False)]
    if pairs:
        out["step_accuracy"] = sum((p >= 0.5) == t for p, t in pairs) / len(pairs)
        out["step_auroc"] = auroc([p for p, _ in pairs], [t for _, t in pairs])
        out["steps"] = len(pairs)
    return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in out.items()}
