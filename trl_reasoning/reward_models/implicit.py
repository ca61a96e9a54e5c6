"""The implicit reward head: a reward model that is a causal LM measured against its frozen start.

Yuan et al. (2024, "Free Process Rewards without Process Labels") parameterise the reward as
``beta * log pi(y) / ref(y)``: ``pi`` is a causal LM being trained, ``ref`` a frozen copy of where it
started. Trained with the same binary cross-entropy on outcome labels as a scalar (value) head, the
partial sums of that log-ratio become Q-values: the logit at completion token t is
``beta * sum_{i <= t} (log pi(y_i | y_<i) - log ref(y_i | y_<i))``, and its sigmoid at a step's end is
the probability that the answer will be right.

Why it is offered beside the paper's value head: it reuses the LM head, where a policy-initialised
backbone already knows what the next token should be (the digit a sum must have). A value head has
to re-derive that one position later, after the token is read; on the tiny CPU models it learns
question difficulty instead (measured in the README).
"""

from __future__ import annotations

import torch

REFERENCE_FOLDER = "reference"  # where a saved implicit reward model keeps its frozen reference


class ImplicitRewardNetwork(torch.nn.Module):
    """``policy`` (trained) and ``reference`` (frozen) causal LMs giving per-token reward logits.

    ``forward`` takes ``input_ids``, ``attention_mask`` and ``completion_mask`` (1 on completion
    tokens: only they add to the sum) and returns an object whose ``logits`` has shape
    ``(batch, length, 1)``, like a one-label token-classification model.
    """

    def __init__(self, policy, reference, beta: float):
        super().__init__()
        if beta <= 0:
            raise ValueError(f"implicit_beta: need > 0, got {beta}")
        self.policy, self.reference, self.beta = policy, reference, float(beta)
        self.reference.requires_grad_(False)
        self.reference.eval()

    @property
    def config(self):
        return self.policy.config

    def train(self, mode: bool = True):
        super().train(mode)
        self.reference.eval()  # the reference is a fixed function: no dropout
        return self

    def gradient_checkpointing_enable(self, **kwargs):
        self.policy.gradient_checkpointing_enable(**kwargs)

    def forward(self, input_ids, attention_mask=None, completion_mask=None, **kwargs):
        from transformers.modeling_outputs import TokenClassifierOutput

        with torch.no_grad():
            reference = _token_logps(self.reference, input_ids, attention_mask)
        ratio = _token_logps(self.policy, input_ids, attention_mask) - reference
        if completion_mask is not None:
            ratio = ratio * completion_mask.to(ratio.dtype)
        return TokenClassifierOutput(logits=(self.beta * ratio.cumsum(-1)).unsqueeze(-1))


def _token_logps(model, input_ids, attention_mask):
    """``log p(x_t | x_<t)`` at every position; the first token, with no context, gets 0."""
    from .._compat import selective_log_softmax

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    logps = selective_log_softmax(logits, input_ids[:, 1:]).float()  # TRL's row-by-row, memory-light
    return torch.nn.functional.pad(logps, (1, 0))
