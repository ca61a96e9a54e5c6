"""The stage registry and the one stage skeleton every stage runs through.

A ``Stage`` declares its name, its recipe section's config class, where it runs in a recipe
(``order``), what it starts from and what it leaves (``role``), and a ``run(ctx, folder)`` that does
the work. ``run_stage`` does the rest for every stage alike: skip it when ``stage_complete.json`` says
it finished (resume), write that marker (with the task card on the model it saved) when it does, and
hand its product to the stages after it. Register a new stage with ``register_stage``: recipes accept
its name in ``stages`` and its section at once.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..distributed import world
from ..errors import RecipeError
from ..progress import DONE  # "stage_complete.json"
from ..reporting import machine, peak_memory_gib, write_json_atomic

ROLES = ("policy", "reward_model", "rl", "eval")


@dataclass(frozen=True)
class Stage:
    """One step of a recipe.

    Attributes:
        name: the stage's name in ``stages`` and its section's key (also its folder in ``output_dir``).
        config: returns the class whose fields the section holds (called lazily: ``--help`` stays fast).
        run: ``run(ctx, folder) -> dict`` does the work into ``folder`` and returns what the completion
            marker records (``cumulative_samples`` for stages that sample training data).
        order: where the stage runs, whatever order the recipe lists it in (sft 10 ... eval 90).
        role: ``policy`` (its model is what later stages start from), ``reward_model`` (dense rewards,
            reranking), ``rl`` (a policy the eval stage compares, trained from the current policy) or
            ``eval`` (runs every time; resumes per model itself).
        output: the product's path inside ``folder`` (``""``: the folder itself).
        help: one line for ``train --help``.
        title: what the run's progress lines call it (default: its name).
        evaluated_as: for ``rl`` stages, ``(folder, record) -> {name: conditioning}``: the eval entries
            this stage's model appears as (default: one entry, its name, unconditioned).
    """

    name: str
    config: Callable[[], type]
    run: Callable[..., dict]
    order: int
    role: str = "rl"
    output: str = "final_model"
    help: str = ""
    title: str = ""
    evaluated_as: Callable[[Path, dict], dict[str, dict]] | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"Stage {self.name!r}: role must be one of {', '.join(ROLES)}, got "
                             f"{self.role!r}")


_REGISTRY: dict[str, Stage] = {}


def register_stage(stage: Stage, replace: bool = False) -> Stage:
    """Make ``stage`` available to recipes by its name."""
    if stage.name in _REGISTRY and not replace and _REGISTRY[stage.name] != stage:
        raise ValueError(f"register_stage: {stage.name!r} is already registered; pass replace=True")
    _REGISTRY[stage.name] = stage
    return stage


def get_stage(name: str) -> Stage:
    """The registered stage ``name``; one ``RecipeError`` line for an unknown one."""
    if name not in _REGISTRY:
        raise RecipeError(f"recipe: unknown stage {name!r}; expected one of {', '.join(stage_names())}")
    return _REGISTRY[name]


def stage_names() -> list[str]:
    """Registered stage names in run order."""
    return [s.name for s in sorted(_REGISTRY.values(), key=lambda s: s.order)]


@dataclass
class RunContext:
    """What a recipe's stages share while it runs: the recipe, the process state, the datasets and the
    products of the stages so far (``policy``: what the next stage starts from)."""

    recipe: object
    state: object
    initial: str
    sft_train: object
    rl_train: object
    held_out: object
    policy: str = ""
    models: dict[str, str] = field(default_factory=dict)
    reward_models: dict[str, str] = field(default_factory=dict)
    conditioning: dict[str, dict] = field(default_factory=dict)
    samples_used: dict[str, int] = field(default_factory=dict)
    stage_records: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        self.policy = self.policy or self.initial

    def folder(self, name: str) -> Path:
        return Path(self.recipe.output_dir) / name

    @property
    def policy_fine_tuned(self) -> bool:
        """Whether a stage of this run fine-tuned the current policy (on the training prompts)."""
        return self.policy != self.initial

    def as_policy_sees(self, dataset, fine_tuning: bool = False):
        """``dataset`` with the prompts the model in question takes: its training prompts
        (``prompted_as_trained``) once this run fine-tuned the policy, or for a model being fine-tuned
        now (``fine_tuning``: SFT and EI/RCRL rounds train on them); else ``prompt``. Every stage asks
        here, so a model is sampled in the format it was trained on wherever it is sampled."""
        from ..tasks import prompted_as_trained

        return prompted_as_trained(dataset) if fine_tuning or self.policy_fine_tuned else dataset

    def record(self, stage: Stage, folder: Path, done: dict) -> None:
        """Hand a finished stage's product to the stages after it."""
        product = str(folder / stage.output) if stage.output else str(folder)
        self.stage_records[stage.name] = done
        if stage.role == "policy":
            self.policy = self.models[stage.name] = product
        elif stage.role == "reward_model":
            self.reward_models[stage.name] = product
        elif stage.role == "rl":
            entries = stage.evaluated_as(folder, done) if stage.evaluated_as else {stage.name: {}}
            for name, condition in entries.items():
                self.models[name] = product
                if condition:
                    self.conditioning[name] = condition
                if "cumulative_samples" in done:
                    self.samples_used[name] = done["cumulative_samples"]


