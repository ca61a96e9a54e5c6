"""What the outcome and process reward models share: a causal-LM backbone with a scalar head.

The network is transformers' ``AutoModelForTokenClassification`` with one label: the backbone of
any causal LM (Qwen2, Llama, ...) and a linear head giving one logit per token. Hub plumbing
(``save_pretrained``, ``from_pretrained``, ``push_to_hub``) is transformers'; the reward-model
settings travel in the model config (``config.trl_reasoning_reward_model``).

Scoring re-tokenises ``prompt + completion`` text with the reward model's own tokenizer, so a
reward model scores samples of a policy whose tokenizer differs. A step's score is the sigmoid of
the logit on the step's last token (see ``steps.py``). An empty completion (no steps) scores 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..steps import (
    DEFAULT_DELIMITER,
    split_steps,
    step_end_tokens,
    token_ends_by_decoding,
    token_ends_from_offsets,
)
from ..verifiers import completion_text

CONFIG_KEY = "trl_reasoning_reward_model"
EMPTY_SCORE = 0.0
IGNORE_LABEL = -100.0  # token positions that take no loss


class RewardModelError(ValueError):
    """Bad input to a reward model (labels, steps, tokenizer); the message names what was expected."""


@dataclass
class RewardScore:
    """A completion's score: ``final`` (probability that the answer is right, or the aggregated step
    score for a PRM) and one probability per step."""

    final: float
    steps: list[float]


@dataclass
class EncodedText:
    """``prompt + completion`` tokenised: ids, the first completion token and every step's end token."""

    input_ids: list[int]
    completion_start: int
    step_ends: list[int]


def encode_with_steps(tokenizer, prompt: str, completion: str, delimiter: str, max_length: int | None) -> EncodedText:
    """Tokenise ``prompt + completion`` and locate the completion's step-end tokens.

    Long texts keep their last ``max_length`` tokens (the completion matters more than the prompt).
    """
    text = prompt + completion
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        ids, ends = encoded["input_ids"], token_ends_from_offsets(encoded["offset_mapping"])
    else:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        ends = token_ends_by_decoding(tokenizer, ids)
    start = next((i for i, end in enumerate(ends) if end > len(prompt)), len(ids))
    step_ends = step_end_tokens(ends, split_steps(completion, delimiter), shift=len(prompt)) if completion.strip() else []
    if max_length is not None and len(ids) > max_length:
        cut = len(ids) - max_length
        ids, start = ids[cut:], max(start - cut, 0)
        step_ends = [max(i - cut, 0) for i in step_ends]
    return EncodedText(list(ids), start, step_ends)


