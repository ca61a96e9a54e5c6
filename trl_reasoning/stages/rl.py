"""The RL stages, each from the current policy (the sft stage's, else the initial model) on the same
train questions, so the eval table compares them like for like: ``ei`` and ``rcrl`` (rounds of
sample -> verify -> fine-tune; ``rounds_stage`` builds such a stage for any ``RoundsTrainer``) and
``ppo`` (TRL's on-policy loop with a value model, resumed from its last checkpoint)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..errors import RecipeError
from ..progress import DONE
from .base import (
    Stage,
    peft_config,
    quantization_config,
    register_stage,
    stage_config,
    time_budget_callbacks,
    training_eval_callbacks,
)


def rounds_stage(
    name: str,
    trainer_cls,
    config: Callable[[], type],
    order: int,
    help: str = "",
    title: str = "",
    trainer_kwargs: Callable | None = None,
    done_info: Callable | None = None,
    evaluated_as: Callable | None = None,
) -> Stage:
    """A stage that runs ``trainer_cls`` (a ``RoundsTrainer`` subclass, or a function building one from
    TRL's keyword arguments) with the stage's recipe section as its config.

    ``trainer_kwargs(ctx, args)`` adds constructor arguments; ``done_info(args)`` adds entries to the
    completion record (read back by ``evaluated_as``)."""

    def run(ctx, folder: Path) -> dict:
        from ..loading import with_remote_code
        from ..time_budget import budget_record, rounds_train_seconds

        recipe = ctx.recipe
        args = stage_config(
            config(),
            recipe.section(name),
            folder,
            recipe.seed,
            section_name=name,
            task=recipe.task,
            report_to=recipe.report_to,
            run_name=f"{Path(recipe.output_dir).name}-{name}",
            save_strategy="no",
        )
        with_remote_code(args, recipe.trust_remote_code)
        extra = trainer_kwargs(ctx, args) if trainer_kwargs else {}
        trainer = trainer_cls(
            model=ctx.policy,
            args=args,
            train_dataset=ctx.rl_train,
            eval_dataset=ctx.held_out,
            peft_config=peft_config(recipe),
            callbacks=training_eval_callbacks(ctx, folder, fine_tuning=True) + time_budget_callbacks(ctx),
            **_quantized(recipe),
            **extra,
        )
        # an SFT policy of this run was trained on the training prompts: sample it with them from round 1
        trainer.policy_fine_tuned = ctx.policy_fine_tuned
        history = trainer.train()
        trainer.save_model(str(folder / "final_model"))
        if args.push_to_hub:
            trainer.push_to_hub()
        info = done_info(args) if done_info else {}
        # train_seconds: the recorded time of rounds 1.. (resumes included), as a time budget counts it
        return {"rounds": len(history) - 1, "cumulative_samples": history[-1]["cumulative_samples"], **info,
                **budget_record(getattr(trainer, "callbacks", None)),
                "train_seconds": round(rounds_train_seconds(history), 1)}

    title = title or getattr(trainer_cls, "algorithm_name", "")
    return Stage(name, config, run, order=order, role="rl", help=help, title=title, evaluated_as=evaluated_as)


def step_reward_provider(source: str, ctx):
    """A dense step-reward provider: ``heuristic``, the run's ``orm``/``prm`` (else the recipe's
    ``reward_model``), or a reward-model folder / Hub id."""
    from ..reward_models import HeuristicStepReward, load_reward_model

    if source == "heuristic":
        return HeuristicStepReward()
    path = (ctx.reward_models.get(source) or ctx.recipe.reward_model) if source in ("orm", "prm") else source
    if not path:
        raise RecipeError(f"recipe: dense reward '{source}' needs an {source} stage or 'reward_model: PATH'")
    return load_reward_model(path, trust_remote_code=ctx.recipe.trust_remote_code)


# ------------------------------------------------------------------ ei and rcrl


def _ei_config():
    from ..trainers.expert_iteration_config import ExpertIterationConfig

    return ExpertIterationConfig


def _rcrl_config():
    from ..trainers.return_conditioned_config import ReturnConditionedConfig

    return ReturnConditionedConfig


def _ei_trainer(**kwargs):
    from ..trainers.expert_iteration_trainer import ExpertIterationTrainer

    return ExpertIterationTrainer(**kwargs)


def _rcrl_trainer(**kwargs):
    from ..trainers.return_conditioned_trainer import ReturnConditionedTrainer

    return ReturnConditionedTrainer(**kwargs)


def _rcrl_kwargs(ctx, args) -> dict:
    dense = args.tag_mode == "dense"
    return {"step_reward_func": step_reward_provider(args.step_reward, ctx) if dense else None}


def _rcrl_info(args) -> dict:
    return {"good_token": args.good_token, "tag_mode": args.tag_mode}


def rcrl_conditioning(folder: str | Path, done: dict | None = None) -> dict:
    """How to evaluate a finished RCRL stage conditioned on its good tag: the prompt suffix and, for
    dense tags, the token forced after every step."""
    done = done or json.loads((Path(folder) / DONE).read_text())
    forced = done["good_token"] if done.get("tag_mode") == "dense" else None
    return {"suffix": done["good_token"], "force_after_steps": forced}


def _rcrl_entries(folder: Path, done: dict) -> dict[str, dict]:
    """An RCRL policy is evaluated twice: conditioned on its good tag, and as it is."""
    return {folder.name: rcrl_conditioning(folder, done), f"{folder.name} unconditioned": {}}


EI = register_stage(rounds_stage(
    "ei", _ei_trainer, _ei_config, order=30,
    help="ExpertIterationConfig fields for the ei stage.", title="Expert Iteration",
))
RCRL = register_stage(
    rounds_stage(
        "rcrl",
        _rcrl_trainer,
        _rcrl_config,
        order=32,
        help="ReturnConditionedConfig fields for the rcrl stage.",
        title="return-conditioned RL",
        trainer_kwargs=_rcrl_kwargs,
        done_info=_rcrl_info,
        evaluated_as=_rcrl_entries,
    )
)


# ------------------------------------------------------------------ ppo


def _ppo_config():
    from ..trainers.ppo_config import PPOConfig

    return PPOConfig


def rl_dataset(dataset):
    """The columns TRL's GRPOTrainer passes to reward functions (no nested extras)."""
    keep = [c for c in ("id", "prompt", "answer", "solution") if c in dataset.column_names]
    return dataset.select_columns(keep)


