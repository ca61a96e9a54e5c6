"""Why the same SFT recipe lands at different held-out maj@1 on different machines: train the comparison's
SFT stage with 1 and 2 torch threads (the same seed, the same machine) and at two learning rates, then
print, side by side, greedy maj@1 on the 1000 held-out questions, the largest weight difference between
the 1- and 2-thread models, and the wall time. Different thread counts change the order of floating-point
sums (as another CPU's kernels do); if that alone moves maj@1 by several points, the spread across
machines is the training's sensitivity, not a bug, and a lower learning rate should shrink it.

    python benchmarks/sft_stability.py [--recipe recipes/compare_quickstart.yaml] [--seed 0]
        [--learning-rates 3e-3 1e-3] [--output runs/sft_stability]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def train(recipe: str, seed: int, lr: float, threads: int, folder: Path) -> float:
    """SFT then a greedy-only eval in a fresh process with ``threads`` torch threads; wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "trl_reasoning", "train", recipe, "--stages", "sft,eval",
               "--seed", str(seed), "--output_dir", str(folder), "--sft.learning_rate", str(lr),
               "--eval.num_generations", "1"]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def max_weight_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return max(float((first[k].float() - second[k].float()).abs().max()) for k in first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/compare_quickstart.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[3e-3, 1e-3])
    parser.add_argument("--output", default="runs/sft_stability")
    args = parser.parse_args()
    rows = []
    for lr in args.learning_rates:
        folders = {}
        for threads in (1, 2):
            folder = Path(args.output) / f"lr{lr:g}_threads{threads}"
            done = (folder / "results.json").exists()
            wall = float("nan") if done else train(args.recipe, args.seed, lr, threads, folder)
            results = json.loads((folder / "results.json").read_text())
            maj = results["sft"]["metrics"]["maj@1"]
            low, high = results["sft"]["confidence_intervals"]["maj@1"]
            folders[threads] = folder / "sft"
            rows.append({"learning_rate": lr, "threads": threads, "maj@1": maj, "ci95": [low, high],
                         "wall_seconds": round(wall, 1)})
        rows[-1]["max_weight_difference_vs_1_thread"] = max_weight_difference(folders[1], folders[2])
    print("| learning rate | threads | SFT maj@1 (greedy) [95%] | max weight difference vs 1 thread "
          "| wall s |")
    print("|---|---|---|---|---|")
    for r in rows:
        diff = r.get("max_weight_difference_vs_1_thread")
        print(f"| {r['learning_rate']:g} | {r['threads']} | {r['maj@1']:.3f} [{r['ci95'][0]:.3f}, "
              f"{r['ci95'][1]:.3f}] | {'' if diff is None else f'{diff:.2e}'} | {r['wall_seconds']} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
