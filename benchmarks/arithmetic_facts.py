r"""Why a method ends below its SFT start on the arithmetic task: step errors by arithmetic fact.

Each equation ``a op b = c`` a completion writes uses one *fact* (``a op b``). The tiny model learns facts
one by one, so a fine-tune can only sharpen the facts in what it trains on and may disturb the others.
For one seed of a ``trl-reasoning compare`` output this prints, side by side, for the SFT start and every
method: greedy maj@1 on the held-out questions, and the share of wrong equations in the greedy
completions, split by whether the fact appears in the reference solutions of the questions the RL methods
sample (``ei_train_limit`` of them) or not; and, for methods that fine-tune on their own samples (EI,
RCRL), the share of wrong equations among the rows they trained on. Nothing is trained: it reads the
run's files (eval samples, round ``kept.jsonl``) and rebuilds the recipe's datasets (no model).

    python benchmarks/arithmetic_facts.py RECIPE OUTPUT --seed S [--json FILE]
e.g.
    python benchmarks/arithmetic_facts.py recipes/compare_quickstart_tuning.yaml runs/compare_tuning \
        --seed 100
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

EQUATION = re.compile(r"(-?\d+) ([+-]) (-?\d+) = (-?\d+)")


def equations(text: str) -> list[tuple[int, str, int, int]]:
    """Every ``a op b = c`` in ``text`` (the arithmetic task's only operations are + and -)."""
    return [(int(a), op, int(b), int(c)) for a, op, b, c in EQUATION.findall(text)]


def holds(a: int, op: str, b: int, c: int) -> bool:
    """The project's own equation check (what ``check_equations`` keeps by), on one equation."""
    from trl_reasoning.answers.equations import equations_hold

    return equations_hold(f"{a} {op} {b} = {c}")


def rl_facts(recipe_path: str, seed: int) -> set[tuple[int, str, int]]:
    """The facts of the reference solutions of the questions the RL methods sample."""
    from trl_reasoning.pipeline import load_datasets
    from trl_reasoning.recipes import load_recipe

    recipe = load_recipe(recipe_path, [("seed", str(seed))])
    _, rl_train, _ = load_datasets(recipe)
    return {(a, op, b) for row in rl_train for a, op, b, _ in equations(row["solution"])}


def step_errors(samples: Path, facts: set) -> dict:
    """Greedy maj@1 and the wrong-equation share of greedy completions, inside and outside ``facts``."""
    counts = {"in": [0, 0], "out": [0, 0]}
    right = total = 0
    for line in samples.read_text().splitlines():
        row = json.loads(line)
        if row["kind"] != "greedy":
            continue
        total += 1
        right += bool(row["correct"])
        for a, op, b, c in equations(row["completion"]):
            group = counts["in" if (a, op, b) in facts else "out"]
            group[0] += 1
            group[1] += not holds(a, op, b, c)
    return {"maj@1": right / max(1, total),
            **{f"error_{k}": v[1] / max(1, v[0]) for k, v in counts.items()},
            **{f"equations_{k}": v[0] for k, v in counts.items()}}


def trained_rows_error(method_folder: Path) -> float | None:
    """Wrong-equation share among the rows an EI/RCRL run fine-tuned on (all its rounds), else None."""
    found = [0, 0]
    for kept in sorted(method_folder.glob("*/round_*/kept.jsonl")):
        for line in kept.read_text().splitlines():
            for a, op, b, c in equations(json.loads(line)["completion"]):
                found[0] += 1
                found[1] += not holds(a, op, b, c)
    return found[1] / found[0] if found[0] else None


def table(recipe_path: str, output: Path, seed: int) -> list[dict]:
    folder = output / f"seed_{seed}"
    facts = rl_facts(recipe_path, seed)
    rows = []
    for samples in sorted((folder / "eval").glob("*/samples.jsonl")):
        name = samples.parent.name
        if name.endswith("_unconditioned"):
            continue
        rows.append({"method": name, **step_errors(samples, facts),
                     "trained_rows_error": trained_rows_error(folder / name)})
    return ordered(rows)


def ordered(rows: list[dict]) -> list[dict]:
    """The table's rows in page order: the SFT start first, then the methods by name."""
    return sorted(rows, key=lambda r: (r["method"] != "sft", r["method"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("output", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = table(args.recipe, args.output, args.seed)
    print("| method | maj@1 | wrong equations, facts in the RL questions' references | "
          "wrong equations, other facts | wrong equations in its training rows |")
    print("|---|---|---|---|---|")
    for r in rows:
        trained = "" if r["trained_rows_error"] is None else f"{r['trained_rows_error']:.3f}"
        print(f"| {r['method']} | {r['maj@1']:.3f} | {r['error_in']:.3f} ({r['equations_in']}) | "
              f"{r['error_out']:.3f} ({r['equations_out']}) | {trained} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
