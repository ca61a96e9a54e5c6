"""GAE, reward placement, KL estimators and clipped losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from trl_reasoning.advantages import (
    advantages_to_go,
    clipped_value_loss,
    explained_variance,
    gae,
    group_normalised_step_rewards,
    kl_estimate,
    place_rewards,
    whiten,
)


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [0.2, 9.0, 9.0]])  # row 2: values on padding are ignored
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 1: deltas 0.1, 0.1, 0.3 -> A2 = 0.3, A1 = 0.1 + 0.5 * 0.3, A0 = 0.1 + 0.5 * 0.25
    assert torch.allclose(advantages[0], torch.tensor([0.225, 0.25, 0.3]))
    assert torch.allclose(returns[0], torch.tensor([0.725, 0.85, 1.0]))
    assert torch.allclose(advantages[1], torch.tensor([0.8, 0.0, 0.0]))


def test_gae_discounting():
    advantages, returns = gae(
        torch.tensor([[0.0, 2.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.5, lam=1.0
    )
    assert torch.allclose(returns, torch.tensor([[1.0, 2.0]])) and torch.allclose(advantages, returns)


def test_rewards_land_on_last_token_and_step_ends():
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    rewards = place_rewards(
        mask, torch.tensor([1.0, -1.0]), step_rewards=[[0.5, 0.25], [2.0]], step_end_tokens=[[1, 3], [1]]
    )
    assert rewards.tolist() == [[0.0, 0.5, 0.0, 1.25, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="2 step rewards for 1 steps"):
        place_rewards(mask, step_rewards=[[1.0, 1.0], []], step_end_tokens=[[1], []])
    with pytest.raises(ValueError, match="outside the completion"):
        place_rewards(mask, step_rewards=[[1.0], []], step_end_tokens=[[4], []])


def test_kl_estimators():
    p = torch.log(torch.tensor([0.5, 0.2]))
    q = torch.log(torch.tensor([0.25, 0.4]))
    assert torch.allclose(kl_estimate(p, q, "k1"), torch.tensor([math.log(2), math.log(0.5)]))
    k3 = kl_estimate(p, q, "k3")  # r = q/p: (r - 1) - log r
    assert torch.allclose(k3, torch.tensor([0.5 - 1 - math.log(0.5), 2 - 1 - math.log(2)]))
    assert (k3 >= 0).all() and kl_estimate(p, p, "k3").abs().max() == 0
    with pytest.raises(ValueError, match="k1' or 'k3"):
        kl_estimate(p, q, "k2")


def test_value_loss_clipping():
    old, returns, mask = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2)
    new = torch.tensor([[0.5, 2.0]])
    loss, clipfrac = clipped_value_loss(new, old, returns, mask, clip=0.2)
    # token 1: unclipped (0.5-1)^2 = 0.25, clipped (0.2-1)^2 = 0.64 -> 0.64
    # token 2: unclipped (2-1)^2 = 1, clipped (0.2-1)^2 = 0.64 -> 1
    assert math.isclose(loss.item(), 0.5 * (0.64 + 1.0) / 2, rel_tol=1e-6) and clipfrac.item() == 0.5


def test_whiten_and_explained_variance():
    x, mask = torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1, 1, 1, 0]])
    white = whiten(x, mask)
    assert abs(white[0, :3].mean().item()) < 1e-6 and white[0, 3] == 0
    assert abs(white[0, :3].var(unbiased=False).item() - 1.0) < 1e-5  # unit variance over real tokens
    shifted = whiten(x, mask, shift_mean=False)  # variance normalised, mean kept
    assert abs(shifted[0, :3].mean().item() - 2.0) < 1e-5
    assert abs(shifted[0, :3].var(unbiased=False).item() - 1.0) < 1e-5
    assert explained_variance(x, x, mask) == 1.0


def test_process_supervision_normalises_steps_within_each_group_and_sums_them_to_go():
    # two groups of two completions; group 1's step rewards: [1, 0], [1]; group 2's: [0], [0, 0]
    rewards = [[1.0, 0.0], [1.0], [0.0], [0.0, 0.0]]
    normalised = group_normalised_step_rewards(rewards, group_size=2)
    std = torch.tensor([1.0, 0.0, 1.0]).std().item() + 1e-4  # group 1: mean 2/3
    assert normalised[0] == pytest.approx([(1 - 2 / 3) / std, (0 - 2 / 3) / std])
    assert normalised[1] == pytest.approx([(1 - 2 / 3) / std])
    assert normalised[2:] == [[0.0], [0.0, 0.0]]  # all equal: no signal (eps keeps it finite)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    ends = [[1, 3], [2], [1], [1, 4]]
    adv = advantages_to_go(normalised, ends, mask)
    a, b = normalised[0]
    assert adv[0].tolist() == pytest.approx([a + b, a + b, b, b, 0.0])  # step 1's tokens get both steps' sum
    assert adv[1].tolist() == pytest.approx([normalised[1][0]] * 3 + [0.0, 0.0])  # after the last step: 0
    with pytest.raises(ValueError, match="groups of 3"):
        group_normalised_step_rewards(rewards, group_size=3)