class TokenRewardModel:
    """Shared base of ``OutcomeRewardModel`` and ``ProcessRewardModel``.

    Args:
        model: an ``AutoModelForTokenClassification`` with ``num_labels=1``.
        tokenizer: its tokenizer.
        step_delimiter: what separates steps (``steps.split_steps``).
        max_length: longest ``prompt + completion`` scored, in tokens (left-truncated).
    """

    kind = "base"
    aggregation = "last"

    def __init__(self, model, tokenizer, step_delimiter: str = DEFAULT_DELIMITER, max_length: int | None = 1024):
        if getattr(model.config, "num_labels", 1) != 1:
            raise RewardModelError(f"reward model: expected a 1-label token-classification model, got {model.config.num_labels} labels")
        self.model, self.tokenizer = model, tokenizer
        self.step_delimiter, self.max_length = step_delimiter, max_length
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.__name__ = f"{self.kind}_reward_model"  # TRL names reward functions by __name__

    # ------------------------------------------------------------------ construction and saving

    @classmethod
    def from_causal_lm(cls, reference: str, step_delimiter: str = DEFAULT_DELIMITER, max_length: int | None = 1024, **kwargs):
        """A fresh reward model on the backbone of a causal LM (folder or Hub id); the head is new."""
        from transformers import AutoModelForTokenClassification
        from transformers.utils import logging

        from ..loading import load_tokenizer, resolve

        name, load_kwargs = resolve(reference)
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # the "score.weight newly initialised" report is expected here
        try:
            model = AutoModelForTokenClassification.from_pretrained(name, num_labels=1, **load_kwargs, **kwargs)
        finally:
            logging.set_verbosity(verbosity)
        return cls(model, load_tokenizer(reference, padding_side="right"), step_delimiter, max_length)

    @classmethod
    def from_pretrained(cls, reference: str, **kwargs):
        """Load a reward model saved by ``save_pretrained`` (folder or Hub id)."""
        from transformers import AutoModelForTokenClassification

        from ..loading import load_tokenizer, resolve

        name, load_kwargs = resolve(reference)
        model = AutoModelForTokenClassification.from_pretrained(name, **load_kwargs, **kwargs)
        settings = getattr(model.config, CONFIG_KEY, None)
        if not settings:
            raise RewardModelError(f"reward model: {reference!r} is not a trl-reasoning reward model (no {CONFIG_KEY} in its config)")
        if settings.get("kind") != cls.kind and cls.kind != "base":
            raise RewardModelError(f"reward model: {reference!r} is a {settings.get('kind')} model, not {cls.kind}")
        target = _class_of(settings["kind"]) if cls.kind == "base" else cls
        loaded = target(model, load_tokenizer(reference, padding_side="right"), settings["step_delimiter"], settings.get("max_length"))
        loaded.aggregation = settings.get("aggregation", target.aggregation)
        return loaded

    def _record_settings(self) -> None:
        setattr(self.model.config, CONFIG_KEY,
                {"kind": self.kind, "step_delimiter": self.step_delimiter, "max_length": self.max_length,
                 "aggregation": self.aggregation})

    def save_pretrained(self, folder: str | Path) -> None:
        """Write the model, its tokenizer and the reward-model settings to ``folder``."""
        self._record_settings()
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload model and tokenizer to the Hub (``transformers`` ``push_to_hub``)."""
        self._record_settings()
        self.tokenizer.push_to_hub(repo_id, **kwargs)
        return self.model.push_to_hub(repo_id, **kwargs)

    # ------------------------------------------------------------------ scoring

    def encode(self, prompt: str, completion: str) -> EncodedText:
        return encode_with_steps(self.tokenizer, prompt, completion, self.step_delimiter, self.max_length)

    def token_probabilities(self, encoded: Sequence[EncodedText], batch_size: int = 32) -> list[list[float]]:
        """Sigmoid of the head's logit at every token of each encoded ``prompt + completion``."""
        import torch

        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            for i in range(0, len(encoded), batch_size):
                chunk = [e.input_ids or [self.tokenizer.pad_token_id] for e in encoded[i:i + batch_size]]
                width = max(len(ids) for ids in chunk)
                ids = torch.full((len(chunk), width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for row, seq in enumerate(chunk):
                    ids[row, :len(seq)], mask[row, :len(seq)] = torch.tensor(seq), 1
                with torch.no_grad():
                    logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[..., 0]
                probs = torch.sigmoid(logits.float()).cpu()
                out.extend(probs[row, :len(seq)].tolist() for row, seq in enumerate(chunk))
        finally:
            self.model.train(was_training)
        return out

    def score(self, prompts: Sequence, completions: Sequence, batch_size: int = 32) -> list[RewardScore]:
        """A ``RewardScore`` per completion: per-step probabilities and the final score."""
        prompts = [prompt_as_text(p) for p in prompts]
        completions = [completion_text(c) for c in completions]
        encoded = [self.encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        scores = []
        for text, probs in zip(encoded, self.token_probabilities(encoded, batch_size), strict=True):
            steps = [probs[i] for i in text.step_ends]
            final = self.aggregate(steps) if steps else EMPTY_SCORE
            if not math.isfinite(final) or any(not math.isfinite(s) for s in steps):
                raise RewardModelError("reward model: produced a non-finite score (diverged weights?)")
            scores.append(RewardScore(final, steps))
        return scores

    def aggregate(self, step_scores: list[float]) -> float:
        """The final score from the step scores (ORM: the last step's)."""
        return step_scores[-1]

    # ------------------------------------------------------------------ adapters

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[float]:
        """TRL ``reward_funcs`` signature: the final score of each completion (a sparse reward)."""
        return [s.final for s in self.score(prompts, completions)]

    def step_rewards(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[list[float]]:
        """Dense rewards for PPO / RCRL: one probability per step (``steps.split_steps`` order)."""
        return [s.steps for s in self.score(prompts, completions)]

    def rerank_scorer(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """``evaluation.evaluate(reward_scorer=...)`` signature."""
        return [s.final for s in self.score(prompts, completions)]


def prompt_as_text(prompt) -> str:
    """A prompt as text: strings as they are; chat prompts as their messages' contents."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt)


def load_reward_model(reference: str) -> TokenRewardModel:
    """Load a saved ORM or PRM, whichever ``reference`` holds."""
    return TokenRewardModel.from_pretrained(reference)


def _class_of(kind: str) -> type[TokenRewardModel]:
    from .outcome import OutcomeRewardModel
    from .process import ProcessRewardModel

    classes = {"outcome": OutcomeRewardModel, "process": ProcessRewardModel}
    if kind not in classes:
        raise RewardModelError(f"reward model: unknown kind {kind!r}; expected outcome or process")
    return classes[kind]
