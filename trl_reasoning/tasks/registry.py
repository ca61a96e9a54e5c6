"""The one task registry: every part of the package (loading, prompts, sampling's stop pattern,
verifiers, rewards, config validation, help texts) looks a task up here by name."""

from __future__ import annotations

from .base import DataError, TaskSpec

TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Make ``spec`` usable everywhere by its name; registering a taken name needs ``replace=True``."""
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"register_task: expected a TaskSpec, got {type(spec).__name__}")
    if spec.name in TASKS and not replace and TASKS[spec.name] is not spec:
        raise DataError(f"task: {spec.name!r} is already registered; pass replace=True to override it")
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; one clear error for an unknown name."""
    if name not in TASKS:
        raise DataError(f"task: unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[name]


def task_names_help() -> str:
    """The registered task names, for help texts."""
    return ", ".join(TASKS)
