"""What the outcome and process reward models share: a network giving one logit per token.

Two heads give one logit per token. ``value`` (the paper's): transformers'
``AutoModelForTokenClassification`` with one label, the backbone of any causal LM (Qwen2, Llama, ...)
and a linear head. ``implicit``: the causal LM itself, its logit being the log-likelihood ratio to a
frozen reference (``implicit.py``). Hub plumbing (``save_pretrained``, ``from_pretrained``) is
transformers'; the reward-model settings travel in the model config
(``config.trl_reasoning_reward_model``).

Scoring re-tokenises ``prompt + completion`` text with the reward model's own tokenizer, so a
reward model scores samples of a policy whose tokenizer differs. A step's score is the sigmoid of
the logit on the step's last token (see ``steps.py``). An empty completion (no steps) scores 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..rewards import completion_text, prompt_as_text
from ..steps import (
    DEFAULT_DELIMITER,
    split_steps,
    step_end_tokens,
    token_ends_by_decoding,
    token_ends_from_offsets,
)
from .implicit import REFERENCE_FOLDER, ImplicitRewardNetwork

CONFIG_KEY = "trl_reasoning_reward_model"
HEADS = ("value", "implicit")
EMPTY_SCORE = 0.0
IGNORE_LABEL = -100.0  # token positions that take no loss


class RewardModelError(ValueError):
    """Bad input to a reward model (labels, steps, tokenizer); the message names what was expected."""


@dataclass
class RewardScore:
    """A completion's score: ``final`` (probability that the answer is right, or the aggregated step
    score for a PRM), one probability per step, and ``start``: the score on the prompt's last token,
    before any step (the baseline of shaped dense rewards)."""

    final: float
    steps: list[float]
    start: float = 0.5


@dataclass
class EncodedText:
    """``prompt + completion`` tokenised: ids, the first completion token and every step's end token."""

    input_ids: list[int]
    completion_start: int
    step_ends: list[int]


def encode_with_steps(
    tokenizer, prompt: str, completion: str, delimiter: str, max_length: int | None
) -> EncodedText:
    """Tokenise ``prompt + completion`` and locate the completion's step-end tokens.

    Long texts keep their last ``max_length`` tokens (the completion matters more than the prompt).
    """
    text = prompt + completion
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        ids, ends = encoded["input_ids"], token_ends_from_offsets(encoded["offset_mapping"])
    else:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        ends = token_ends_by_decoding(tokenizer, ids)
    start = next((i for i, end in enumerate(ends) if end > len(prompt)), len(ids))
    step_ends = (
        step_end_tokens(ends, split_steps(completion, delimiter), shift=len(prompt))
        if completion.strip()
        else []
    )
    if max_length is not None and len(ids) > max_length:
        cut = len(ids) - max_length
        ids, start = ids[cut:], max(start - cut, 0)
        step_ends = [max(i - cut, 0) for i in step_ends]
    return EncodedText(list(ids), start, step_ends)


