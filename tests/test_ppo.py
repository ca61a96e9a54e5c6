"""PPO on TRL's GRPOTrainer: learning from a TRL-style script, dense rewards, and bad input."""

from __future__ import annotations

import pytest
import torch

from trl_reasoning.tasks import add_prompts, load_task
from trl_reasoning.trainers.ppo_config import PPOConfig
from trl_reasoning.trainers.ppo_trainer import PPOError, PPOTrainer


def apples_reward(completions, **kwargs):
    """Learnable fast by an untrained tiny model: mention apples."""
    return [1.0 if "apples" in c else 0.0 for c in completions]


def _args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "ppo"),
        learning_rate=5e-3,
        per_device_train_batch_size=32,
        num_generations=4,
        max_completion_length=8,
        temperature=1.0,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        num_train_epochs=1,
        gradient_checkpointing=False,
        disable_tqdm=True,
        kl_coef=0.01,
        value_learning_rate=1e-3,
        seed=0,
    )
    return PPOConfig(**{**values, **overrides})


def _train(n: int):
    return add_prompts(load_task("arithmetic", split="train", num_examples=n)).select_columns(
        ["prompt", "answer", "solution"]
    )


# shared mode slow (36 s alone): its fast checks are the shared value-loss weight test and resume
@pytest.mark.parametrize("mode", ["separate", pytest.param("shared", marks=pytest.mark.slow)])
def test_ppo_learns_from_a_trl_style_script(tiny_model_dir, tmp_path, mode):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = PPOTrainer(
        model=model,
        reward_funcs=[apples_reward],
        train_dataset=_train(160),
        processing_class=tokenizer,
        args=_args(tmp_path, num_train_epochs=3, value_model_mode=mode),
    )
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


@pytest.mark.parametrize(
    ("provider", "message"), [(NaNSteps(), "non-finite"), (ShortSteps(), "step rewards for a completion")]
)
def test_bad_dense_rewards_stop_training(tiny_model_dir, tmp_path, provider, message):
    trainer = PPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=[apples_reward],
        args=_args(tmp_path, max_steps=1),
        train_dataset=_train(8),
        dense_reward_funcs=[provider],
    )
    with pytest.raises(PPOError, match=message):
        trainer.train()


def test_dense_heuristic_rewards_run(tiny_model_dir, tmp_path):
    from trl_reasoning.reward_models import HeuristicStepReward

    trainer = PPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=[apples_reward],
        args=_args(tmp_path, max_steps=2),
        train_dataset=_train(16),
        dense_reward_funcs=[HeuristicStepReward()],
    )
    trainer.train()
    assert any("ppo/reward/dense/heuristic_step_reward" in r for r in trainer.state.log_history)


def test_bad_set_ups_fail_clearly(tiny_model_dir, tmp_path):
    from trl_reasoning.tiny import make_tiny_model

    with pytest.raises(PPOError, match="no step_rewards"):
        PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], args=_args(tmp_path),
                   train_dataset=_train(8), dense_reward_funcs=[apples_reward])
    other = make_tiny_model(
        tmp_path / "other", task="arithmetic", vocab_size=300, hidden_size=32, num_layers=1
    )
    with pytest.raises(PPOError, match="different tokenizer"):
        PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], args=_args(tmp_path),
                   train_dataset=_train(8), value_model=str(other))
    with pytest.raises(ValueError, match="target_kl"):
        _args(tmp_path, kl_penalty="loss", target_kl=1.0)


def test_a_run_resumed_mid_way_continues_the_value_schedule_like_an_uninterrupted_one(tiny_model_dir,
                                                                                      tmp_path):
    """Stopped after step 2 of 4 (its checkpoint saved), then resumed: the value model has stepped 4 times
    and its learning rate at steps 3 and 4 is the uninterrupted run's (the schedule continued, not
    restarted), as is the policy's."""
    from transformers import TrainerCallback

    class StopAfterTwo(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                control.should_save, control.should_training_stop = True, True

    def run(folder, callbacks=(), resume=None):
        args = _args(tmp_path / folder, max_steps=4, lr_scheduler_type="linear", save_strategy="no")
        trainer = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward],
                             train_dataset=_train(64), args=args, callbacks=list(callbacks))
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    straight = run("straight")
    run("resumed", [StopAfterTwo()])
    resumed = run("resumed", resume=True)

    def rates(trainer, key):
        return {r["step"]: r[key] for r in trainer.state.log_history if key in r}

    assert resumed.state.global_step == 4
    assert resumed.value_optimizer.steps == straight.value_optimizer.steps == 4
    for key in ("ppo/value_learning_rate", "learning_rate"):
        after = {s: v for s, v in rates(resumed, key).items() if s > 2}
        assert after and all(v == pytest.approx(rates(straight, key)[s]) for s, v in after.items()), key


