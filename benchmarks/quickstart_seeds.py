"""The quickstart's learning claim across seeds: run ``recipes/quickstart.yaml`` once per seed (each in
its own folder, resumable) and print, per seed, SFT and EI greedy maj@1, EI's gain with its paired
bootstrap 95% interval (same held-out questions for both models) and the wall time. The last line is
one JSON object with the same figures.

    python benchmarks/quickstart_seeds.py [--seeds 1 2 3] [--recipe recipes/quickstart.yaml] [--output runs]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def run_seed(recipe: str, seed: int, folder: Path) -> float:
    """Run (or resume) the recipe for one seed in its own process; returns the wall seconds."""
    start = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "trl_reasoning",
        "train",
        recipe,
        "--seed",
        str(seed),
        "--output_dir",
        str(folder),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def seed_figures(folder: Path) -> dict:
    """SFT and EI maj@1 and the paired gain, from the run's results and eval samples."""
    from trl_reasoning.stages import paired_gains

    results = json.loads((folder / "results.json").read_text())
    gain = paired_gains(folder, results, baseline="sft")["ei"]
    return {"sft_maj@1": results["sft"]["metrics"]["maj@1"], "ei_maj@1": results["ei"]["metrics"]["maj@1"],
            "gain": gain["gain"], "ci95": gain["ci95"], "questions": results["ei"]["num_questions"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--output", default="runs", help="parent folder; seed N runs in "
                                                         "OUTPUT/quickstart_seedN")
    args = parser.parse_args()
    rows = {}
    for seed in args.seeds:
        folder = Path(args.output) / f"quickstart_seed{seed}"
        fresh = not (folder / "results.json").exists()
        seconds = run_seed(args.recipe, seed, folder)
        rows[seed] = {**seed_figures(folder), "wall_s": round(seconds, 1) if fresh else None}
    print("| seed | SFT maj@1 | EI maj@1 | gain | paired 95% interval | wall s |")
    print("|---|---|---|---|---|---|")
    for seed, r in rows.items():
        wall = f"{r['wall_s']:.0f}" if r["wall_s"] is not None else "(reused)"
        print(f"| {seed} | {r['sft_maj@1']:.3f} | {r['ei_maj@1']:.3f} | {r['gain']:+.3f} | "
              f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | {wall} |")
    print(json.dumps({"seeds": rows}))


if __name__ == "__main__":
    main()
