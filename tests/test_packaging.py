"""The built wheel, installed into a fresh virtual environment outside the clone: its ``trl-reasoning``
command lists and runs the shipped recipes by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fresh_venv(folder: Path) -> Path:
    """A new virtual environment whose only copy of this package is what gets installed into it; its
    dependencies (torch, TRL, ...) come from the test's environment through a ``.pth`` line, so nothing
    is downloaded. Directories a ``.pth`` adds are not site directories, so the clone's editable
    install (itself a ``.pth`` there) stays invisible."""
    import sysconfig
    import venv

    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _sources(target: Path) -> Path:
    """The files a wheel is built from, copied: the build writes its egg-info and build/ there, not into
    the checkout (where CI installs the vLLM environment from the same sources meanwhile)."""
    import shutil

    for name in ("pyproject.toml", "README.md", "LICENSE"):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)
    shutil.copytree(ROOT / "trl_reasoning", target / "trl_reasoning",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


def test_the_installed_wheel_lists_and_runs_the_shipped_recipes(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(_sources(tmp_path / "src"))], check=True,
                   capture_output=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("trl_reasoning-*.whl"))
    python = _fresh_venv(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True, capture_output=True, timeout=600)
    command = str(python.parent / "trl-reasoning")  # the console script the wheel installed
    away = tmp_path / "elsewhere"  # no recipes/ folder here: only the wheel's files can answer
    away.mkdir()
    where = _run([str(python), "-c", "import trl_reasoning; print(trl_reasoning.__file__)"], away)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout + where.stderr

    listing = _run([command, "recipes"], away)
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert names == sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    shown = _run([command, "recipes", "show", "quickstart"], away)
    assert shown.stdout == (ROOT / "recipes" / "quickstart.yaml").read_text()

    shrunk = ["--num_train_examples", "32", "--num_eval_examples", "8", "--output_dir", str(away / "run"),
              "--tiny", "{hidden_size: 32, num_layers: 1, num_heads: 2}", "--sft.num_train_epochs", "1",
              "--ei.num_rounds", "1", "--ei.num_generations", "2", "--ei.max_new_tokens", "16",
              "--ei.eval_num_generations", "1", "--eval.num_generations", "2", "--eval.max_new_tokens", "16"]
    run = _run([command, "train", "quickstart", *shrunk], away)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (away / "run" / "results.md").exists() and (away / "run" / "ei" / "final_model").is_dir()
