"""The ``orm`` and ``prm`` stages: sample the current policy on train questions, label the samples
with the verifier (and Monte-Carlo rollouts for the PRM), train the reward model and measure it on
labelled held-out samples. Samples are written before training, so a crash does not redraw them."""

from __future__ import annotations

import dataclasses
import functools

from ..reporting import write_json_atomic
from .base import Stage, cached_rows, first, register_stage, stage_config


def _config():
    from ..trainers.reward_model_config import RewardModelStageConfig

    return RewardModelStageConfig


def _label_settings(recipe, args, kind: str):
    from ..reward_models.data import LabelSettings

    return LabelSettings(
        task=recipe.task, num_generations=args.num_generations, temperature=args.temperature,
        max_new_tokens=args.max_new_tokens, batch_size=args.generation_batch_size, seed=recipe.seed,
        backend=args.sampling_backend, extraction=args.extraction,
        mc_rollouts=args.mc_rollouts if kind == "process" else 0, mc_estimate=args.mc_estimate,
        step_delimiter=args.step_delimiter,
    )


def _labelled_samples(ctx, folder, args, kind: str) -> tuple[list[dict], list[dict]]:
    """(train rows, held-out rows) of labelled policy samples, one engine for both."""
    from ..loading import load_model, load_tokenizer
    from ..reward_models.data import sample_and_label
    from ..sampling import Sampler, answer_pattern_for

    recipe, state = ctx.recipe, ctx.state
    settings = _label_settings(recipe, args, kind)
    trust = recipe.trust_remote_code
    policy = load_model(ctx.policy, device=str(state.device), trust_remote_code=trust)
    tokenizer = load_tokenizer(ctx.policy, trust_remote_code=trust)
    train = first(ctx.sft_train, recipe.rm_train_limit)
    held_settings = dataclasses.replace(settings, seed=recipe.seed + 1)
    with Sampler(
        policy, tokenizer, settings, answer_pattern_for(recipe.task), model_path=ctx.policy
    ) as sampler:
        rows = cached_rows(folder / "train_samples.jsonl",
                           lambda: sample_and_label(policy, tokenizer, train, settings, sampler), state)
        held = cached_rows(
            folder / "heldout_samples.jsonl",
            lambda: sample_and_label(policy, tokenizer, ctx.held_out, held_settings, sampler),
            state,
        )
    return rows, held


def run_reward_model(ctx, folder, kind: str) -> dict:
    """Sample + label (resumable), train an ORM (``outcome``) or PRM (``process``), measure it."""
    from datasets import Dataset

    from ..loading import with_remote_code
    from ..trainers.reward_model_trainer import RewardModelTrainer, reward_model_quality

    recipe = ctx.recipe
    section = {**recipe.section(folder.name), "kind": kind}
    args = stage_config(
        _config(),
        section,
        folder / "trainer",
        recipe.seed,
        section_name=folder.name,
        task=recipe.task,
        report_to=recipe.report_to,
        save_strategy="no",
    )
    with_remote_code(args, recipe.trust_remote_code)
    rows, held_rows = _labelled_samples(ctx, folder, args, kind)
    trainer = RewardModelTrainer(ctx.policy, args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    trainer.save_model(str(folder / "model"))
    quality = reward_model_quality(trainer.reward_model, held_rows)
    if ctx.state.is_main_process:
        write_json_atomic(folder / "metrics.json", {"heldout": quality, "train_samples": len(rows)})
        print(f"{folder.name} on held-out samples: " + "  ".join(f"{k}={v}" for k, v in quality.items()))
    return {"train_samples": len(rows), **quality}


ORM = register_stage(
    Stage(
        "orm",
        _config,
        functools.partial(run_reward_model, kind="outcome"),
        order=20,
        role="reward_model",
        output="model",
        help="RewardModelStageConfig fields for the orm stage (outcome reward model).",
        title="outcome reward model",
    )
)
PRM = register_stage(
    Stage(
        "prm",
        _config,
        functools.partial(run_reward_model, kind="process"),
        order=21,
        role="reward_model",
        output="model",
        help="RewardModelStageConfig fields for the prm stage (process reward model).",
        title="process reward model",
    )
)