def resolve_use_vllm(value, policy_ref: str, trust_remote_code: bool = False) -> bool:
    """A PPO (or GRPO) section's ``use_vllm``: true, false, or ``auto`` (TRL's colocated vLLM engine when
    vLLM is installed and can serve the policy)."""
    if value != "auto":
        return value
    from ..loading import load_config
    from ..sampling import vllm_installed
    from ..sampling.vllm_backend import unservable_reason

    config = load_config(policy_ref, trust_remote_code=trust_remote_code)
    return vllm_installed() and unservable_reason(config) is None


def run_ppo(ctx, folder: Path) -> dict:
    """PPO from the policy on the train questions; resumes from the last TRL checkpoint after a crash."""
    from ..trainers.ppo_trainer import PPOTrainer

    return _run_on_policy(ctx, folder, "ppo", _ppo_config(), PPOTrainer, "dense_reward_funcs")


def _run_on_policy(ctx, folder: Path, name: str, config: type, trainer_cls,
                   providers_kwarg: str | None) -> dict:
    """A TRL on-policy trainer (``trainer_cls``, built like GRPOTrainer) from the policy on the train
    questions, with the correctness reward and the section's ``dense_rewards`` as step-reward providers
    (``providers_kwarg``; None for TRL's own GRPOTrainer); resumes from its last checkpoint; saves a plain
    causal LM (LoRA merged) as ``final_model``."""
    from .._compat import (
        distributed_env,
        enable_vllm_colocate_on_cpu,
        last_complete_checkpoint,
        restore_distributed_env,
    )
    from ..eval_callback import bind_callbacks
    from ..loading import keep_training_layout, load_tokenizer, with_remote_code
    from ..rewards import CorrectnessReward

    recipe, section = ctx.recipe, ctx.recipe.section(name)
    section = {**section, "use_vllm": resolve_use_vllm(section.get("use_vllm", False), ctx.policy,
                                                               recipe.trust_remote_code)}
    # two checkpoints kept: transformers deletes the older one before the newer is marked whole, so a
    # kill in between would otherwise leave none to resume from
    args = stage_config(config, section, folder, recipe.seed, section_name=name, report_to=recipe.report_to,
                        save_strategy="steps", save_steps=50, save_total_limit=2)
    if "save_steps" not in section:
        args.save_steps = generation_aligned(50, args)
    with_remote_code(args, recipe.trust_remote_code)
    budget = time_budget_callbacks(ctx)
    args.restore_callback_states_from_checkpoint = bool(budget)  # a resumed stage counts the time spent
    # TRL's colocated engine overwrites the launch variables; PPO and process GRPO put them back
    # themselves, TRL's GRPOTrainer does not
    launch_env = distributed_env()
    if args.use_vllm:  # TRL's own GRPOTrainer too: its weight sync fails on CPU (PPO's sets this itself)
        enable_vllm_colocate_on_cpu()
    providers = {providers_kwarg: [step_reward_provider(source, ctx) for source in args.dense_rewards]
                 } if providers_kwarg else {}
    trainer = trainer_cls(
        model=ctx.policy,
        reward_funcs=[CorrectnessReward(recipe.task)],
        args=args,
        train_dataset=rl_dataset(ctx.as_policy_sees(ctx.rl_train)),
        processing_class=load_tokenizer(ctx.policy, padding_side="left",
                                        trust_remote_code=recipe.trust_remote_code),
        peft_config=peft_config(recipe),
        callbacks=(callbacks := training_eval_callbacks(ctx, folder)) + budget,
        **_quantized(recipe),
        **providers,
    )
    bind_callbacks(trainer, callbacks)
    if recipe.quantization:  # TRL loaded the 4-bit policy: it samples rollouts between training steps
        keep_training_layout(trainer.model)
    last = last_complete_checkpoint(folder, trainer_cls)
    try:
        trainer.train(resume_from_checkpoint=last)
    finally:  # left set, the next stage's barrier fails once the engine tore its group down
        restore_distributed_env(launch_env)
    return {**_save_on_policy(trainer, ctx, folder), "resumed_from": Path(last).name if last else None}


