"""Return-Conditioned RL (Havrilla et al., 2024, section 3.3; in the spirit of Decision Transformer).

Rounds as in Expert Iteration, but nothing is filtered away: every sampled solution is kept with a
return token, ``[GOOD]`` or ``[BAD]``, and the policy is fine-tuned on all of them, so it learns what
separates the two. ``sparse``: one tag after the prompt, from the verifier. ``dense``: a tag before
every step, from a step reward provider (ORM/PRM step scores or the heuristic) and a threshold.
From round 2 on, sampling and evaluation condition on ``[GOOD]``; round 1 samples the initial policy,
which has never seen the tags.

Deviations: with dense tags only the first step's tag is forced at generation time; the policy writes
the later ones itself (the tokens are special, so they are not part of the decoded text).
"""

from __future__ import annotations

from ..steps import split_steps
from .expert_iteration_trainer import ExpertIterationTrainer, normalise_solution
from .return_conditioned_config import ReturnConditionedConfig


class ReturnConditionedTrainer(ExpertIterationTrainer):
    """Return-conditioned RL with TRL's trainer interface.

    Args: as ``ExpertIterationTrainer`` (``args`` a ``ReturnConditionedConfig``), plus
        step_reward_func: dense tags only; a provider with ``step_rewards(prompts, completions,
            **columns)`` (``OutcomeRewardModel``, ``ProcessRewardModel``, ``HeuristicStepReward``).
    """

    def __init__(self, model, args: ReturnConditionedConfig | None = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, reward_funcs=None, peft_config=None, callbacks=None, step_reward_func=None):
        args = args or ReturnConditionedConfig(output_dir="runs/return_conditioned")
        if not isinstance(args, ReturnConditionedConfig):
            raise ValueError(f"args: expected a ReturnConditionedConfig, got {type(args).__name__}")
        if args.tag_mode == "dense" and step_reward_func is None:
            raise ValueError("step_reward_func: dense tags need a step reward provider (ORM, PRM or HeuristicStepReward)")
        super().__init__(model, args, train_dataset, eval_dataset, processing_class, reward_funcs, peft_config, callbacks)
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if dataset is not None and not all(isinstance(p, str) for p in dataset["prompt"]):
                raise ValueError(f"{name}: return-conditioned RL needs plain-text prompts (the tag follows the prompt)")
        self.step_reward_func = step_reward_func
        self.processing_class.add_special_tokens({"additional_special_tokens": [args.good_token, args.bad_token]})
        self._fit_embeddings(self.model)

    def _fit_embeddings(self, model):
        if model.get_input_embeddings().weight.shape[0] < len(self.processing_class):
            model.resize_token_embeddings(len(self.processing_class))
        return model

    def _reload(self, folder):
        return self._fit_embeddings(super()._reload(folder))

    def sampling_prompts(self, round_index: int) -> list:
        prompts = self.train_dataset["prompt"]
        return [p + self.args.good_token for p in prompts] if round_index > 1 else prompts

    # ------------------------------------------------------------------ tagging

    def training_rows(self, samples: list[dict]) -> list[dict]:
        """Every distinct non-empty sample of the round, right or wrong (dense mode: with step tags)."""
        tagged, seen = [], set()
        for sample in samples:
            key = (sample["id"], normalise_solution(sample["completion"]))
            if key in seen or not sample["completion"].strip():
                continue
            seen.add(key)
            tagged.append(dict(sample))
        if self.args.tag_mode == "dense":
            self._add_step_tags(tagged)
        return tagged

    def _add_step_tags(self, rows: list[dict]) -> None:
        by_id = {row["id"]: row for row in self.train_dataset}
        columns = {key: [by_id[r["id"]][key] for r in rows] for key in self.train_dataset.column_names if key != "prompt"}
        prompts = [by_id[r["id"]]["prompt"] for r in rows]
        rewards = self.step_reward_func.step_rewards(prompts, [r["completion"] for r in rows], **columns)
        for row, steps in zip(rows, rewards, strict=True):
            if len(steps) != len(split_steps(row["completion"])):
                raise ValueError("step_reward_func: returned a step count that does not match the completion's steps")
            row["step_tags"] = [bool(r >= self.args.step_threshold) for r in steps]

    def _tag(self, good: bool) -> str:
        return self.args.good_token if good else self.args.bad_token

    def training_pair(self, prompt, row: dict) -> dict:
        if self.args.tag_mode == "sparse":
            return {"prompt": prompt + self._tag(row["correct"]), "completion": row["completion"]}
        text, pieces, last = row["completion"], [], 0
        for step, good in zip(split_steps(text), row["step_tags"], strict=True):
            pieces += [text[last:step.start], self._tag(good)]
            last = step.start
        pieces.append(text[last:])
        first = pieces[1] if len(pieces) > 1 else ""
        return {"prompt": prompt + pieces[0] + first, "completion": "".join(pieces[2:])}

    # ------------------------------------------------------------------ evaluation

    def _evaluate(self, dataset=None, greedy_only: bool = False) -> dict:
        if dataset is not None or self.eval_dataset is None or not self._conditioned_next_eval():
            return super()._evaluate(dataset, greedy_only)
        good = self.eval_dataset.map(lambda row: {"prompt": row["prompt"] + self.args.good_token})
        metrics = super()._evaluate(good)
        if self.args.eval_unconditioned:
            plain = super()._evaluate(self.eval_dataset, greedy_only=True)
            metrics["unconditioned/maj@1"] = plain["maj@1"]
        return metrics

    def _conditioned_next_eval(self) -> bool:
        """Evaluations after the first fine-tuning condition on the good tag (round 0 does not)."""
        return bool(self.history)
