"""Process rewards from a reward model whose tokenizer differs from the policy's (TRL issue 2577): the
step rewards are computed from text and land on the policy's own tokens."""

from __future__ import annotations

import pytest
import torch

from trl_reasoning.loading import load_tokenizer
from trl_reasoning.reward_models import ProcessRewardModel
from trl_reasoning.steps import split_steps
from trl_reasoning.tasks import add_prompts, load_task
from trl_reasoning.tiny import make_tiny_model
from trl_reasoning.trainers.ppo_config import PPOConfig
from trl_reasoning.trainers.ppo_trainer import PPOTrainer

TEXT = "3 + 4 = 7\n7 * 12 = 84\n84 - 50 = 34\n#### 34"


def no_outcome(completions, **kwargs):
    return [0.0] * len(completions)


def _step_end_positions(tokenizer, text: str) -> list[int]:
    """The token holding each step's last character, read from the tokenizer's own offsets."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [next(i for i, (_, end) in enumerate(offsets) if end >= step.end) for step in split_steps(text)]


def test_step_rewards_of_a_reward_model_with_another_tokenizer_land_on_the_policys_tokens(tiny_model_dir,
                                                                                          tmp_path):
    prm_base = make_tiny_model(tmp_path / "prm_base", vocab_size=300, hidden_size=32, num_layers=1, seed=1)
    prm = ProcessRewardModel.from_causal_lm(str(prm_base))
    policy_tokenizer = load_tokenizer(str(tiny_model_dir))
    assert prm.tokenizer.get_vocab() != policy_tokenizer.get_vocab()
    policy_positions = _step_end_positions(policy_tokenizer, TEXT)
    assert _step_end_positions(prm.tokenizer, TEXT) != policy_positions  # the two mappings differ here
    train = add_prompts(load_task("arithmetic", split="train", num_examples=8)).select_columns(
        ["prompt", "answer", "solution"])
    trainer = PPOTrainer(
        model=str(tiny_model_dir), reward_funcs=[no_outcome], train_dataset=train, dense_reward_funcs=[prm],
        args=PPOConfig(output_dir=str(tmp_path / "ppo"), per_device_train_batch_size=8, num_generations=4,
                       max_completion_length=8, use_cpu=True, bf16=False, report_to="none", max_steps=1,
                       dense_reward_shaping="raw"),
    )
    ids = policy_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    completion_ids = torch.tensor([ids])
    row = {"prompt": train[0]["prompt"], "answer": "34", "solution": train[0]["solution"]}
    mask = torch.ones_like(completion_ids)
    rewards = trainer._token_rewards([row], completion_ids, mask, torch.zeros(1, 1))
    expected = prm.step_rewards([row["prompt"]], [TEXT], shaping="raw")[0]
    assert len(expected) == 4 and all(r != 0 for r in expected)
    assert torch.nonzero(rewards[0]).flatten().tolist() == policy_positions
    assert rewards[0, policy_positions].tolist() == pytest.approx(expected, rel=1e-5)
