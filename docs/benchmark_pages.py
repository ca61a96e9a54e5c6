"""Sections of the results pages built from the benchmark scripts' JSON output (``benchmarks/``): the SFT
stage's sensitivity to threads and learning rate, its spread over seeds per setting, and the reward-model
settings chosen on the validation split, and the comparison's ORM ranked within and across questions. Each
returns "" when its file is absent."""

from __future__ import annotations

import json
import shlex
from pathlib import Path


def sft_stability_section(path: Path) -> str:
    """The SFT stage trained with 1 and 2 torch threads (same seed, same machine) at each learning rate,
    from benchmarks/sft_stability.py's rows: how far summation order alone moves SFT maj@1."""
    if not path.exists():
        return ""
    lines = ["| learning rate | torch threads | SFT greedy maj@1 [95%] | largest weight difference "
             "vs 1 thread |", "|---|---|---|---|"]
    for r in json.loads(path.read_text()):
        diff = r.get("max_weight_difference_vs_1_thread")
        lines.append(f"| {r['learning_rate']:g} | {r['threads']} | {r['maj@1']:.3f} [{r['ci95'][0]:.3f}, "
                     f"{r['ci95'][1]:.3f}] | {'' if diff is None else f'{diff:.2e}'} |")
    return ("## The SFT stage's sensitivity to summation order and learning rate\n\n```bash\n"
            "python benchmarks/sft_stability.py --recipe recipes/compare_quickstart.yaml --seed 0\n```\n\n"
            "The comparison's SFT stage, seed 0, trained twice per learning rate on one machine, with 1 and "
            "with 2 torch threads (both on the one core the run was pinned to): the only change is the order "
            "in which floating-point sums may be taken, as on another CPU's kernels.\n\n"
            + "\n".join(lines) + "\n")


def reward_model_sweep_section(folder: Path, commit: str) -> str:
    """Each reward-model setting's validation AUROC side by side, from benchmarks/reward_model_sweep.py's
    ``orm_sweep.json`` / ``prm_sweep.json``: the setting the comparison's recipe uses. ``commit``: the one
    whose recipe the sweep ran on (its ``as_recipe`` row; the recipe has changed since)."""
    parts = []
    for stage in ("orm", "prm"):
        path = folder / f"{stage}_sweep.json"
        if not path.exists():
            continue
        rows = json.loads(path.read_text())
        settings = " \\\n    ".join(f"--setting {shlex.quote(r['setting'] + '=' + r['overrides'])}"
                                     for r in rows)
        lines = [f"| {stage} setting | overrides | validation AUROC | accuracy | positive share "
                 "| step accuracy |", "|---|---|---|---|---|---|"]
        for r in rows:
            step = r.get("step_accuracy")
            lines.append(f"| {r['setting']} | `{r['overrides']}` | {r['final_auroc']:.3f} | "
                         f"{r['final_accuracy']:.3f} | {r['positive_share']:.3f} | "
                         f"{'' if step is None else f'{step:.3f}'} |")
        command = (f"git checkout {commit} && python benchmarks/reward_model_sweep.py --recipe "
                   f"recipes/compare_quickstart.yaml --stage {stage} --seed 100 \\\n    {settings}")
        parts.append(f"```bash\n{command}\n```\n\n" + "\n".join(lines))
    if not parts:
        return ""
    return ("## Reward-model settings chosen on the validation split (seed 100)\n\nOne SFT policy (seed "
            "100), one reward model per setting trained on its samples of train questions, each scored by "
            "AUROC on the policy's samples of validation questions (final-answer correctness as the "
            "label). The recipe takes the setting with the highest AUROC where the difference is larger "
            "than a few thousandths: the ORM's value head; the PRM keeps its setting, as 4 rollouts per step "
            "cost more labelling for no clear gain.\n\n" + "\n\n".join(parts) + "\n")


def sft_seed_spread_section(path: Path) -> str:
    """SFT maj@1 per candidate setting and seed on the validation split, with mean and standard deviation,
    from benchmarks/sft_seed_spread.py's JSON line: the setting the comparison's SFT stage uses."""
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    seeds = [str(s) for s in data["seeds"]]
    lines = ["| setting | overrides | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std |",
             "|---|---|" + "---|" * (len(seeds) + 2)]
    for name, row in data["rows"].items():
        values = " | ".join(f"{row['maj@1'][s]:.3f}" for s in seeds)
        lines.append(f"| {name} | `{row['overrides']}` | {values} | {row['mean']:.3f} | {row['std']:.3f} |")
    cpu = data["machine"].get("cpu", "?")
    extensions = ", ".join(data["machine"].get("matrix_extensions", []))
    settings = " ".join(f"\\\n    --setting {shlex.quote(name + '=' + row['overrides'])}"
                        for name, row in data["rows"].items())
    command = (f"python benchmarks/sft_seed_spread.py --recipe {data['recipe']} --seeds {' '.join(seeds)} "
               + settings)
    return ("## The SFT stage's spread over seeds, per setting (validation split)\n\n```bash\n"
            f"{command}\n```\n\n"
            "Greedy maj@1 of the comparison's SFT stage on 500 validation questions (carved from the train "
            f"split), seeds that no reported result uses; CPU: {cpu} ({extensions}).\n\n"
            + "\n".join(lines) + "\n")


def reranker_section(path: Path) -> str:
    """Each seed's ORM scored pooled across questions and within each question, on the comparison's SFT
    samples, from benchmarks/reranker_within_question.py's JSON: what rerank@k against pass@1 says."""
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    rows = data["rows"]
    lines = ["| seed | questions with right and wrong samples | pooled AUROC | within-question AUROC "
             "| best-scored sample right | random pick right |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['mixed_questions']} of {r['questions']} | "
                     f"{r['pooled_auroc']:.3f} | {r['within_question_auroc']:.3f} | "
                     f"{r['best_scored_right_on_mixed']:.3f} | "
                     f"{r['random_pick_right_on_mixed']:.3f} |")
    pooled = sum(r["pooled_auroc"] for r in rows) / len(rows)
    within = sum(r["within_question_auroc"] for r in rows) / len(rows)
    verdict = ("it ranks questions by how hard they are, not a question's answers by whether they are right, "
               "and reranking needs the second" if within <= 0.55 < pooled else
               "see the table for how far ranking within a question follows the pooled figure")
    seeds = " ".join(str(r["seed"]) for r in rows)
    return ("## Why the ORM's reranking is no better than a random pick\n\n```bash\n"
            f"python benchmarks/reranker_within_question.py OUTPUT --seeds {seeds}\n```\n\n"
            "Each seed's ORM scores the SFT start's K held-out samples per question (the comparison's own "
            "files). The pooled AUROC ranks every sample against every other across questions, as the "
            "reward models' table does; the within-question AUROC ranks a question's samples among "
            "themselves (mean over the questions with right and wrong samples, the only ones where reranking "
            f"can change the answer). Mean over seeds: pooled {pooled:.3f}, within a question {within:.3f}: "
            f"{verdict}. CPU: {data['machine'].get('cpu', '?')}.\n\n" + "\n".join(lines) + "\n")
