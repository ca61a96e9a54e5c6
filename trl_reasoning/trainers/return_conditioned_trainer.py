"""Return-Conditioned RL (Havrilla et al., 2024, section 3.3; in the spirit of Decision Transformer).

Rounds as in Expert Iteration, but nothing is filtered away for being wrong: every distinct sampled
solution (every sample as drawn with ``deduplicate=False``) is kept with a return token, ``[GOOD]`` or
``[BAD]``, and the policy is fine-tuned on all of them, so it learns what separates the two. ``sparse``:
one tag right after the prompt, from the verifier. ``dense``: a tag at the start of every step (right
after the prompt and right after every step delimiter), from a step scorer (ORM/PRM step scores or the
heuristic) and a threshold.

Tags are conditioning, never loss targets: in sparse mode the tag ends the prompt; in dense mode the
examples are tokenised here with the tag tokens masked out of the loss. At generation time (from
round 2 on, and in evaluation) ``[GOOD]`` ends the prompt and, in dense mode, is forced after every
step delimiter (``sampling.forcing.ForcedToken``, on the hf backend and on vLLM's CPU build), so the
policy sees the same text around each tag as in training. Round 1 samples the initial policy, which has
never seen the tags.

New tag embeddings start from the mean embedding of the words "good" and "bad" (transformers' mean
resizing would give both tags nearly the same vector, and a frozen embedding under LoRA would keep
them indistinguishable). With a LoRA ``peft_config`` on a model with untied embeddings the two tag
rows are also trained (PEFT's ``trainable_token_indices``); with tied input/output embeddings (TRL's
SFT computes the loss from the LM head's weight directly, which PEFT's token wrapper breaks) they stay
frozen at those two distinct vectors and the adapters learn to read them.

Deviations: a tokenizer that merges the delimiter with the next step's first characters into one token
cannot have a tag forced there; ``vllm_server``, TRL's colocated engine and vLLM on GPUs (its V2 model
runner) do not run the forcing, so ``auto`` samples those rounds with hf.
"""

from __future__ import annotations

import dataclasses

from ..sampling.forcing import ForcedToken
from ..steps import DEFAULT_DELIMITER, split_steps
from .return_conditioned_config import ReturnConditionedConfig
from .rounds import RoundsTrainer


