"""Pure-torch pieces of PPO's advantage step: reward placement, KL estimates and the adaptive KL
coefficient, returns, GAE, whitening.

Shapes: ``(batch, T)`` over completion tokens, with ``mask`` 1 on real tokens and 0 on padding
after the end of a completion.

Rewards: the sparse reward sits on a completion's last real token; a dense reward for step ``i``
sits on the token holding step ``i``'s last character (``steps.step_end_tokens``). A KL penalty in
the reward subtracts ``beta * kl_t`` on every token.

GAE (Schulman et al., 2016), with ``V(T) = 0`` after the last real token::

    delta_t = r_t + gamma * V(t+1) - V(t)
    A_t     = delta_t + gamma * lambda * A_{t+1}
    R_t     = A_t + V(t)          (the value target)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def place_rewards(
    mask: torch.Tensor,
    final_rewards: torch.Tensor | None = None,
    step_rewards: Sequence[Sequence[float]] | None = None,
    step_end_tokens: Sequence[Sequence[int]] | None = None,
) -> torch.Tensor:
    """Per-token rewards: ``final_rewards[b]`` on row b's last real token, and ``step_rewards[b][i]``
    on token ``step_end_tokens[b][i]`` (rewards landing on one token add up)."""
    rewards = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    lengths = mask.long().sum(dim=1)
    if final_rewards is not None:
        rows = torch.nonzero(lengths > 0).squeeze(1)
        rewards[rows, lengths[rows] - 1] += final_rewards.to(rewards)[rows]
    if step_rewards is not None:
        if step_end_tokens is None or len(step_end_tokens) != len(step_rewards):
            raise ValueError("place_rewards: step_end_tokens must give one token list per row of "
                             "step_rewards")
        for row, (values, tokens) in enumerate(zip(step_rewards, step_end_tokens, strict=True)):
            if len(values) != len(tokens):
                raise ValueError(f"place_rewards: row {row} has {len(values)} step rewards for "
                                 f"{len(tokens)} steps")
            for value, token in zip(values, tokens, strict=True):
                if not 0 <= token < int(lengths[row]):
                    raise ValueError(f"place_rewards: row {row}: step end token {token} is outside the "
                                     "completion")
                rewards[row, token] += float(value)
    return rewards * mask


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens' log-probabilities.

    ``k1``: ``log p - log q`` (unbiased, can be negative); ``k3``: ``(q/p) - 1 - log(q/p)``
    (unbiased, always >= 0; Schulman's "approximating KL" note).
    """
    log_ratio = logprobs - ref_logprobs
    if kind == "k1":
        return log_ratio
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"kl_estimate: kind must be 'k1' or 'k3', got {kind!r}")


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and value targets (returns), both ``(batch, T)``, 0 on padding."""
    mask = mask.to(rewards)
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise ``x`` to unit variance over the real tokens (and zero mean if ``shift_mean``)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x)


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped value loss ``0.5 * max((V - R)^2, (clip(V, V_old +- c) - R)^2)`` and the share of
    tokens where the clipped term was the larger one."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    unclipped_loss, clipped_loss = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    return loss, masked_mean((clipped_loss > unclipped_loss).float(), mask)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)`` over real tokens: 1 is a perfect value model, <= 0 a useless one."""
    var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    residual = returns - values
    var_residual = masked_mean((residual - masked_mean(residual, mask)) ** 2, mask)
    return float(1 - var_residual / var_returns) if var_returns > 0 else float("nan")


class AdaptiveKLController:
    """Ziegler et al. (2019): move ``value`` so the observed KL per completion approaches ``target``."""

    def __init__(self, value: float, target: float | None, horizon: int):
        self.value, self.target, self.horizon = value, target, horizon

    def update(self, observed_kl: float, num_completions: int) -> None:
        if self.target is None:
            return
        error = max(min(observed_kl / self.target - 1, 0.2), -0.2)
        self.value *= 1 + error * num_completions / self.horizon


def group_normalised_step_rewards(
    step_rewards: Sequence[Sequence[float]], group_size: int, eps: float = 1e-4
) -> list[list[float]]:
    """Every step reward normalised by the mean and standard deviation of all step rewards of its group
    (rows come in groups of ``group_size`` completions of one prompt): DeepSeekMath's process supervision
    (Shao et al. 2024, section 4.1.3)."""
    if group_size < 1 or len(step_rewards) % group_size:
        raise ValueError(f"group_normalised_step_rewards: {len(step_rewards)} completions do not split into "
                         f"groups of {group_size}")
    normalised: list[list[float]] = []
    for start in range(0, len(step_rewards), group_size):
        group = step_rewards[start:start + group_size]
        values = torch.tensor([r for row in group for r in row], dtype=torch.float64)
        mean = float(values.mean()) if values.numel() else 0.0
        std = float(values.std()) if values.numel() > 1 else 0.0
        normalised += [[(r - mean) / (std + eps) for r in row] for row in group]
    return normalised


def advantages_to_go(
    step_rewards: Sequence[Sequence[float]], step_end_tokens: Sequence[Sequence[int]], mask: torch.Tensor
) -> torch.Tensor:
    """``(batch, T)``: a token's advantage is the sum of the rewards of the steps ending at or after it
    (``step_end_tokens``: the token holding each step's last character); tokens after the last step's
    end get 0."""
    placed = place_rewards(mask, step_rewards=step_rewards, step_end_tokens=step_end_tokens)
    return placed.flip(1).cumsum(1).flip(1) * mask.to(placed)
