"""Choose a recipe's reward-model settings on the validation split: train its SFT policy once (a seed no
reported result uses, ``eval_split: validation``), then one ORM or PRM per setting from that policy, and
print each setting's AUROC on samples of the validation questions side by side. The chosen setting goes
into the recipe; the test split is then measured once, by the comparison.

    python benchmarks/reward_model_sweep.py --recipe recipes/compare_quickstart.yaml --stage orm \\
        --setting "as_recipe=" --setting "lr1e-3=--orm.learning_rate 1e-3" \\
        --setting "scalar=--orm.head scalar" [--seed 100] [--output runs/rm_sweep]

Every setting is a run folder of its own (``OUTPUT/<stage>_<name>/``) holding a copy of the shared SFT
policy, so a rerun skips what finished (the pipeline's own resume).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _train(recipe: str, folder: Path, stages: str, seed: int, extra: list[str]) -> float:
    """``trl-reasoning train`` on the validation split in a fresh process; its wall seconds."""
    command = [sys.executable, "-m", "trl_reasoning", "train", recipe, "--stages", stages,
               "--seed", str(seed), "--eval_split", "validation", "--output_dir", str(folder), *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _setting(text: str) -> tuple[str, list[str]]:
    name, sep, overrides = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"--setting {text!r}: expected NAME=OVERRIDES (OVERRIDES may be empty)")
    return name, shlex.split(overrides)


def sweep(recipe: str, stage: str, seed: int, output: Path, settings: list[tuple[str, list[str]]]) -> list:
    """One row per setting: its reward model's held-out (validation) figures and wall seconds."""
    base = output / "sft_base"
    _train(recipe, base, "sft", seed, [])  # skipped by the pipeline once done
    rows = []
    for name, overrides in settings:
        folder = output / f"{stage}_{name}"
        for shared in ("sft", "tiny_init"):  # the same SFT policy for every setting
            if (base / shared).is_dir() and not (folder / shared).exists():
                shutil.copytree(base / shared, folder / shared)
        wall = _train(recipe, folder, f"sft,{stage}", seed, overrides)
        heldout = json.loads((folder / stage / "metrics.json").read_text())["heldout"]
        rows.append({"setting": name, "overrides": " ".join(overrides), **heldout,
                     "wall_seconds": round(wall, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/compare_quickstart.yaml")
    parser.add_argument("--stage", choices=["orm", "prm"], default="orm")
    parser.add_argument("--seed", type=int, default=100, help="a seed no reported result uses")
    parser.add_argument("--setting", action="append", required=True, metavar="NAME=OVERRIDES")
    parser.add_argument("--output", default="runs/rm_sweep")
    args = parser.parse_args()
    output = Path(args.output)
    rows = sweep(args.recipe, args.stage, args.seed, output, [_setting(s) for s in args.setting])
    print(f"| {args.stage} setting | overrides | validation AUROC | accuracy | positive share | "
          "step accuracy | wall s (this run) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        step = r.get("step_accuracy")
        print(f"| {r['setting']} | `{r['overrides']}` | {r['final_auroc']:.3f} | {r['final_accuracy']:.3f} | "
              f"{r['positive_share']:.3f} | {'' if step is None else f'{step:.3f}'} | {r['wall_seconds']} |")
    (output / f"{args.stage}_sweep.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