class ReturnConditionedTrainer(RoundsTrainer):
    """Return-conditioned RL with TRL's trainer interface.

    Args: as ``ExpertIterationTrainer`` (``args`` a ``ReturnConditionedConfig``), plus
        step_reward_func: dense tags only; a provider with ``step_scores(prompts, completions,
            **columns)`` (or ``step_rewards``) giving one score per step, compared with
            ``args.step_threshold`` (``OutcomeRewardModel``, ``ProcessRewardModel``,
            ``HeuristicStepReward``).
    """

    algorithm_name = "Return-Conditioned RL"
    algorithm_tag = "return-conditioned-rl"
    algorithm_summary = ("sample, tag every solution (or step) with its return, [GOOD] or [BAD], fine-tune "
                         "on all "
                         "of them, generate conditioned on [GOOD]")

    def __init__(
        self,
        model,
        args: ReturnConditionedConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        reward_funcs=None,
        peft_config=None,
        callbacks=None,
        step_reward_func=None,
        quantization_config=None,
    ):
        args = args or ReturnConditionedConfig(output_dir="runs/return_conditioned")
        if not isinstance(args, ReturnConditionedConfig):
            raise ValueError(f"args: expected a ReturnConditionedConfig, got {type(args).__name__}")
        if args.tag_mode == "dense" and step_reward_func is None:
            raise ValueError("step_reward_func: dense tags need a step reward provider (ORM, PRM or "
                             "HeuristicStepReward)")
        if args.tag_mode == "dense" and args.sampling_backend == "vllm_server":
            raise ValueError("sampling_backend: dense return tags are forced after every step, which a "
                             "running vllm serve does not do; use sampling_backend: vllm, auto or hf, or "
                             "tag_mode: sparse")
        super().__init__(
            model, args, train_dataset, eval_dataset, processing_class, reward_funcs, peft_config, callbacks,
            quantization_config=quantization_config,
        )
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if dataset is not None and not all(isinstance(p, str) for p in dataset["prompt"]):
                raise ValueError(f"{name}: return-conditioned RL needs plain-text prompts (the tag follows "
                                 "the prompt)")
        self.step_reward_func = step_reward_func
        self.processing_class.add_special_tokens(
            {"additional_special_tokens": [args.good_token, args.bad_token]}
        )
        self.tag_ids = [
            self.processing_class.convert_tokens_to_ids(t) for t in (args.good_token, args.bad_token)
        ]
        self._fit_embeddings(self.model)
        self.peft_config = _with_trainable_tags(peft_config, self.tag_ids, self.model)

    def prepared_base(self, model):
        """A base loaded from a checkpoint: the tags' rows (input and output embeddings) are the policy's,
        not new ones (a base loaded from the initial policy lacks them; resizing would draw new rows)."""
        import torch

        model = self._fit_embeddings(model)
        pairs = ((model.get_input_embeddings(), self.model.get_input_embeddings()),
                 (model.get_output_embeddings(), self.model.get_output_embeddings()))
        with torch.no_grad():
            for mine, policy in pairs:
                if mine is not None and policy is not None:
                    rows = policy.weight[self.tag_ids]
                    mine.weight[self.tag_ids] = rows.to(mine.weight.device, mine.weight.dtype)
        return model

    def _fit_embeddings(self, model):
        """Make room for the tags; new rows start from the words "good" / "bad" (distinct vectors)."""
        import torch

        if model.get_input_embeddings().weight.shape[0] >= len(self.processing_class):
            return model
        model.resize_token_embeddings(len(self.processing_class))
        weight = model.get_input_embeddings().weight
        with torch.no_grad():
            for tag_id, word in zip(self.tag_ids, ("good", "bad"), strict=True):
                word_ids = self.processing_class(word, add_special_tokens=False)["input_ids"]
                weight[tag_id] = weight[word_ids].mean(dim=0)
        return model

    def _reload(self, folder):
        return self._fit_embeddings(super()._reload(folder))

    def sampler_start_path(self) -> str | None:
        """Only a round checkpoint has the tag tokens; before one exists the engine starts from a copy."""
        latest = self._latest_checkpoint()
        return str(latest) if latest is not None else None

    # ------------------------------------------------------------------ conditioning at generation time

    def _conditioned(self, prompts: list[str]) -> list[str]:
        return [p + self.args.good_token for p in prompts]

    def _forcing(self) -> list:
        if self.args.tag_mode != "dense":
            return []
        return [ForcedToken(self.processing_class, self.tag_ids[0], DEFAULT_DELIMITER)]

    def sampling_prompts(self, round_index: int) -> list:
        prompts = super().sampling_prompts(round_index)
        return self._conditioned(prompts) if round_index > 1 else prompts

    def sampling_logits_processors(self, round_index: int) -> list:
        return self._forcing() if round_index > 1 else []

    # ------------------------------------------------------------------ tagging

    def training_rows(self, samples: list[dict]) -> list[dict]:
        """Every distinct non-empty sample (every one as drawn with ``deduplicate=False``), right or
        wrong, within the per-question cap (over all rounds), plus the reference solutions when asked;
        dense mode adds step tags."""
        rows = [dict(r) for r in self._select(samples, only_correct=False)]
        if self.args.tag_mode == "dense":
            self._add_step_tags(rows)
        return rows

    def _add_step_tags(self, rows: list[dict]) -> None:
        scored = [r for r in rows if not r.get("reference")]
        for row in rows:
            if row.get("reference"):  # reference solutions: every step is good
                row["step_tags"] = [True] * len(split_steps(row["completion"]))
        if not scored:
            return
        by_id = {row["id"]: row for row in self.train_dataset}
        columns = {
            key: [by_id[r["id"]][key] for r in scored]
            for key in self.train_dataset.column_names
            if key != "prompt"
        }
        prompts = [by_id[r["id"]]["prompt"] for r in scored]
        scorer = getattr(self.step_reward_func, "step_scores", None) or self.step_reward_func.step_rewards
        scores = scorer(prompts, [r["completion"] for r in scored], **columns)
        for row, steps in zip(scored, scores, strict=True):
            if len(steps) != len(split_steps(row["completion"])):
                raise ValueError("step_reward_func: returned a step count that does not match the "
                                 "completion's steps")
            row["step_tags"] = [bool(r >= self.args.step_threshold) for r in steps]

    def _tag(self, good: bool) -> str:
        return self.args.good_token if good else self.args.bad_token

    def training_pair(self, prompt, row: dict) -> dict:
        if self.args.tag_mode == "sparse":
            return {"prompt": prompt + self._tag(row["correct"]), "completion": row["completion"]}
        return self._dense_example(prompt, row)

    def tagged_text(self, completion: str, step_tags: list[bool]) -> str:
        """``completion`` with a tag at the start of every step: at position 0 and right after every
        delimiter followed by more text (a blank line takes the next step's tag)."""
        steps = split_steps(completion, DEFAULT_DELIMITER)
        if len(steps) != len(step_tags):
            raise ValueError(f"step_tags: {len(step_tags)} tags for {len(steps)} steps")
        if not steps:
            return completion
        starts = [0] + [i + len(DEFAULT_DELIMITER) for i in _find_all(completion, DEFAULT_DELIMITER)]
        starts = [s for s in starts if completion[s:].strip()]
        pieces, last = [], 0
        for start in starts:
            owner = next(i for i, step in enumerate(steps) if step.end > start)
            pieces += [completion[last:start], self._tag(step_tags[owner])]
            last = start
        return "".join(pieces) + completion[last:]

    def _dense_example(self, prompt: str, row: dict) -> dict:
        """A tokenised SFT example (TRL skips its own tokenisation for these): prompt + tagged
        completion + EOS, with the loss on the completion's text tokens only (tags masked)."""
        tokenizer = self.processing_class
        completion = self.tagged_text(row["completion"], row["step_tags"])
        encoded = tokenizer(prompt + completion, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        mask = [int(start >= len(prompt) and end > start and token not in self.tag_ids)
                for token, (start, end) in zip(ids, encoded["offset_mapping"], strict=True)]
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
            mask.append(1)
        return {"input_ids": ids, "completion_mask": mask}

    # ------------------------------------------------------------------ records and evaluation

    def _train_stats(self, samples: list[dict], kept: list[dict]) -> dict:
        """EI's statistics plus the good/bad balance of the rows this round added."""
        stats = super()._train_stats(samples, kept)
        if self.args.tag_mode == "dense":
            tags = [t for r in kept for t in r.get("step_tags", [])]
        else:
            tags = [bool(r["correct"]) for r in kept]
        stats["good_rows" if self.args.tag_mode == "sparse" else "good_steps"] = sum(tags)
        stats["good_fraction"] = sum(tags) / len(tags) if tags else 0.0
        return stats

    def _evaluate(self, dataset=None, greedy_only: bool = False, logits_processors=()) -> dict:
        if dataset is not None or self.eval_dataset is None or not self._conditioned_next_eval():
            return super()._evaluate(dataset, greedy_only, logits_processors)
        questions = self.prompted(self.eval_dataset)
        good = questions.map(lambda row: {"prompt": row["prompt"] + self.args.good_token})
        metrics = super()._evaluate(good, logits_processors=self._forcing())
        if self.args.eval_unconditioned:
            plain = super()._evaluate(questions, greedy_only=True)
            metrics["unconditioned/maj@1"] = plain["maj@1"]
        return metrics

    def _conditioned_next_eval(self) -> bool:
        """Evaluations after the first fine-tuning condition on the good tag (round 0 does not)."""
        return bool(self.history)


def _find_all(text: str, needle: str) -> list[int]:
    found, start = [], text.find(needle)
    while start >= 0:
        found.append(start)
        start = text.find(needle, start + len(needle))
    return found


def _with_trainable_tags(peft_config, tag_ids: list[int], model):
    """A LoRA config whose embedding rows of the tags are trained (PEFT ``trainable_token_indices``)
    when the model's input and output embeddings are untied; other PEFT methods are refused."""
    if peft_config is None:
        return None
    from peft import LoraConfig

    if not isinstance(peft_config, LoraConfig):
        raise ValueError("peft_config: return-conditioned RL supports LoRA only (its return tags need a "
                         "trained "
                         f"or distinct embedding), got {type(peft_config).__name__}")
    tied = model.get_output_embeddings() is not None and (
        model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr())
    if tied or "embed_tokens" in (peft_config.modules_to_save or []):
        return peft_config
    indices = peft_config.trainable_token_indices
    if isinstance(indices, dict):
        raise ValueError("peft_config: trainable_token_indices given per layer; pass a list so the return "
                         "tags "
                         "can be added to it")
    merged = sorted(set(indices or []) | set(tag_ids))
    return dataclasses.replace(peft_config, trainable_token_indices=merged)