def _save_on_policy(trainer, ctx, folder: Path) -> dict:
    """Save a trained on-policy trainer's policy as a plain causal LM (``final_model``) and its whole log
    (``trainer_state.json``: a budget's stop falls after the last checkpoint); its record's entries."""
    from ..eval_callback import ReasoningEvalCallback, samples_drawn
    from ..metrics import reward_trend
    from ..time_budget import budget_record
    from ..trainers.sft import merged_into_full_precision

    if ctx.recipe.quantization:  # QLoRA: the adapters go into the full-precision policy, not the 4-bit base
        trainer.model = merged_into_full_precision(trainer, ctx.policy, folder / "adapter")
    elif hasattr(trainer.model, "merge_and_unload"):  # LoRA: the eval stage and vLLM load a plain causal LM
        trainer.model = trainer.model.merge_and_unload()
    trainer.save_model(str(folder / "final_model"))
    trainer.processing_class.save_pretrained(str(folder / "final_model"))
    if trainer.is_world_process_zero():
        trainer.state.save_to_json(str(folder / "trainer_state.json"))
    trend = reward_trend(trainer.state.log_history)  # the rollout reward's slope per 100 steps
    # train_seconds: the budget's clock (resumes included), else the training-time evaluations' clock
    clock = [c.training_seconds() for c in trainer.callback_handler.callbacks
             if isinstance(c, ReasoningEvalCallback)]
    return {"cumulative_samples": samples_drawn(trainer, trainer.state.global_step),
            "steps": trainer.state.global_step, **({"reward_trend": trend} if trend else {}),
            **({"train_seconds": round(clock[0], 1)} if clock else {}),
            **budget_record(trainer.callback_handler.callbacks)}  # restored from a checkpoint, maybe


def _quantized(recipe) -> dict:
    """``quantization_config`` for a trainer when the recipe quantizes (QLoRA), else nothing: trainers
    built by user functions need not know the argument."""
    config = quantization_config(recipe)
    return {"quantization_config": config} if config is not None else {}


def generation_aligned(steps: int, args) -> int:
    """The first multiple of a generation cycle at or above ``steps``: one batch of completions trains
    ``steps_per_generation x num_iterations`` micro-batches (TRL's ``generate_every``), that is this
    divided by ``gradient_accumulation_steps`` optimizer steps. A checkpoint there holds no half-used
    batch, so a resumed run samples nothing twice and draws exactly the budget."""
    accumulation = max(getattr(args, "gradient_accumulation_steps", 1) or 1, 1)
    generations = max(getattr(args, "steps_per_generation", None) or accumulation, 1)
    cycle = max(generations * max(getattr(args, "num_iterations", 1), 1) // accumulation, 1)
    return cycle * -(-steps // cycle)


PPO = register_stage(Stage("ppo", _ppo_config, run_ppo, order=31, role="rl",
                           help="PPOConfig fields for the ppo stage.", title="PPO"))


# ------------------------------------------------------------------ process-supervised GRPO


def _process_grpo_config():
    from ..trainers.process_grpo_config import ProcessGRPOConfig

    return ProcessGRPOConfig


def run_process_grpo(ctx, folder: Path) -> dict:
    """GRPO with step rewards normalised within each group (DeepSeekMath's process supervision)."""
    from ..trainers.process_grpo_trainer import ProcessGRPOTrainer

    return _run_on_policy(ctx, folder, "process_grpo", _process_grpo_config(), ProcessGRPOTrainer,
                          "step_reward_funcs")


PROCESS_GRPO = register_stage(Stage(
    "process_grpo", _process_grpo_config, run_process_grpo, order=34, role="rl",
    help="ProcessGRPOConfig fields for the process_grpo stage.", title="process-supervised GRPO",
))


# ------------------------------------------------------------------ TRL's own GRPO, as a TRL user runs it


def _grpo_config():
    from trl import GRPOConfig

    return GRPOConfig


def run_grpo(ctx, folder: Path) -> dict:
    """TRL's ``GRPOTrainer`` with the project's correctness reward, TRL's defaults unless the ``grpo``
    section sets a field: the baseline a TRL user would run."""
    from trl import GRPOTrainer

    return _run_on_policy(ctx, folder, "grpo", _grpo_config(), GRPOTrainer, None)


GRPO = register_stage(Stage(
    "grpo", _grpo_config, run_grpo, order=33, role="rl",
    help="trl.GRPOConfig fields for the grpo stage (TRL's GRPOTrainer, correctness reward).",
    title="TRL GRPO",
))
