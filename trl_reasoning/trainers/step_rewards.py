"""Dense step rewards for the on-policy trainers (PPO, process-supervised GRPO).

A provider (``OutcomeRewardModel``, ``ProcessRewardModel``, ``HeuristicStepReward`` or any object with
``step_rewards(prompts, completions, **columns)``) scores a completion's *text*, one reward per step,
whatever tokenizer it reads the text with. The rewards are then placed on the *policy's* tokens by
character offsets (``steps.step_end_tokens`` over the policy's own decoding), so a reward model with
another vocabulary than the policy's still credits the right tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..reward_models.base import TokenRewardModel
from ..steps import split_steps, step_end_tokens, token_ends_by_decoding


class StepRewardError(ValueError):
    """A dense reward provider returned something that cannot be trained on."""


def check_providers(providers: Sequence, weights: Sequence[float] | None,
                    error: type[ValueError] = StepRewardError) -> list[float]:
    """Each provider has ``step_rewards``; returns one weight per provider (default 1 each)."""
    weights = list(weights) if weights else [1.0] * len(providers)
    if len(weights) != len(providers):
        raise error(f"dense_reward_weights: {len(weights)} weights for {len(providers)} dense reward "
                    "providers")
    for provider in providers:
        if not callable(getattr(provider, "step_rewards", None)):
            raise error(f"dense_reward_funcs: {provider!r} has no step_rewards(prompts, completions, "
                        "**columns)")
    return weights


def completion_texts(tokenizer, completion_ids, mask) -> tuple[list[list[int]], list[str]]:
    """The policy's completion token ids (padding cut) and their decoded texts."""
    lengths = mask.sum(dim=1).long().tolist()
    ids = [row[:n].tolist() for row, n in zip(completion_ids, lengths, strict=True)]
    return ids, tokenizer.batch_decode(ids, skip_special_tokens=True)


def provider_step_rewards(provider, inputs: list[dict], texts: list[str], delimiter: str, shaping: str,
                          error: type[ValueError] = StepRewardError) -> list[list[float]]:
    """A provider's step rewards, checked: one finite reward per step of every completion."""
    columns = {key: [row[key] for row in inputs] for key in inputs[0] if key not in ("prompt", "completion")}
    if isinstance(provider, TokenRewardModel):
        columns["shaping"] = shaping
    rewards = provider.step_rewards([row["prompt"] for row in inputs], texts, **columns)
    if len(rewards) != len(texts):
        raise error(f"dense reward {provider_name(provider)}: returned {len(rewards)} rows for {len(texts)} "
                    "completions")
    for text, row in zip(texts, rewards, strict=True):
        steps = len(split_steps(text, delimiter))
        if len(row) != steps:
            raise error(f"dense reward {provider_name(provider)}: returned {len(row)} step rewards for a "
                        f"completion with {steps} steps")
        if not all(math.isfinite(float(r)) for r in row):
            raise error(f"dense reward {provider_name(provider)}: returned a non-finite step reward")
    return [[float(r) for r in row] for row in rewards]


def weighted_step_rewards(providers: Sequence, weights: Sequence[float], inputs: list[dict], texts: list[str],
                          delimiter: str, shaping: str, record: Callable[[str, float], None] | None = None,
                          error: type[ValueError] = StepRewardError) -> list[list[float]]:
    """The weighted sum of every provider's step rewards, per completion (each provider's mean return
    goes to ``record`` as ``dense/<name>``)."""
    total = [[0.0] * len(split_steps(t, delimiter)) for t in texts]
    for provider, weight in zip(providers, weights, strict=True):
        dense = provider_step_rewards(provider, inputs, texts, delimiter, shaping, error)
        if record is not None:
            record(f"dense/{provider_name(provider)}", sum(map(sum, dense)) / max(len(dense), 1))
        total = [[a + weight * b for a, b in zip(acc, new, strict=True)] for acc, new in zip(total, dense,
                                                                                            strict=True)]
    return total


def policy_step_end_tokens(tokenizer, ids: list[list[int]], texts: list[str],
                           delimiter: str) -> list[list[int]]:
    """For each completion, the index of the policy token holding each step's last character."""
    return [step_end_tokens(token_ends_by_decoding(tokenizer, row), split_steps(text, delimiter))
            for row, text in zip(ids, texts, strict=True)]


def provider_name(func) -> str:
    return getattr(func, "__name__", type(func).__name__)