def test_resume_restores_the_value_model(tiny_model_dir, tmp_path):
    import torch
    from transformers import TrainerCallback

    first = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], train_dataset=_train(64),
                       args=_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2))
    first.train()
    saved = {k: v.clone() for k, v in first.value_model.state_dict().items()}

    class AtStart(TrainerCallback):
        steps: list[int] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.values = {k: v.clone() for k, v in second.value_model.state_dict().items()}

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    at_start = AtStart()
    second = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], train_dataset=_train(64),
                        args=_args(tmp_path, max_steps=4, save_strategy="no"), callbacks=[at_start])
    assert any(not torch.equal(second.value_model.state_dict()[k], saved[k]) for k in saved)
    second.train(resume_from_checkpoint=True)
    assert all(torch.equal(at_start.values[k], saved[k]) for k in saved)  # restored before training went on
    # steps 3 and 4 ran, after checkpoint-2: a run that ignored the checkpoint would run steps 1-4
    assert at_start.steps == [3, 4] and second.state.global_step == 4
    assert second.samples_seen > first.samples_seen


def _rollout(trainer, texts: list[str], prompts: list[str] | None = None):
    """A fixed rollout batch in the shape TRL's GRPO hands to ``after_rollout``."""
    import torch

    tokenizer = trainer.processing_class
    prompts = prompts or ["Question: 1 + 2?\nAnswer:"] * len(texts)
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    completion_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width_p, width_c = max(map(len, prompt_ids)), max(map(len, completion_ids))
    pad = tokenizer.pad_token_id
    output = {
        "prompt_ids": torch.tensor([[pad] * (width_p - len(p)) + p for p in prompt_ids]),
        "prompt_mask": torch.tensor([[0] * (width_p - len(p)) + [1] * len(p) for p in prompt_ids]),
        "completion_ids": torch.tensor([c + [pad] * (width_c - len(c)) for c in completion_ids]),
        "completion_mask": torch.tensor([[1] * len(c) + [0] * (width_c - len(c)) for c in completion_ids]),
    }
    inputs = [{"prompt": p, "answer": "3", "solution": " 1 + 2 = 3\n#### 3"} for p in prompts]
    return inputs, output, torch.zeros(len(texts), 1)


@pytest.mark.parametrize("from_object", [True, False])
def test_value_head_init_zero_starts_every_value_at_0_and_disable_dropout_reaches_the_value_model(
        tiny_model_dir, tmp_path, from_object):
    """``value_head_init: zero``: the value model built from the policy (object or folder) values every
    token 0 before training (the default, transformers' random head, does not); TRL's ``disable_dropout``
    makes its train-mode values (the value loss's) those the rollout scored in eval mode; a value model the
    user gives keeps its head."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    ids = None
    for init, no_dropout in (("zero", False), ("random", True)):  # each setting without the other
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir) if from_object else str(tiny_model_dir)
        trainer = PPOTrainer(model=model, reward_funcs=[apples_reward], train_dataset=_train(8),
                             args=_args(tmp_path, value_head_init=init, disable_dropout=no_dropout))
        ids = ids or trainer.processing_class(["Question: 1 + 2?\nAnswer: 3", "apples and pears"],
                                              padding=True, return_tensors="pt")
        value_model = trainer.accelerator.unwrap_model(trainer.value_model).train()
        values = value_model(**ids).logits
        assert torch.equal(values, torch.zeros_like(values)) == (init == "zero")
        with torch.no_grad():
            value_model.score.weight.normal_()  # a trained head: its values vary with the features...
        train_mode = value_model(**ids).logits
        assert train_mode.std() > 0  # ...and only dropout makes train mode differ from eval mode
        assert torch.equal(train_mode, value_model.eval()(**ids).logits) == no_dropout
    given = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=1)
    head = given.score.weight.detach().clone()
    trainer = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], value_model=given,
                         args=_args(tmp_path, value_head_init="zero"), train_dataset=_train(8))
    assert head.abs().sum() > 0
    assert torch.equal(trainer.accelerator.unwrap_model(trainer.value_model).score.weight, head)


@pytest.mark.parametrize("from_object", [True, False])
def test_rollout_values_are_dropout_free_and_advantages_are_gae_of_them(
    tiny_model_dir, tmp_path, from_object
):
    """Both value-model paths (built from the policy object, loaded from its folder) give the same
    values on every call, and the advantages are ``gae`` of the trainer's own rewards and values."""
    import torch
    from transformers import AutoModelForCausalLM

    from trl_reasoning.advantages import gae, whiten

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir) if from_object else str(tiny_model_dir)
    trainer = PPOTrainer(
        model=model, reward_funcs=[apples_reward], args=_args(tmp_path), train_dataset=_train(8)
    )
    trainer.model.train()
    inputs, output, rewards = _rollout(trainer, [" 1 + 2 = 3\n#### 3", " apples", " 7\n#### 7 and more"])
    first = trainer.after_rollout(inputs, dict(output), rewards.clone())
    second = trainer.after_rollout(inputs, dict(output), rewards.clone())
    assert torch.equal(first["old_values"], second["old_values"])
    mask = output["completion_mask"].float()
    advantages, returns = gae(
        first["token_rewards"], first["old_values"], mask, trainer.args.gamma, trainer.args.lam
    )
    assert torch.allclose(first["advantages"], whiten(advantages, mask), atol=1e-6)
    assert torch.allclose(first["returns"], returns, atol=1e-6)


