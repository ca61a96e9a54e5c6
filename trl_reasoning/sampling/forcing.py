"""A token forced after every step delimiter (dense RCRL's ``[GOOD]`` before each step), one rule for
both sampling backends.

``ForcedToken`` is the transformers ``LogitsProcessor`` the HF backend runs; the vLLM backend reads its
``token_id`` and ``after`` ids and runs the same rule inside the engine through ``VLLMForcedToken``, a
vLLM V1 logits processor every engine this project starts registers (the rule is carried per request in
``SamplingParams.extra_args``, so requests without it are untouched). The rule: when the sequence so
far (prompt and completion) ends with a token whose text ends with the delimiter, the next token is
``token_id``.
"""

from __future__ import annotations

from collections.abc import Sequence

EXTRA_ARGS_KEY = "trl_reasoning_forced_token"  # SamplingParams.extra_args entry: {"token": id, "after": ids}


class ForcedToken:
    """A transformers ``LogitsProcessor``: a row whose last token ends with ``delimiter`` must emit
    ``token_id`` next.

    Args:
        tokenizer: the policy's tokenizer (every token's text is checked once, here).
        token_id: the token to force.
        delimiter: the step delimiter (a newline for every task's steps).
    """

    def __init__(self, tokenizer, token_id: int, delimiter: str = "\n"):
        pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self.token_id = int(token_id)
        self.after = tuple(i for i, piece in enumerate(pieces) if piece.endswith(delimiter))
        self._ends = None

    def vllm_rule(self) -> dict:
        """The rule as ``VLLMForcedToken`` reads it from a request's ``extra_args``."""
        return {"token": self.token_id, "after": list(self.after)}

    def __call__(self, input_ids, scores):
        import torch

        if self._ends is None:
            self._ends = torch.zeros(max(self.after, default=0) + 1, dtype=torch.bool)
            self._ends[list(self.after)] = True
        last = input_ids[:, -1].cpu()
        hit = (last < len(self._ends)) & self._ends[last.clamp(max=len(self._ends) - 1)]
        rows = torch.nonzero(hit).flatten().to(scores.device)
        if len(rows):
            forced = torch.full_like(scores[rows], float("-inf"))
            forced[:, self.token_id] = 0.0
            scores[rows] = forced
        return scores


def vllm_rules(logits_processors: Sequence) -> dict | None:
    """The ``extra_args`` that make vLLM run ``logits_processors`` (None: none to run; only
    ``ForcedToken`` translates, and one of them at a time)."""
    forced = [p for p in logits_processors if isinstance(p, ForcedToken)]
    if not forced:
        return None
    return {EXTRA_ARGS_KEY: forced[0].vllm_rule()}


def vllm_refusal(logits_processors: Sequence) -> str | None:
    """Why vLLM cannot run ``logits_processors`` (None: it can)."""
    if any(not isinstance(p, ForcedToken) for p in logits_processors):
        return "this sampling runs transformers logits processors that vLLM does not run"
    if len(logits_processors) > 1:
        return "this sampling forces more than one token rule at once"
    return None
