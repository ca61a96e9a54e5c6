"""How much the comparison's SFT policy moves with the seed, per candidate setting, on the validation split:
train SFT for every (setting, seed), evaluate it greedily on validation questions carved from the train
split (never the held-out test split), and print each seed's maj@1, the mean and the standard deviation
over seeds side by side, with the wall time and the CPU. The setting for the comparison is chosen here,
on seeds no reported result uses (100, 101, 102 by default), never on the test split.

    python benchmarks/sft_seed_spread.py [--recipe recipes/compare_quickstart.yaml] [--seeds 100 101 102]
        [--setting 'lr1e-3=--sft.learning_rate 1e-3' ...] [--output runs/sft_seed_spread]

A setting is ``NAME=OVERRIDES`` (recipe overrides as on the command line). Each trial resumes on its own
(a trial folder with ``results.json`` is read, not retrained), so the script can be killed and rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SETTINGS = ["lr1e-3=--sft.learning_rate 1e-3",
                    "lr1e-3_mul=--sft.learning_rate 1e-3 --arithmetic.operators \"['+','-','*']\""]


def trial(recipe: str, seed: int, overrides: list[str], folder: Path, examples: int) -> float:
    """SFT then a greedy-only eval on ``examples`` validation questions, in a fresh process; wall seconds."""
    command = [sys.executable, "-m", "trl_reasoning", "train", recipe, "--stages", "sft,eval",
               "--seed", str(seed), "--output_dir", str(folder), "--eval_split", "validation",
               "--num_eval_examples", str(examples), "--eval.num_generations", "1", *overrides]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/compare_quickstart.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--setting", action="append", help="NAME=OVERRIDES (repeatable)")
    parser.add_argument("--examples", type=int, default=500, help="validation questions per trial")
    parser.add_argument("--output", default="runs/sft_seed_spread")
    args = parser.parse_args()
    settings = dict(s.split("=", 1) for s in args.setting or DEFAULT_SETTINGS)
    rows = {name: {"overrides": text, "maj@1": {}, "wall_seconds": {}} for name, text in settings.items()}
    for seed in args.seeds:  # seeds outer: every setting has a first seed early
        for name, text in settings.items():
            folder = Path(args.output) / name / f"seed_{seed}"
            done = (folder / "results.json").exists()
            wall = None if done else trial(args.recipe, seed, shlex.split(text), folder, args.examples)
            results = json.loads((folder / "results.json").read_text())
            rows[name]["maj@1"][seed] = results["sft"]["metrics"]["maj@1"]
            rows[name]["wall_seconds"][seed] = None if wall is None else round(wall, 1)
            print(f"{name} seed {seed}: maj@1 {rows[name]['maj@1'][seed]:.3f}", flush=True)
    from trl_reasoning.reporting import cpu_text, machine

    cpu = machine()
    print(f"\nCPU: {cpu_text(cpu)}")
    print_table(rows, args.seeds)
    print(json.dumps({"seeds": args.seeds, "recipe": args.recipe, "machine": cpu, "rows": rows}))


def print_table(rows: dict, seeds: list[int]) -> None:
    """Each setting's maj@1 per seed, mean, standard deviation and mean wall time (filled into ``rows``)."""
    print("| setting | overrides | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std | wall s |")
    print("|---|---|" + "---|" * (len(seeds) + 3))
    for name, row in rows.items():
        values = [row["maj@1"][s] for s in seeds]
        walls = [w for w in row["wall_seconds"].values() if w is not None]
        row["mean"] = statistics.mean(values)
        row["std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        wall = round(statistics.mean(walls)) if walls else ""
        print(f"| {name} | `{row['overrides']}` | " + " | ".join(f"{v:.3f}" for v in values)
              + f" | {row['mean']:.3f} | {row['std']:.3f} | {wall} |")

if __name__ == "__main__":
    main()
