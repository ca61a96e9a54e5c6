"""Evaluate a policy the way the paper does: sample, verify, score, report.

For every question: one greedy completion (maj@1) and K sampled completions at temperature T
(maj@k and pass@k for k = 1, 2, 4, ..., K; rerank@k when a reward scorer is given), plus
exploration statistics, and what the wrong answers are (``mistakes``: a false written equation, every
written equation true, or none written). ``write_report`` writes ``samples.jsonl``, ``metrics.json``,
``summary.md`` and ``pass_at_k.png`` into the output folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .answers.equations import equation_chains, equations_hold
from .metrics import (
    aggregate,
    auroc,
    exploration_stats,
    maj_at_k,
    pass_at_k,
    powers_of_two_up_to,
    rerank_at_k,
)
from .reporting import markdown_table, plot_curves, write_json_atomic, write_jsonl_atomic, write_text_atomic
from .rewards import prompt_as_text
from .sampling import Sampler, SamplingResult, SamplingSettings, answer_pattern_for
from .verifiers import answer_key, extract_answer, is_correct

# (prompts, completions) -> one score per completion, higher = more likely correct
RewardScorer = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


@dataclass
class EvalSettings(SamplingSettings):
    """How to sample for an evaluation (``SamplingSettings``) and how to read the answers."""

    extraction: str = field(
        default="strict", metadata={"help": "Answer extraction: strict (#### N / 'The answer is') or "
                                            "flexible."}
    )


def score_samples(dataset, result: SamplingResult, task: str, extraction: str, kind: str) -> list[dict]:
    """One record per completion: extracted answer (and its vote key), correctness and token count."""
    records = []
    for row, group in zip(dataset, result.completions, strict=True):
        for index, completion in enumerate(group):
            extracted = extract_answer(completion.text, task, extraction)
            records.append(
                {
                    "id": row["id"],
                    "kind": kind,
                    "sample_index": index,
                    "prompt": row["prompt"],
                    "completion": completion.text,
                    "extracted_answer": extracted,
                    "answer_key": answer_key(extracted, task),
                    "reference": row["answer"],
                    "correct": is_correct(completion.text, row["answer"], task, extraction),
                    "num_tokens": completion.num_tokens,
                }
            )
    return records


def _per_question(records: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for record in records:
        grouped.setdefault(record["id"], []).append(record)
    return grouped


# What a wrong answer's written work shows, in report order ("right" first): a false equation is an
# arithmetic slip (often beside a wrong choice of operands); true equations that end wrong are a wrong plan
# or a misread question, which more practice on the same problems need not fix on new ones.
MISTAKE_KINDS = ("right", "a written equation false", "every written equation true", "no equation written")


def mistake_kind(completion: str, correct: bool) -> str:
    """Which of ``MISTAKE_KINDS`` a scored completion is, from its written ``a op b = c`` equations."""
    if correct:
        return MISTAKE_KINDS[0]
    if not equation_chains(completion):
        return MISTAKE_KINDS[3]
    return MISTAKE_KINDS[2] if equations_hold(completion) else MISTAKE_KINDS[1]


def mistake_shares(records: Sequence[dict]) -> dict[str, float]:
    """The share of ``records`` (scored completions) of each of ``MISTAKE_KINDS``; empty without records."""
    kinds = [mistake_kind(r["completion"], bool(r["correct"])) for r in records]
    return {kind: kinds.count(kind) / len(kinds) for kind in MISTAKE_KINDS} if kinds else {}


def compute_metrics(greedy: list[dict], sampled: list[dict], num_generations: int, seed: int = 0) -> dict:
    """Dataset metrics (means), their bootstrap intervals, and exploration statistics."""
    per_question: dict[str, list[float]] = {"maj@1": [float(r["correct"]) for r in greedy]}
    ks = powers_of_two_up_to(num_generations) if sampled else []
    has_scores = bool(sampled) and all("score" in r for r in sampled)
    exploration: dict[str, list[float]] = {}
    for group in _per_question(sampled).values():
        answers = [r.get("answer_key", r["extracted_answer"]) for r in group]
        correct = [bool(r["correct"]) for r in group]
        for k in ks:
            if k > 1:  # maj@1 is the greedy accuracy; one sample's accuracy is pass@1
                per_question.setdefault(f"maj@{k}", []).append(maj_at_k(answers, correct, k))
            per_question.setdefault(f"pass@{k}", []).append(pass_at_k(len(group), sum(correct), k))
            if has_scores:
                scores = [r["score"] for r in group]
                per_question.setdefault(f"rerank@{k}", []).append(rerank_at_k(answers, correct, scores, k))
        for name, value in exploration_stats([r["completion"] for r in group], correct).items():
            exploration.setdefault(name, []).append(value)
    estimates = {name: aggregate(values, seed=seed) for name, values in per_question.items()}
    report = {
        "metrics": {name: e.mean for name, e in estimates.items()},
        "confidence_intervals": {name: [e.ci_low, e.ci_high] for name, e in estimates.items()},
        "exploration": {name: sum(v) / len(v) for name, v in exploration.items()},
        "mistakes": {kind: mistake_shares(rows) for kind, rows in (("greedy", greedy), ("sampled", sampled))
                     if rows},
    }
    if has_scores:  # how well the reward model separates right from wrong samples, over all questions
        report["reward_model"] = {
            "auroc": auroc([r["score"] for r in sampled], [bool(r["correct"]) for r in sampled])
        }
    return report


def evaluate(
    model,
    tokenizer,
    dataset,
    task: str,
    settings: EvalSettings | None = None,
    reward_scorer: RewardScorer | None = None,
    logits_processors: Sequence = (),
    sampler: Sampler | None = None,
) -> dict:
    """Sample and score ``dataset`` (schema rows with a ``prompt`` column); returns the report dict.

    The report holds ``metrics`` (maj@1 greedy, maj@k, pass@k, rerank@k), ``confidence_intervals``,
    ``exploration``, ``throughput`` and the per-completion ``records`` (greedy and sampled).
    ``logits_processors`` go to the sampler (e.g. return tags forced after every step). ``sampler``:
    a running ``Sampler`` to reuse (a trainer's engine); else one is built from ``settings``, and its
    K, temperature and seed are those of ``settings`` either way.
    """
    settings = settings or EvalSettings()
    prompts = dataset["prompt"]
    own = sampler is None
    sampler = sampler or Sampler(model, tokenizer, settings, answer_pattern_for(task))
    try:
        greedy_run = sampler.sample(prompts, num_generations=1, temperature=0.0, seed=settings.seed,
                                    logits_processors=logits_processors)
        greedy = score_samples(dataset, greedy_run, task, settings.extraction, "greedy")
        sampled, sampled_run = [], None
        if settings.temperature > 0:
            sampled_run = sampler.sample(
                prompts,
                settings.num_generations,
                settings.temperature,
                settings.seed,
                logits_processors=logits_processors,
            )
            sampled = score_samples(dataset, sampled_run, task, settings.extraction, "sample")
    finally:
        if own:
            sampler.close()
    if reward_scorer is not None and sampled:
        scores = reward_scorer(
            [prompt_as_text(r["prompt"]) for r in sampled], [r["completion"] for r in sampled]
        )
        for record, score in zip(sampled, scores, strict=True):
            record["score"] = float(score)
    report = compute_metrics(greedy, sampled, settings.num_generations, settings.seed)
    from .loading import process_state

    report["throughput"] = _throughput(greedy_run, sampled_run)
    report["num_questions"] = len(dataset)
    report["num_processes"] = process_state().num_processes  # the sampling was shared by this many processes
    report["records"] = greedy + sampled
    return report


def _throughput(greedy: SamplingResult, sampled: SamplingResult | None) -> dict[str, float]:
    runs = [r for r in (greedy, sampled) if r is not None]
    seconds = sum(r.seconds for r in runs)
    samples, tokens = sum(r.num_samples for r in runs), sum(r.num_tokens for r in runs)
    return {
        "backend": runs[0].backend,
        "seconds": seconds,
        "samples": samples,
        "tokens": tokens,
        "samples_per_second": samples / seconds if seconds else 0.0,
        "tokens_per_second": tokens / seconds if seconds else 0.0,
    }


def summary_markdown(report: dict, title: str) -> str:
    """The human-readable summary: metrics with 95% intervals, exploration and throughput."""
    metrics, intervals = report["metrics"], report["confidence_intervals"]
    rows = [
        [name, value, f"[{intervals[name][0]:.3f}, {intervals[name][1]:.3f}]"]
        for name, value in metrics.items()
    ]
    parts = [f"# {title}", "", f"Questions: {report['num_questions']}", ""]
    parts += [markdown_table(["metric", "value", "95% CI"], rows), ""]
    if report["exploration"]:
        parts += ["## Exploration (mean per question)", ""]
        parts += [markdown_table(["statistic", "value"], list(report["exploration"].items())), ""]
    if report.get("mistakes"):  # absent from reports written before it existed
        parts += ["## What the answers are (share of completions)", ""]
        shares = report["mistakes"]
        parts += [markdown_table(["kind", *shares], [[kind, *(shares[s][kind] for s in shares)]
                                                     for kind in MISTAKE_KINDS]), ""]
    if "reward_model" in report:
        parts += ["## Reward model (sampled completions)", ""]
        parts += [markdown_table(["statistic", "value"], list(report["reward_model"].items())), ""]
    throughput = report["throughput"]
    parts += [
        "## Throughput",
        "",
        markdown_table(
            ["samples", "tokens", "seconds", "samples/s", "tokens/s"],
            [[throughput["samples"], throughput["tokens"], throughput["seconds"],
              throughput["samples_per_second"], throughput["tokens_per_second"]]],
        ),
        "",
    ]
    return "\n".join(parts)


def write_report(
    report: dict, output_dir: str | Path, config: dict[str, Any], title: str = "Evaluation"
) -> Path:
    """Write ``samples.jsonl``, ``metrics.json``, ``summary.md`` and ``pass_at_k.png``."""
    output_dir = Path(output_dir)
    write_jsonl_atomic(output_dir / "samples.jsonl", report["records"])
    metrics = {key: value for key, value in report.items() if key != "records"}
    write_json_atomic(output_dir / "metrics.json", {"config": config, **metrics})
    write_text_atomic(output_dir / "summary.md", summary_markdown(report, title))
    curves = {}
    for prefix in ("pass", "maj", "rerank"):
        points = sorted(
            (int(n.split("@")[1]), v) for n, v in report["metrics"].items() if n.startswith(prefix + "@")
        )
        if len(points) > 1:
            curves[f"{prefix}@k"] = ([k for k, _ in points], [v for _, v in points])
    if curves:
        plot_curves(
            output_dir / "pass_at_k.png", curves, "k (samples per question)", "accuracy", title, log_x=True
        )
    return output_dir
