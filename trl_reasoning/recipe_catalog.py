"""The recipes shipped with the package (``trl_reasoning/recipe_files/``, the clone's ``recipes/``), so an
installed wheel runs them by name: ``trl-reasoning train quickstart``, ``trl-reasoning recipes`` lists
them, ``trl-reasoning recipes show NAME > my.yaml`` starts a recipe of your own."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import RecipeError


def _folder() -> Path:
    return Path(str(resources.files("trl_reasoning") / "recipe_files"))


def recipe_names() -> list[str]:
    """Names of the shipped recipes (file names without ``.yaml``)."""
    return sorted(p.stem for p in _folder().glob("*.yaml"))


def summary(name: str) -> str:
    """A shipped recipe's first comment line (what it runs), cut at its first sentence."""
    for line in (_folder() / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("# ").strip()
            return text.split(". ")[0].rstrip(".:,")
    return ""


def resolve_recipe(reference: str) -> Path:
    """A recipe file: ``reference`` itself when it is a path that exists, else the shipped recipe of that
    name (``quickstart`` or ``quickstart.yaml``); one ``RecipeError`` line otherwise."""
    path = Path(reference).expanduser()
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    shipped = _folder() / f"{name}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise RecipeError(f"recipe: file {reference!r} does not exist and is not a shipped recipe; shipped: "
                      f"{', '.join(recipe_names())} (trl-reasoning recipes)")


def recipes_command(argv: list[str]) -> str:
    """``recipes`` lists the shipped recipes, one line each; ``recipes show NAME`` prints one."""
    if argv[:1] == ["show"]:
        if len(argv) != 2:
            raise RecipeError("recipes show: expected one recipe name, e.g. 'trl-reasoning recipes show "
                              "quickstart'")
        text = resolve_recipe(argv[1]).read_text()
        print(text, end="")
        return text
    if argv:
        raise RecipeError(f"recipes: unknown argument(s) {argv}; expected nothing or 'show NAME'")
    width = max(map(len, recipe_names()))
    text = "\n".join(f"{name:<{width}}  {summary(name)}" for name in recipe_names())
    print(text)
    return text
