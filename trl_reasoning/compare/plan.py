"""What a comparison runs: the recipe's shared stages and its ``compare.methods``, each a stage with the
recipe's sections overridden, all validated before any work starts.

    compare:
      budget: 8000                          # training samples every sampling method draws
      reference: ei                         # gaps are measured to this method
      methods:
        ei: {stage: ei}
        ei_reinit: {stage: ei, ei: {reinit_each_round: true}}
        ppo_dense_orm: {stage: ppo, ppo: {dense_rewards: [orm]}}
        sft_more: {stage: sft, sft: {num_train_epochs: 2}}   # SFT trained further, from the SFT policy

A method's sections are merged key by key over the recipe's (``ppo: {kl_coef: 0.1}`` changes one field).
Methods share each seed's data, SFT policy and reward models, so only stage sections,
``training_eval`` and ``time_budget_seconds`` may differ between them.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..errors import RecipeError
from ..recipes import Recipe, read_raw, recipe_from_raw
from ..stages import get_stage, stage_names

SHARED_ROLES = ("policy", "reward_model")  # stages run once per seed, before the methods
PLAN_KEYS = ("methods", "budget", "reference")


@dataclass(frozen=True)
class Method:
    """One row of the comparison: ``stage`` run with ``recipe``'s sections (its own overrides merged)."""

    name: str
    stage: str
    recipe: Recipe


@dataclass(frozen=True)
class ComparisonPlan:
    """The validated comparison: the base recipe, its shared stages, the methods and the budget."""

    recipe: Recipe
    shared_stages: list[str]
    methods: list[Method]
    budget: int | None
    reference: str
    baseline: str = "sft"

    def for_seed(self, recipe: Recipe, seed: int, folder: Path) -> Recipe:
        """``recipe`` run for ``seed`` into ``folder``."""
        return dataclasses.replace(recipe, seed=seed, output_dir=str(folder))


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _method(name: str, spec, raw: dict, path: Path) -> Method:
    if not isinstance(spec, dict) or "stage" not in spec:
        raise RecipeError(f"recipe: compare.methods.{name} must be a mapping with a 'stage' "
                          f"(one of {', '.join(stage_names())})")
    stage = get_stage(spec["stage"])
    if stage.role not in ("rl", "policy"):
        raise RecipeError(f"recipe: compare.methods.{name}.stage: {stage.name!r} trains no policy; expected "
                          "an RL stage (ei, ppo, rcrl, grpo, process_grpo, ...) or sft")
    overrides = {k: v for k, v in spec.items() if k != "stage"}
    allowed = set(stage_names()) | {"training_eval", "time_budget_seconds"}
    bad = sorted(set(overrides) - allowed)
    if bad:
        raise RecipeError(f"recipe: compare.methods.{name}.{bad[0]}: a method may override stage sections, "
                          "training_eval and time_budget_seconds only (methods share each seed's data and "
                          "SFT policy)")
    return Method(name, stage.name, recipe_from_raw(_deep_merge(raw, overrides), path))


def load_plan(path: str | Path, overrides: list[tuple[str, str]] = ()) -> ComparisonPlan:
    """The comparison of recipe ``path``; one ``RecipeError`` line on any problem."""
    raw = read_raw(path, overrides)
    recipe = recipe_from_raw(raw, path)
    section = recipe.compare
    methods = section.get("methods") if isinstance(section, dict) else None
    if not isinstance(methods, dict) or not methods:
        raise RecipeError("recipe: 'compare' needs 'methods': a mapping of NAME -> {stage: STAGE, ...}")
    bad = sorted(set(section) - set(PLAN_KEYS))
    if bad:
        raise RecipeError(f"recipe: unknown key 'compare.{bad[0]}'; valid keys: {', '.join(PLAN_KEYS)}")
    budget = section.get("budget")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1):
        raise RecipeError(f"recipe: 'compare.budget' must be a positive integer, got {budget!r}")
    base = {k: v for k, v in raw.items() if k != "compare"}
    methods = [_method(name, spec, base, Path(path)) for name, spec in section["methods"].items()]
    names = [m.name for m in methods]
    if "sft" in names:
        raise RecipeError("recipe: compare.methods: 'sft' names the shared SFT policy; name the method "
                          "otherwise")
    reference = section.get("reference", "ei" if "ei" in names else names[0])
    if reference not in names:
        raise RecipeError(f"recipe: 'compare.reference' must name a method ({', '.join(names)}), got "
                          f"{reference!r}")
    shared = [s for s in stage_names() if s in recipe.stages and get_stage(s).role in SHARED_ROLES]
    if not any(get_stage(s).role == "policy" for s in shared):
        raise RecipeError("recipe: a comparison needs an sft stage in 'stages' (every method starts from it)")
    return ComparisonPlan(recipe, shared, methods, budget, reference)


def select(plan: ComparisonPlan, only: list[str] | None) -> list[Method]:
    """The plan's methods named in ``only`` (all without it); one line for an unknown name."""
    if not only:
        return plan.methods
    names = [m.name for m in plan.methods]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise RecipeError(f"compare: --only {unknown[0]!r} is not a method of the recipe "
                          f"({', '.join(names)})")
    return [m for m in plan.methods if m.name in only]