def run_stage(ctx: RunContext, name: str) -> dict:
    """Run stage ``name`` (or skip it when a previous run finished it) and record its product in
    ``ctx``; returns its completion record (the eval stage: its results)."""
    stage = get_stage(name)
    folder = ctx.folder(name)
    if stage.role == "eval":
        return stage.run(ctx, folder)
    if not (folder / DONE).exists():
        start = time.perf_counter()
        done = stage.run(ctx, folder) or {}
        # wall time of this (last) attempt; peak resident memory of the run's processes so far; the CPU
        # and cores it ran on, as the same recipe and seed give other figures on another machine
        done = {**done, **world(ctx.state), "wall_seconds": round(time.perf_counter() - start, 1),
                "peak_memory_gib": peak_memory_gib(), "machine": machine()}
        model = folder / stage.output if stage.output else folder
        mark_done(folder, done, ctx.state, model if stage.role in ("policy", "rl") else None, ctx.recipe)
    done = json.loads((folder / DONE).read_text())
    ctx.record(stage, folder, done)
    return done


def mark_done(folder: Path, info: dict, state, model_folder: Path | None = None, recipe=None) -> None:
    """Mark a stage complete; ``model_folder`` (the policy it saved) gets the recipe's task card."""
    if state.is_main_process:
        if model_folder is not None and recipe is not None:
            from ..task_card import write_task_card

            write_task_card(model_folder, recipe)
        write_json_atomic(folder / DONE, info)
    state.wait_for_everyone()


def _rename_checkpointing(config_cls, values: dict) -> None:
    """transformers >= 5.2x renamed ``gradient_checkpointing`` to ``activation_checkpointing`` and warns on
    every config that sets the old name (TRL's configs default it to True): pass the value, recipe or
    TRL default, under the new name, so runs stay quiet and behave the same."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if "activation_checkpointing" not in fields or values.get("activation_checkpointing") is not None:
        return
    default = fields["gradient_checkpointing"].default if "gradient_checkpointing" in fields else None
    values["activation_checkpointing"] = values.pop("gradient_checkpointing", default)


def slow_bf16_cpu() -> bool:
    """An x86 CPU without bf16 units (AMX, AVX512-BF16), where bf16 autocast falls to slow kernels
    (measured on an AMD EPYC with AVX2: 1.2 GFLOP/s against 113 in float32 at SmolLM2's MLP shape)."""
    import platform

    from ..sampling.vllm_backend import cpu_has_native_bf16

    return platform.machine().lower() in ("x86_64", "amd64", "i686") and not cpu_has_native_bf16()


def stage_config(config_cls, section: dict, output_dir: Path, seed: int, section_name: str = "",
                 **defaults):
    """Build a stage's TRL config; CPU-safe defaults when no GPU is present; one-line errors; a one-line
    warning naming the recipe key (``section_name``) for bf16 on a CPU without bf16 units."""
    import torch

    values = {"output_dir": str(output_dir), "seed": seed, "report_to": "none", **defaults, **section}
    if not torch.cuda.is_available():
        values.setdefault("use_cpu", True)
        values.setdefault("bf16", False)
        if values["bf16"] and slow_bf16_cpu():
            warnings.warn(f"{section_name or config_cls.__name__}.bf16: true on a CPU without bf16 units "
                          "(AMX, AVX512-BF16): bfloat16 matmuls ran ~100x slower than float32 on an AVX2 "
                          "CPU (benchmarks/ppo_step_profile.py); set bf16: false", stacklevel=2)
    if "project" in {f.name for f in dataclasses.fields(config_cls)}:
        values.setdefault("project", "trl-reasoning")  # trackers group a run's stages under one project
    _rename_checkpointing(config_cls, values)
    try:
        return config_cls(**values)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"recipe: {config_cls.__name__}: {str(err).strip().splitlines()[0]}") from None


