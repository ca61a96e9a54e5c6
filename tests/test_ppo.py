"""PPO on TRL's GRPOTrainer: learning from a TRL-style script, dense rewards, and bad input."""

from __future__ import annotations

import pytest

from trl_reasoning.tasks import add_prompts, load_task
from trl_reasoning.trainers.ppo_config import PPOConfig
from trl_reasoning.trainers.ppo_trainer import PPOError, PPOTrainer


def apples_reward(completions, **kwargs):
    """Learnable fast by an untrained tiny model: mention apples."""
    return [1.0 if "apples" in c else 0.0 for c in completions]


def _args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "ppo"), learning_rate=5e-3, per_device_train_batch_size=32, num_generations=4,
        max_completion_length=8, temperature=1.0, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
        logging_steps=1, num_train_epochs=1, gradient_checkpointing=False, disable_tqdm=True, kl_coef=0.01,
        value_learning_rate=1e-3, seed=0,
    )
    return PPOConfig(**{**values, **overrides})


def _train(n: int):
    return add_prompts(load_task("arithmetic", split="train", num_examples=n)).select_columns(["prompt", "answer", "solution"])


@pytest.mark.parametrize("mode", ["separate", "shared"])
def test_ppo_learns_from_a_trl_style_script(tiny_model_dir, tmp_path, mode):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = PPOTrainer(model=model, reward_funcs=[apples_reward], train_dataset=_train(160), processing_class=tokenizer,
                         args=_args(tmp_path, num_train_epochs=3, value_model_mode=mode))
    trainer.train()
    logs = [r for r in trainer.state.log_history if "ppo/reward/sparse" in r]
    first, last = logs[0]["ppo/reward/sparse"], sum(r["ppo/reward/sparse"] for r in logs[-3:]) / 3
    assert last > first + 0.2, [round(r["ppo/reward/sparse"], 3) for r in logs]
    assert {"ppo/value_loss", "ppo/kl", "ppo/explained_variance", "ppo/value_clipfrac"} <= set(logs[-1])
    trainer.save_model(str(tmp_path / "saved"))  # a plain causal LM: no value head inside
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert not any("value_head" in name for name in reloaded.state_dict())


class NaNSteps:
    step_delimiter = "\n"

    def step_rewards(self, prompts, completions, **kwargs):
        return [[float("nan")] * (c.count("\n") + 1) for c in completions]


class ShortSteps:
    def step_rewards(self, prompts, completions, **kwargs):
        return [[] for _ in completions]


@pytest.mark.parametrize(("provider", "message"), [(NaNSteps(), "non-finite"), (ShortSteps(), "step rewards for a completion")])
def test_bad_dense_rewards_stop_training(tiny_model_dir, tmp_path, provider, message):
    trainer = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], args=_args(tmp_path, max_steps=1),
                         train_dataset=_train(8), dense_reward_funcs=[provider])
    with pytest.raises(PPOError, match=message):
        trainer.train()


def test_dense_heuristic_rewards_run(tiny_model_dir, tmp_path):
    from trl_reasoning.reward_models import HeuristicStepReward

    trainer = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], args=_args(tmp_path, max_steps=2),
                         train_dataset=_train(16), dense_reward_funcs=[HeuristicStepReward()])
    trainer.train()
    assert any("ppo/reward/dense/heuristic_step_reward" in r for r in trainer.state.log_history)


def test_bad_set_ups_fail_clearly(tiny_model_dir, tmp_path):
    from trl_reasoning.tiny import make_tiny_model

    with pytest.raises(PPOError, match="no step_rewards"):
        PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], args=_args(tmp_path),
                   train_dataset=_train(8), dense_reward_funcs=[apples_reward])
    other = make_tiny_model(tmp_path / "other", task="arithmetic", vocab_size=300, hidden_size=32, num_layers=1)
    with pytest.raises(PPOError, match="different tokenizer"):
        PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], args=_args(tmp_path),
                   train_dataset=_train(8), value_model=str(other))
    with pytest.raises(ValueError, match="target_kl"):
        _args(tmp_path, kl_penalty="loss", target_kl=1.0)


def test_resume_restores_the_value_model(tiny_model_dir, tmp_path):
    import torch
    from transformers import TrainerCallback

    first = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], train_dataset=_train(64),
                       args=_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2))
    first.train()
    saved = {k: v.clone() for k, v in first.value_model.state_dict().items()}

    class AtStart(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.values = {k: v.clone() for k, v in second.value_model.state_dict().items()}

    at_start = AtStart()
    second = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], train_dataset=_train(64),
                        args=_args(tmp_path, max_steps=4, save_strategy="no"), callbacks=[at_start])
    assert any(not torch.equal(second.value_model.state_dict()[k], saved[k]) for k in saved)
    second.train(resume_from_checkpoint=True)
    assert all(torch.equal(at_start.values[k], saved[k]) for k in saved)  # restored before training went on
    assert second.state.global_step >= 3 and second.samples_seen > first.samples_seen