class TokenRewardModel:
    """Shared base of ``OutcomeRewardModel`` and ``ProcessRewardModel``.

    Args:
        model: an ``AutoModelForTokenClassification`` with ``num_labels=1`` (value head) or an
            ``ImplicitRewardNetwork`` (implicit head).
        tokenizer: its tokenizer.
        step_delimiter: what separates steps (``steps.split_steps``).
        max_length: longest ``prompt + completion`` scored, in tokens (left-truncated).
    """

    kind = "base"
    aggregation = "last"
    kinds: dict[str, type[TokenRewardModel]] = {}  # the registry: every subclass, by its ``kind``

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:  # a subclass that keeps its parent's kind (a test double) is not it
            TokenRewardModel.kinds[cls.kind] = cls

    def __init__(
        self, model, tokenizer, step_delimiter: str = DEFAULT_DELIMITER, max_length: int | None = 1024
    ):
        if not isinstance(model, ImplicitRewardNetwork) and getattr(model.config, "num_labels", 1) != 1:
            raise RewardModelError("reward model: expected a 1-label token-classification model, got "
                                   f"{model.config.num_labels} labels")
        self.model, self.tokenizer = model, tokenizer
        self.step_delimiter, self.max_length = step_delimiter, max_length
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.__name__ = f"{self.kind}_reward_model"  # TRL names reward functions by __name__

    @property
    def head(self) -> str:
        """``value`` (a scalar head) or ``implicit`` (log-likelihood ratio to a frozen reference)."""
        return "implicit" if isinstance(self.model, ImplicitRewardNetwork) else "value"

    # ------------------------------------------------------------------ construction and saving

    @classmethod
    def from_causal_lm(
        cls,
        reference: str,
        step_delimiter: str = DEFAULT_DELIMITER,
        max_length: int | None = 1024,
        head: str = "value",
        implicit_beta: float = 0.1,
        **kwargs,
    ):
        """A fresh reward model from a causal LM (folder or Hub id): its backbone under a new value
        head, or (``head="implicit"``) the LM itself, trained against a frozen copy of it. ``kwargs`` go
        to ``from_pretrained`` (``trust_remote_code`` to the tokenizer too)."""
        from ..loading import load_scalar_head_model, load_tokenizer

        if head not in HEADS:
            raise RewardModelError(f"reward model: head must be one of {', '.join(HEADS)}, got {head!r}")
        if head == "implicit":
            model = _implicit_network(reference, kwargs, implicit_beta)
        else:
            model = load_scalar_head_model(reference, **kwargs)
        tokenizer = load_tokenizer(reference, padding_side="right",
                                   trust_remote_code=kwargs.get("trust_remote_code", False))
        return cls(model, tokenizer, step_delimiter, max_length)

    @classmethod
    def from_pretrained(cls, reference: str, **kwargs):
        """Load a reward model saved by ``save_pretrained`` (folder or Hub id); ``kwargs`` go to
        ``from_pretrained`` (``trust_remote_code`` to the config and tokenizer too)."""
        from transformers import AutoModelForTokenClassification

        from ..loading import from_pretrained, load_config, load_tokenizer

        trust = kwargs.get("trust_remote_code", False)
        settings = getattr(load_config(reference, trust_remote_code=trust), CONFIG_KEY, None)
        if not settings:
            raise RewardModelError(f"reward model: {reference!r} is not a trl-reasoning reward model (no "
                                   f"{CONFIG_KEY} in its config)")
        if settings.get("kind") != cls.kind and cls.kind != "base":
            raise RewardModelError(f"reward model: {reference!r} is a {settings.get('kind')} model, not "
                                   f"{cls.kind}")
        target = reward_model_class(settings["kind"]) if cls.kind == "base" else cls
        if settings.get("head", "value") == "implicit":
            model = _implicit_network(reference, kwargs, settings["implicit_beta"], saved=True)
        else:
            model = from_pretrained(AutoModelForTokenClassification, reference, what="reward model", **kwargs)
        loaded = target(
            model,
            load_tokenizer(reference, padding_side="right", trust_remote_code=trust),
            settings["step_delimiter"],
            settings.get("max_length"),
        )
        loaded.aggregation = settings.get("aggregation", target.aggregation)
        return loaded

    def _record_settings(self) -> None:
        settings = {"kind": self.kind, "head": self.head, "step_delimiter": self.step_delimiter,
                    "max_length": self.max_length, "aggregation": self.aggregation}
        if self.head == "implicit":
            settings["implicit_beta"] = self.model.beta
        setattr(self.model.config, CONFIG_KEY, settings)

    def save_pretrained(self, folder: str | Path) -> None:
        """Write the model, its tokenizer and the reward-model settings to ``folder`` (an implicit
        head's frozen reference goes to ``folder/reference``)."""
        self._record_settings()
        if self.head == "implicit":
            self.model.policy.save_pretrained(folder)
            self.model.reference.save_pretrained(Path(folder) / REFERENCE_FOLDER)
        else:
            self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def push_to_hub(self, repo_id: str, private: bool | None = None, commit_message: str = "Upload reward "
                                                                                           "model"):
        """Upload everything ``save_pretrained`` writes to the Hub repository ``repo_id``."""
        import tempfile

        from huggingface_hub import create_repo, upload_folder

        create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            return upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)

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
                chunk = encoded[i:i + batch_size]
                seqs = [e.input_ids or [self.tokenizer.pad_token_id] for e in chunk]
                ids = torch.full(
                    (len(chunk), max(map(len, seqs))), self.tokenizer.pad_token_id, dtype=torch.long
                )
                mask, completion = torch.zeros_like(ids), torch.zeros_like(ids)
                for row, (e, seq) in enumerate(zip(chunk, seqs, strict=True)):
                    ids[row, :len(seq)], mask[row, :len(seq)] = torch.tensor(seq), 1
                    completion[row, e.completion_start:len(e.input_ids)] = 1
                with torch.no_grad():
                    logits = self.network_logits(
                        self.model, ids.to(device), mask.to(device), completion.to(device)
                    )
                probs = torch.sigmoid(logits.float()).cpu()
                out.extend(probs[row, :len(seq)].tolist() for row, seq in enumerate(seqs))
        finally:
            self.model.train(was_training)
        return out

    def network_logits(self, network, input_ids, attention_mask, completion_mask):
        """One logit per token from ``network`` (this model's network, possibly wrapped for training)."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.head == "implicit":
            inputs["completion_mask"] = completion_mask
        return network(**inputs).logits[..., 0]

    def score(self, prompts: Sequence, completions: Sequence, batch_size: int = 32) -> list[RewardScore]:
        """A ``RewardScore`` per completion: per-step probabilities and the final score."""
        prompts = [prompt_as_text(p) for p in prompts]
        completions = [completion_text(c) for c in completions]
        encoded = [self.encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        scores = []
        for text, probs in zip(encoded, self.token_probabilities(encoded, batch_size), strict=True):
            steps = [probs[i] for i in text.step_ends]
            final = self.aggregate(steps) if steps else EMPTY_SCORE
            start = probs[text.completion_start - 1] if 0 < text.completion_start <= len(probs) else 0.5
            if not all(math.isfinite(s) for s in (final, start, *steps)):
                raise RewardModelError("reward model: produced a non-finite score (diverged weights?)")
            scores.append(RewardScore(final, steps, start))
        return scores

    def aggregate(self, step_scores: list[float]) -> float:
        """The final score from the step scores (ORM: the last step's)."""
        return step_scores[-1]

    # ------------------------------------------------------------------ adapters

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[float]:
        """TRL ``reward_funcs`` signature: the final score of each completion (a sparse reward)."""
        return [s.final for s in self.score(prompts, completions)]

    def step_scores(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[list[float]]:
        """One probability per step (``steps.split_steps`` order): RCRL's dense tags threshold these."""
        return [s.steps for s in self.score(prompts, completions)]

    def step_rewards(
        self, prompts: Sequence, completions: Sequence, shaping: str = "delta", **kwargs
    ) -> list[list[float]]:
        """Dense rewards for PPO, one per step. ``delta`` (potential-based shaping): step i earns
        ``score_i - score_(i-1)``, with the prompt-end score before step 1, so a solution's dense return
        is its last step's score minus that baseline, however many steps it has. ``raw``: each step's
        score (the return then grows with the number of steps)."""
        if shaping not in ("delta", "raw"):
            raise RewardModelError(f"reward model: shaping must be 'delta' or 'raw', got {shaping!r}")
        scores = self.score(prompts, completions)
        if shaping == "raw":
            return [s.steps for s in scores]
        return [[b - a for a, b in zip([s.start, *s.steps[:-1]], s.steps, strict=True)] for s in scores]

    def rerank_scorer(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """``evaluation.evaluate(reward_scorer=...)`` signature."""
        return [s.final for s in self.score(prompts, completions)]


def load_reward_model(reference: str, trust_remote_code: bool = False) -> TokenRewardModel:
    """Load a saved ORM or PRM, whichever ``reference`` holds."""
    return TokenRewardModel.from_pretrained(reference, trust_remote_code=trust_remote_code)


def reward_model_class(kind: str) -> type[TokenRewardModel]:
    """The reward-model class of ``kind`` (``outcome``, ``process``, or a registered subclass's kind)."""
    if kind not in TokenRewardModel.kinds:
        raise RewardModelError(f"reward model: unknown kind {kind!r}; expected one of "
                               f"{', '.join(TokenRewardModel.kinds)}")
    return TokenRewardModel.kinds[kind]


def _implicit_network(
    name: str, load_kwargs: dict, beta: float, saved: bool = False
) -> ImplicitRewardNetwork:
    """Policy and frozen reference of an implicit reward model: both from ``name`` for a new one,
    the reference from its subfolder for a saved one."""
    from transformers import AutoModelForCausalLM

    from ..loading import from_pretrained

    reference_kwargs = {**load_kwargs, "subfolder": REFERENCE_FOLDER} if saved else load_kwargs
    policy = from_pretrained(AutoModelForCausalLM, name, what="reward model", **load_kwargs)
    reference = from_pretrained(AutoModelForCausalLM, name, what="reward model", **reference_kwargs)
    return ImplicitRewardNetwork(policy, reference, beta)