def test_default_ppo_clips_and_one_epoch_does_not(tiny_model_dir, tmp_path):
    """Several PPO epochs per rollout batch by default: the ratio leaves [1 - eps, 1 + eps] and the clip
    binds. With GRPO's num_iterations=1 the ratio is exactly 1 and it never does."""
    assert PPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False).num_iterations == 4

    def clip_fractions(num_iterations: int) -> list[float]:
        trainer = PPOTrainer(
            model=str(tiny_model_dir),
            reward_funcs=[apples_reward],
            train_dataset=_train(32),
            args=_args(
                tmp_path / str(num_iterations), num_iterations=num_iterations, learning_rate=2e-2, max_steps=8
            ),
        )
        trainer.train()
        return [
            r["clip_ratio/region_mean"] for r in trainer.state.log_history if "clip_ratio/region_mean" in r
        ]

    assert max(clip_fractions(4)) > 0.0
    assert max(clip_fractions(1)) == 0.0


class FirstWordDigit:
    """Dense reward on the first step only (steps are words): 1 when it holds a digit."""

    __name__ = "first_word_digit"

    def step_rewards(self, prompts, completions, **kwargs):
        from trl_reasoning.steps import split_steps

        rewards = []
        for text in completions:
            steps = split_steps(text, " ")
            rewards.append(
                [float(any(ch.isdigit() for ch in steps[0].text))] + [0.0] * (len(steps) - 1) if steps else []
            )
        return rewards


@pytest.mark.slow  # 22 s alone; the fast suite's PPO learning smoke is the TRL-style script test
def test_ppo_learns_from_a_per_token_reward_on_an_early_token(tiny_model_dir, tmp_path):
    """The sparse reward is always 0, so only the dense reward on the first word carries signal: the
    policy learns it through per-token rewards, values and GAE, with several PPO epochs per batch."""
    trainer = PPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
        train_dataset=_train(160),
        dense_reward_funcs=[FirstWordDigit()],
        args=_args(tmp_path, num_train_epochs=2, step_delimiter=" ", learning_rate=5e-3),
    )
    assert trainer.args.num_iterations > 1
    trainer.train()
    rates = [
        r["ppo/reward/dense/first_word_digit"]
        for r in trainer.state.log_history
        if "ppo/reward/dense/first_word_digit" in r
    ]
    assert sum(rates[-3:]) / 3 > rates[0] + 0.2, [round(r, 3) for r in rates]


def test_shaped_reward_model_rewards_do_not_pay_for_length(tiny_model_dir, tmp_path):
    """Padding a solution with harmless extra steps does not raise its dense return (delta shaping);
    with raw scores it would (0.6 per step)."""
    from trl_reasoning.reward_models import OutcomeRewardModel

    class Constant(OutcomeRewardModel):  # 0.5 at the prompt's end, 0.6 at every completion token
        def token_probabilities(self, encoded, batch_size=32):
            return [
                [0.5] * e.completion_start + [0.6] * (len(e.input_ids) - e.completion_start) for e in encoded
            ]

    orm = Constant.from_causal_lm(str(tiny_model_dir))
    solution, padded = " 1 + 2 = 3\n#### 3", " 1 + 2 = 3\nok\nok then\n1 + 2 = 3\n#### 3"
    returns = {}
    for shaping in ("delta", "raw"):
        trainer = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], train_dataset=_train(8),
                             args=_args(tmp_path / shaping, dense_reward_shaping=shaping, kl_coef=0.0),
                             dense_reward_funcs=[orm])
        assert PPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False).dense_reward_shaping == "delta"
        inputs, output, rewards = _rollout(trainer, [solution, padded])
        token_rewards = trainer._token_rewards(
            inputs, output["completion_ids"], output["completion_mask"].float(), rewards
        )
        returns[shaping] = token_rewards.sum(dim=1).tolist()
    assert returns["delta"][1] <= returns["delta"][0] + 1e-6 and returns["delta"][0] == pytest.approx(
        0.1, abs=1e-5
    )
    assert returns["raw"][1] > returns["raw"][0]  # what the shaping prevents


