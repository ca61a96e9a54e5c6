"""Recipe values against config-class field annotations: loose runtime type checks, YAML coercions
(``2e-3`` read as a string, ``a,b`` for a list) and the one-line error naming the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from .errors import RecipeError, renamed_hint

__all__ = ["check_section"]


def _type_ok(value: Any, annotation: Any) -> bool:
    """Loose runtime check of a YAML value against a field annotation (unknown shapes pass)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple) or annotation in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return True


def _coerce_float(value: Any, annotation: Any) -> Any:
    """YAML 1.1 reads ``2e-3`` as a string: accept it where the field takes a float."""
    if not isinstance(value, str) or _type_ok(value, annotation) or not _type_ok(1.5, annotation):
        return value
    try:
        return float(value)
    except ValueError:
        return value


def _coerce_list(value: Any, annotation: Any) -> Any:
    """``--stages ei,eval`` on the command line: a comma-separated string where the field takes a list."""
    if not isinstance(value, str) or _type_ok(value, annotation) or not _type_ok([value], annotation):
        return value
    return [item.strip() for item in value.split(",") if item.strip()]


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


# values resolved before the config is built (auto: TRL's colocated vLLM when vLLM is installed and able)
_AUTO_FIELDS = {("ppo.", "use_vllm"), ("process_grpo.", "use_vllm"), ("grpo.", "use_vllm")}


def check_section(values: dict, config_cls, prefix: str) -> None:
    """Keys of ``values`` must be fields of ``config_cls`` with values of the field's type."""
    if not isinstance(values, dict):
        raise RecipeError(f"recipe: {prefix} must be a mapping of {config_cls.__name__} fields")
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls) if f.init}
    for key, value in list(values.items()):
        if key not in fields:
            raise RecipeError(
                f"recipe: unknown key '{prefix}{key}'{renamed_hint(key)}; "
                f"valid keys: {', '.join(sorted(fields))}"
            )
        annotation = hints.get(key, Any)
        value = values[key] = _coerce_list(_coerce_float(value, annotation), annotation)
        if value == "auto" and (prefix, key) in _AUTO_FIELDS:
            continue
        if not _type_ok(value, annotation):
            raise RecipeError(
                f"recipe: '{prefix}{key}' must be {_type_name(hints[key])}, got {value!r}"
            )
