"""MkDocs hook: the pages' parts that would drift, generated from the code at build time.

A page holds a marker; when MkDocs renders it the marker is replaced (``GENERATED``):

* ``<!-- recipe-reference -->`` (``reference/recipe.md``): ``recipe_reference_markdown()``, every top-level
  recipe key (the fields of ``trl_reasoning.recipes.Recipe``) and, for every registered stage, the fields
  of its section's config class (``trl_reasoning.stages.get_stage(name).config()``), each with its type,
  default and help;
* ``<!-- recipe-list -->``: one row per ``recipes/*.yaml``, from the file's header comment;
* ``<!-- module-list -->``: one row per module of the package and per benchmark script, from its docstring.

A stage's config usually extends a TRL or transformers class (``trl.SFTConfig``, ``trl.GRPOConfig``,
``transformers.TrainingArguments``). Its section lists the fields the project adds or changes; the fields
it inherits unchanged are listed once, under that base class. ``tests/test_docs.py`` imports this file
(no MkDocs needed) and checks the reference against ``trl-reasoning train --help``.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `mkdocs build` from a checkout whose package is not installed
    sys.path.insert(0, str(ROOT))
MARKER = "<!-- recipe-reference -->"
_MISSING = dataclasses.MISSING


# ------------------------------------------------------------------ structure


def _default(f: dataclasses.Field):
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return _MISSING


def _key(f: dataclasses.Field) -> tuple:
    """What a reader sees of a field: changed type, default or help makes it the subclass's own."""
    return (str(f.type), repr(_default(f)), " ".join(str(f.metadata.get("help", "")).split()))


def _external(cls: type) -> bool:
    return not cls.__module__.startswith("trl_reasoning")


def _public_name(cls: type) -> str:
    module = cls.__module__
    if module.startswith("trl."):
        return f"trl.{cls.__name__}"
    if module.startswith("transformers."):
        return f"transformers.{cls.__name__}"
    return f"{module}.{cls.__name__}"


def _base(cls: type) -> type | None:
    """The nearest external (TRL / transformers), public dataclass ``cls`` inherits from, else None."""
    for parent in cls.__mro__[1:]:
        if dataclasses.is_dataclass(parent) and _external(parent) and not parent.__name__.startswith("_"):
            return parent
    return None


def own_fields(cls: type) -> tuple[list[dataclasses.Field], type | None]:
    """``cls``'s fields that are new or changed over its nearest external base, and that base."""
    base = _base(cls)
    inherited = {f.name: _key(f) for f in dataclasses.fields(base)} if base else {}
    own = [f for f in dataclasses.fields(cls) if inherited.get(f.name) != _key(f)]
    return own, base


def recipe_reference() -> dict:
    """The reference as data: ``top_level`` (Recipe fields but ``sections``), ``stages`` (name -> config
    class, its own fields, its base) and ``bases`` (each external base class used, with its own fields)."""
    from trl_reasoning.recipes import Recipe
    from trl_reasoning.stages import get_stage, stage_names

    top = [f for f in dataclasses.fields(Recipe) if f.name != "sections"]
    stages, bases = {}, {}
    for name in stage_names():
        stage = get_stage(name)
        config = stage.config()
        if _external(config):
            own, base = [], config
        else:
            own, base = own_fields(config)
        stages[name] = {"config": config, "fields": own, "base": base, "help": stage.help,
                        "all_fields": [f.name for f in dataclasses.fields(config)]}
        while base is not None and base not in bases:
            fields, parent = own_fields(base)
            bases[base] = {"fields": fields, "base": parent}
            base = parent
    return {"top_level": top, "stages": stages, "bases": bases}


def reference_keys() -> dict[str, set[str]]:
    """Key names the reference documents: ``top_level``, and per stage every field of its section."""
    data = recipe_reference()
    keys = {"top_level": {f.name for f in data["top_level"]}}
    for name, info in data["stages"].items():
        listed = {f.name for f in info["fields"]}
        base = info["base"]
        while base is not None:
            listed |= {f.name for f in data["bases"][base]["fields"]}
            base = data["bases"][base]["base"]
        keys[name] = listed
    return keys


# ------------------------------------------------------------------ markdown


_CODE_RE = re.compile(r"(``.+?``|`[^`]+`)")


def _cell(text: str) -> str:
    """``text`` as one markdown table cell: one line, markup characters escaped outside code spans."""
    parts = _CODE_RE.split(" ".join(str(text).split()))
    for i, part in enumerate(parts):
        if i % 2:  # a code span: only the cell separator needs escaping
            parts[i] = part.replace("|", "\\|")
        else:
            part = part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            parts[i] = re.sub(r"([\\|*_\[\]`])", r"\\\1", part)
    return "".join(parts)