def test_adaptive_kl_moves_on_training_rollouts_only(tiny_model_dir, tmp_path):
    trainer = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], train_dataset=_train(8),
                         args=_args(tmp_path, target_kl=1e-6, kl_coef=0.1))
    inputs, output, rewards = _rollout(trainer, [" 1 + 2 = 3\n#### 3", " apples"])
    trainer.model.eval()
    trainer.after_rollout(inputs, dict(output), rewards)
    assert trainer.kl_controller.value == 0.1  # an evaluation rollout leaves the controller alone
    trainer.model.train()
    trainer.after_rollout(inputs, dict(output), rewards)
    assert trainer.kl_controller.value != 0.1


def test_shared_value_loss_weight_does_not_grow_with_gradient_accumulation(
    tiny_model_dir, tmp_path, monkeypatch
):
    """GRPO's loss is already divided for accumulation and the Trainer does not divide again, so the
    shared value loss must be divided once: over one optimizer step its total weight is vf_coef."""
    import torch
    from trl import GRPOTrainer

    assert PPOTrainer.loss_is_scaled_for_ga is True
    totals = {}
    for steps in (1, 4):
        trainer = PPOTrainer(
            model=str(tiny_model_dir),
            reward_funcs=[apples_reward],
            train_dataset=_train(8),
            args=_args(
                tmp_path / str(steps),
                value_model_mode="shared",
                gradient_accumulation_steps=steps,
                per_device_train_batch_size=8,
            ),
        )
        trainer.current_gradient_accumulation_steps = steps
        monkeypatch.setattr(GRPOTrainer, "compute_loss", lambda self, *a, **k: torch.zeros(()))
        monkeypatch.setattr(trainer, "_value_loss", lambda inputs: torch.ones((), requires_grad=True))
        trainer.model.train()
        totals[steps] = sum(trainer.compute_loss(trainer.model, {}).item() for _ in range(steps))
    assert totals[1] == pytest.approx(trainer.args.vf_coef) and totals[4] == pytest.approx(totals[1])


def test_with_peft_the_value_model_trains_adapters_and_its_head(tiny_model_dir, tmp_path):
    """With a peft_config the separate value model trains adapters and its scalar head, not its frozen
    backbone (a full copy under AdamW would cost 4x the model); value_model_peft=False trains it all."""
    import torch
    from peft import LoraConfig

    def paid(completions, **kwargs):  # returns of 1, not an untrained model's all-zero apples: the head
        return [1.0] * len(completions)  # learns from the returns, whatever its start

    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    trainer = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[paid], train_dataset=_train(32),
                         args=_args(tmp_path, max_steps=2), peft_config=lora)
    trainable = {n for n, p in trainer.value_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable), sorted(trainable)
    assert any("score" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in trainer.value_model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.value_model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any("score" in n for n in changed) and any("lora_B" in n for n in changed)
    assert changed <= trainable
    full = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], train_dataset=_train(32),
                      args=_args(tmp_path, max_steps=1, value_model_peft=False, save_strategy="steps",
                                 save_steps=1), peft_config=lora)
    assert all(p.requires_grad for p in full.value_model.parameters())
    full.train()
    with pytest.raises(PPOError, match="resume with the value_model_peft / peft_config it was saved with"):
        trainer.train(resume_from_checkpoint=True)  # the full value model's checkpoint, into adapters