def training_eval_callbacks(ctx, folder: Path, fine_tuning: bool = False) -> list:
    """The recipe's ``training_eval`` as a ``ReasoningEvalCallback`` on the held-out questions, writing
    into ``folder/reasoning_eval`` (empty without one); the stage's trainer binds it. The questions carry
    the prompts the trained model takes (``RunContext.as_policy_sees``; ``fine_tuning`` for stages that
    fine-tune on the training prompts)."""
    section = ctx.recipe.training_eval
    if not section or ctx.held_out is None:
        return []
    from ..eval_callback import ReasoningEvalCallback, TrainingEvalSettings

    try:
        settings = TrainingEvalSettings(**section)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"recipe: training_eval: {str(err).strip().splitlines()[0]}") from None
    held_out = ctx.as_policy_sees(ctx.held_out, fine_tuning)
    if settings.limit:
        held_out = held_out.select(range(min(settings.limit, len(held_out))))
    return [ReasoningEvalCallback(None, held_out, ctx.recipe.task, settings.eval_settings(),
                                  eval_steps=settings.eval_steps, output_dir=Path(folder) / "reasoning_eval")]


def time_budget_callbacks(ctx) -> list:
    """The recipe's ``time_budget_seconds`` as a ``WallClockBudget`` for an RL stage's trainer (empty
    without one)."""
    if not ctx.recipe.time_budget_seconds:
        return []
    from ..time_budget import WallClockBudget

    return [WallClockBudget(ctx.recipe.time_budget_seconds)]


def peft_config(recipe):
    """The recipe's ``peft`` section as a ``LoraConfig`` (``None`` without one)."""
    if not recipe.peft:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **recipe.peft)


def quantization_config(recipe):
    """The recipe's ``quantization`` section as a ``BitsAndBytesConfig`` (``None`` without one)."""
    if not recipe.quantization:
        return None
    import importlib.util

    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise RecipeError("recipe: 'quantization' needs bitsandbytes: "
                          "pip install 'trl-reasoning[quantization]'")
    from ..distributed import deepspeed_enabled

    # its engine saves the 4-bit adapter model, not the merged full-precision one; DeepSpeed comes from the
    # launch (accelerate's config) or from a stage section's own `deepspeed:` training argument
    sections = [name for name in recipe.stages if (recipe.section(name) or {}).get("deepspeed")]
    if deepspeed_enabled() or sections:
        where = f"'{sections[0]}.deepspeed' is set" if sections else "the launch uses DeepSpeed"
        raise RecipeError(f"recipe: 'quantization' (QLoRA) does not run under DeepSpeed here ({where}); "
                          "launch with multi_gpu (DDP) or one process")
    try:
        return BitsAndBytesConfig(**recipe.quantization)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"recipe: quantization: {str(err).splitlines()[0]}") from None


def first(dataset, limit: int | None):
    """The first ``limit`` rows of ``dataset`` (all of them without a limit)."""
    return dataset.select(range(min(limit, len(dataset)))) if limit else dataset


def cached_rows(path: Path, make, state) -> list[dict]:
    """Rows of ``path`` if a previous run wrote it, else ``make()`` written atomically (main process)."""
    from ..reporting import read_jsonl, write_jsonl_atomic

    if path.exists():
        return read_jsonl(path)
    rows = make()
    if state.is_main_process:
        write_jsonl_atomic(path, rows)
    state.wait_for_everyone()
    return rows
