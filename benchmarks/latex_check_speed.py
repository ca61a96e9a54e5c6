"""LaTeX (MATH) answer checks per second: a forked child per check vs one long-lived child per process.

``is_correct(..., task="math")`` falls back to math-verify under a CPU-time limit, which needs a child
process (sympy can hang inside C code). Both ways judge the same pairs (equal fractions and factored
polynomials the normaliser cannot settle, half of them made wrong); the script checks the verdicts are
identical and prints both rates measured side by side in one run. A process that holds a model (as a
trainer does) pays more per fork: ``--ballast-mib`` allocates that much first.

    python benchmarks/latex_check_speed.py [--pairs 200] [--ballast-mib 2000]
"""

from __future__ import annotations

import argparse
import json
import time

import trl_reasoning.answers.time_limit as time_limit
from trl_reasoning.verifiers import is_correct


def make_pairs(n: int) -> list[tuple[str, str]]:
    pairs = []
    for i in range(1, n + 1):
        wrong = i % 2  # every other pair off by one
        if i % 4 < 2:
            pairs.append((f"\\boxed{{\\frac{{{i + wrong}}}{{{i + 1}}}}}", f"{i}/{i + 1}"))
        else:
            pairs.append((f"\\boxed{{x^2+{i + wrong}x}}", f"x(x+{i})"))
    return pairs


def timed(pairs, fresh_child: bool) -> tuple[list[bool], float]:
    by_reference = time_limit._by_reference
    if fresh_child:  # the checks pickle cannot name take a child each: make every check one of them
        time_limit._by_reference = lambda fn: False
    try:
        is_correct(*pairs[0], task="math")  # warm-up: imports, the long-lived child's fork
        start = time.perf_counter()
        verdicts = [is_correct(pred, gold, task="math") for pred, gold in pairs]
        return verdicts, time.perf_counter() - start
    finally:
        time_limit._by_reference = by_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--ballast-mib", type=int, default=0, help="memory held while checking (MiB)")
    args = parser.parse_args()
    ballast = bytearray(args.ballast_mib * 2**20)  # touched pages: a fork copies their page tables
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    pairs = make_pairs(args.pairs)
    fresh, fresh_seconds = timed(pairs, fresh_child=True)
    shared, shared_seconds = timed(pairs, fresh_child=False)
    if fresh != shared:
        raise SystemExit("the two ways disagree on some pair")
    report = {"pairs": len(pairs), "right": sum(shared), "ballast_mib": args.ballast_mib,
              "child_per_check_ms": round(1e3 * fresh_seconds / len(pairs), 2),
              "long_lived_child_ms": round(1e3 * shared_seconds / len(pairs), 2),
              "speedup": round(fresh_seconds / shared_seconds, 1)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