def test_a_policy_object_with_peft_gets_a_value_model_from_its_base_weights(tiny_model_dir, tmp_path):
    """A policy passed as a model object with a peft_config: TRL wraps it in adapters before the value
    model is built from it; the value model starts from the base weights, under adapters of its own."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base = {k: v.clone() for k, v in policy.model.state_dict().items()}
    lora = LoraConfig(r=4, target_modules="all-linear")
    trainer = PPOTrainer(model=policy, reward_funcs=[apples_reward], train_dataset=_train(32),
                         args=_args(tmp_path, max_steps=1), peft_config=lora)
    value_backbone = trainer.value_model.get_base_model().model
    weight = "layers.0.self_attn.q_proj"
    assert torch.equal(value_backbone.get_submodule(weight).base_layer.weight, base[f"{weight}.weight"])


def test_vf_coef_only_where_value_and_policy_share_an_optimizer(tmp_path):
    """In separate mode the value model has its own AdamW, which a loss weight would not change: the
    setting is refused in one line (use value_learning_rate); shared mode keeps TRL's 0.5 default."""
    with pytest.raises(ValueError, match="vf_coef: weighs the value loss only when"):
        _args(tmp_path, vf_coef=0.1)
    assert _args(tmp_path).vf_coef is None
    assert _args(tmp_path, value_model_mode="shared").vf_coef == 0.5


def test_the_value_model_steps_with_the_policy_under_its_schedule(tiny_model_dir, tmp_path, monkeypatch):
    """Two micro-batches per optimizer step: the value model steps once per policy step (not per
    micro-batch), its learning rate follows the policy's schedule kind (linear to 0 here), and its
    gradients are clipped to value_max_grad_norm before each step."""
    from trl_reasoning.trainers import value_optimizer

    clipped, clip = [], torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm, *args, **kwargs):
        params = list(params)
        if any(p.grad is not None for p in params) and max_norm == 1e-3:
            clipped.append(max_norm)
        return clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(value_optimizer.torch.nn.utils, "clip_grad_norm_", recording_clip)
    trainer = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], train_dataset=_train(64),
                         args=_args(tmp_path, max_steps=4, per_device_train_batch_size=16,
                                    gradient_accumulation_steps=2, lr_scheduler_type="linear",
                                    value_max_grad_norm=1e-3))
    trainer.train()
    value = trainer.value_optimizer
    assert trainer.state.global_step == 4 and value.steps == 4
    assert value.learning_rate == pytest.approx(0.0, abs=1e-12)  # linear schedule ended
    logged = [r["ppo/value_learning_rate"] for r in trainer.state.log_history
              if "ppo/value_learning_rate" in r]
    assert len(logged) == 4 and logged[0] <= 1e-3
    assert all(b < a for a, b in zip(logged, logged[1:], strict=False))
    assert len(clipped) == 4 and value.last_grad_norm > 1e-3  # clipped at every step, and it bound


def test_value_warm_up_trains_the_value_model_alone_then_the_policy(tiny_model_dir, tmp_path):
    from transformers import TrainerCallback

    class AtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                self.policy = {k: v.clone() for k, v in trainer.model.state_dict().items()}
                self.value = {k: v.clone() for k, v in trainer.value_model.state_dict().items()}

    at_step = AtStep()
    trainer = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], train_dataset=_train(32),
                         args=_args(tmp_path, max_steps=3, value_warmup_steps=2), callbacks=[at_step])
    policy_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    value_before = {k: v.clone() for k, v in trainer.value_model.state_dict().items()}
    trainer.train()
    assert all(torch.equal(v, policy_before[k]) for k, v in at_step.policy.items())  # warm-up: policy still
    assert any(not torch.equal(v, value_before[k]) for k, v in at_step.value.items())
    assert any(not torch.equal(v, at_step.policy[k]) for k, v in trainer.model.state_dict().items())


class _PositionValues(torch.nn.Module):
    """A value model whose value at each position is that position's token id (to check the offset)."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None):
        from types import SimpleNamespace

        return SimpleNamespace(logits=(input_ids.float() + self.anchor)[..., None])


def test_each_completion_token_is_valued_at_the_state_before_it(tiny_model_dir, tmp_path):
    """V_t for completion token t must be the value model's output at the token before t (the state in
    which t is chosen), read here from a model whose output is the input token id itself."""
    trainer = PPOTrainer(model=str(tiny_model_dir), reward_funcs=[apples_reward], args=_args(tmp_path),
                         train_dataset=_train(8))
    trainer.value_model = _PositionValues()
    _, output, _ = _rollout(trainer, [" 1 + 2 = 3", " 7"])
    ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
    width = output["completion_ids"].shape[1]
    values = trainer.rollout_values(ids, mask, width)
    prompt_width = output["prompt_ids"].shape[1]
    for row in range(2):
        for t in range(width):  # completion token t sits at prompt_width + t; its state is the one before
            assert values[row, t].item() == ids[row, prompt_width + t - 1].item()
