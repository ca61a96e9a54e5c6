"""The package's shape stays readable: no import cycles (module-level or local imports), small modules,
short functions. Static checks of the source, no imports of the package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trl_reasoning"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported(module: str, path: Path, node: ast.ImportFrom | ast.Import) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - node.level + 1]
    prefix = ".".join(base + [node.module] if node.module else base) if node.level else node.module
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Package module -> package modules it imports anywhere (a submodule import counts its package)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _imported(name, path, node):
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                parents = [".".join(target.split(".")[:i]) for i in range(2, target.count(".") + 1)]
                for hit in (target, *parents):
                    if hit and hit != name and not name.startswith(hit + "."):
                        graph[name].add(hit)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a path of module names, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_modules_are_small_and_functions_short():
    long_modules, long_functions = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(PACKAGE)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(
                        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {length} lines"
                    )
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def auto_class_loads(source: str) -> list[str]:
    """``AutoX.from_pretrained(...)`` calls in ``source`` (transformers' auto classes), as ``AutoX``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_pretrained" and isinstance(node.func.value, ast.Name)
                and node.func.value.id.startswith("Auto")):
            found.append(node.func.value.id)
    return found


def test_every_model_load_goes_through_the_one_loader():
    """Models and configs are loaded by ``loading.from_pretrained``/``load_config`` only, so the loading
    rules (paths checked, GGUF, dtype on CPU, whole weights under ZeRO-3, one-line errors) hold for
    every load. Tokenizers too (``load_tokenizer``)."""
    outside = {str(path.relative_to(PACKAGE)): calls for path in PACKAGE.rglob("*.py")
               if path.name != "loading.py" and (calls := auto_class_loads(path.read_text()))}
    assert outside == {}


def test_the_loader_check_finds_a_direct_load():
    assert auto_class_loads("from transformers import AutoConfig\nAutoConfig.from_pretrained('x')\n") == [
        "AutoConfig"]


LOADERS = {"load_model", "load_tokenizer", "load_config", "load_scalar_head_model", "load_reward_model",
           "from_pretrained"}


def test_every_model_load_says_whether_remote_code_may_run():
    """No module state decides it: every call of the project's loaders outside ``loading.py`` passes
    ``trust_remote_code=`` (or forwards ``**kwargs`` that carry it). Attribute calls such as
    ``AutoModel.from_pretrained`` are transformers' own and are not counted."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "loading.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in LOADERS:
                keywords = {k.arg for k in node.keywords}
                if "trust_remote_code" not in keywords and None not in keywords:  # None: a **kwargs splat
                    missing.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.func.id}")
    assert not missing, missing