def _type(annotation) -> str:
    text = annotation if isinstance(annotation, str) else str(annotation)
    text = text.replace("typing.", "").replace("<class '", "").replace("'>", "")
    return re.sub(r"\b(?:[a-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text)  # module paths off: IntervalStrategy


def _value(f: dataclasses.Field) -> str:
    value = _default(f)
    if value is _MISSING:
        return "required"
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def fields_table(fields: list[dataclasses.Field]) -> str:
    rows = ["| key | type | default | help |", "| --- | --- | --- | --- |"]
    for f in fields:
        rows.append(f"| `{f.name}` | {_cell(_type(f.type))} | {_cell(_value(f))} | "
                    f"{_cell(f.metadata.get('help', ''))} |")
    return "\n".join(rows)


def _anchor(cls: type) -> str:
    return "base-" + _public_name(cls).lower().replace(".", "-").replace("_", "-")


def _base_line(base: type | None, listed: bool) -> str:
    if base is None:
        return ""
    link = f"[`{_public_name(base)}`](#{_anchor(base)})"
    if not listed:
        return f"\n\nIts fields are those of {link}.\n"
    return f"\n\nPlus every other field of {link}, unchanged.\n"


def recipe_reference_markdown() -> str:
    data = recipe_reference()
    parts = ["## Top-level keys { #top-level }", "",
             "The fields of `trl_reasoning.recipes.Recipe`.", "", fields_table(data["top_level"]), "",
             "## Stage sections { #stages }", "",
             "One section per registered stage, in run order; each key is a field of the stage's config "
             "class."]
    for name, info in data["stages"].items():
        config = info["config"]
        parts += ["", f"### `{name}` {{ #stage-{name.replace('_', '-')} }}", "",
                  f"{_cell(info['help'])} Config class: `{_public_name(config)}`, "
                  f"{len(info['all_fields'])} fields."]
        if info["fields"]:
            parts += ["", fields_table(info["fields"])]
        parts.append(_base_line(info["base"], bool(info["fields"])))
    parts += ["## Inherited fields { #inherited }", "",
              "Fields of the TRL and transformers classes the sections extend, as installed when these pages "
              "were built."]
    for base, info in data["bases"].items():
        parts += ["", f"### `{_public_name(base)}` {{ #{_anchor(base)} }}", ""]
        if info["base"] is not None:
            parts.append(f"The fields it adds to or changes in `{_public_name(info['base'])}`:")
            parts.append("")
        parts.append(fields_table(info["fields"]))
        parts.append(_base_line(info["base"], True))
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------ recipes and modules


def _summary(text: str, limit: int = 240) -> str:
    """``text`` on one line; past ``limit`` characters, up to its first sentence's end."""
    text = " ".join(text.split())
    match = re.search(r"(?<!\.)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z(`])", text)
    return text[:match.start() + 1] if len(text) > limit and match else text


def recipe_summary(path: Path) -> str:
    """What a recipe runs: the first sentence of its header comment (before its command lines)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or line.startswith("#  "):
            break
        lines.append(line.lstrip("#").strip())
    return _summary(" ".join(lines), limit=0)


def recipe_list_markdown() -> str:
    rows = ["| recipe | what |", "| --- | --- |"]
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        rows.append(f"| `recipes/{path.name}` | {_cell(recipe_summary(path))} |")
    return "\n".join(rows) + "\n"


def module_summary(path: Path) -> str:
    """The first sentence of a module's docstring (read without importing it)."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return _summary(doc.split("\n\n")[0])


def _module_rows(paths: list[Path]) -> list[str]:
    rows = ["| module | what |", "| --- | --- |"]
    for path in paths:
        rows.append(f"| `{path.relative_to(ROOT).as_posix()}` | {_cell(module_summary(path))} |")
    return rows


def module_list_markdown() -> str:
    package = ROOT / "trl_reasoning"
    groups = {"the package": sorted(package.glob("*.py"))}
    for folder in sorted(p for p in package.iterdir() if p.is_dir() and any(p.glob("*.py"))):
        groups[f"`trl_reasoning/{folder.name}/`"] = sorted(folder.glob("*.py"))
    groups["benchmarks"] = sorted((ROOT / "benchmarks").glob("*.py"))
    parts = []
    for title, paths in groups.items():
        parts += [f"### {title[:1].upper() + title[1:]}", "", *_module_rows(paths), ""]
    return "\n".join(parts)


GENERATED = {
    MARKER: recipe_reference_markdown,
    "<!-- recipe-list -->": recipe_list_markdown,
    "<!-- module-list -->": module_list_markdown,
}


def on_page_markdown(markdown: str, page, config, files):  # MkDocs hook
    for marker, build in GENERATED.items():
        if marker in markdown:
            markdown = markdown.replace(marker, build())
    return markdown
