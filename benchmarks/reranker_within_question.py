"""Why an ORM with a held-out AUROC above 0.5 can rerank no better than a random pick: AUROC pooled over
questions against AUROC within each question, on the comparison's own samples.

For each seed of a finished ``trl-reasoning compare`` run, score the SFT start's K held-out samples per
question (``seed_S/eval/sft/samples.jsonl``) with that seed's ORM (``seed_S/orm/model``), then print side
by side: the pooled AUROC (every sample against every other, across questions: what ``metrics.json``'s
held-out AUROC measures), the mean AUROC within a question (over the questions whose samples are partly
right, the only ones where reranking can matter), and, on those questions, how often the best-scored
sample is right against a random pick. A pooled AUROC well above 0.5 with a within-question one near 0.5
says the ORM has learned which *questions* are hard, not which *answers* are right. Writes
``--json`` when given (the docs section reads it). No sampling and no training: scoring only.

    python benchmarks/reranker_within_question.py runs/compare_timed --seeds 0 1 2 \\
        [--json docs/results/compare_quickstart/reranker_within_question.json]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from trl_reasoning.metrics import auroc
from trl_reasoning.reporting import machine, markdown_table, read_jsonl, write_json_atomic


def seed_row(run: Path, seed: int) -> dict:
    """The pooled and within-question figures of one seed's ORM on its SFT start's held-out samples."""
    from trl_reasoning.reward_models import load_reward_model

    folder = run / f"seed_{seed}"
    rows = read_jsonl(folder / "eval" / "sft" / "samples.jsonl")
    samples = [row for row in rows if row["kind"] == "sample"]  # the K sampled, not the greedy one
    scorer = load_reward_model(str(folder / "orm" / "model"))
    scores = scorer.rerank_scorer([r["prompt"] for r in samples], [r["completion"] for r in samples])
    by_question: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for row, score in zip(samples, scores, strict=True):
        by_question[row["id"]].append((score, bool(row["correct"])))
    mixed = [group for group in by_question.values() if 0 < sum(c for _, c in group) < len(group)]
    return {
        "seed": seed,
        "samples": len(samples),
        "questions": len(by_question),
        "mixed_questions": len(mixed),
        "pooled_auroc": auroc(scores, [bool(r["correct"]) for r in samples]),
        "within_question_auroc": statistics.fmean(auroc([s for s, _ in g], [c for _, c in g]) for g in mixed),
        "best_scored_right_on_mixed": statistics.fmean(max(g, key=lambda x: x[0])[1] for g in mixed),
        "random_pick_right_on_mixed": statistics.fmean(sum(c for _, c in g) / len(g) for g in mixed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished comparison's output folder")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = [seed_row(args.run, seed) for seed in args.seeds]
    columns = ["seed", "mixed_questions", "pooled_auroc", "within_question_auroc",
               "best_scored_right_on_mixed", "random_pick_right_on_mixed"]
    print(markdown_table(columns, [[r[c] for c in columns] for r in rows]))
    if args.json:
        write_json_atomic(args.json, {"run": str(args.run), "rows": rows, "machine": machine()})


if __name__ == "__main__":
    main()
