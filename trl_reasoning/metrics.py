"""The paper's sample-based metrics: pass@k, maj@k, rerank@k, and exploration statistics.

Per-question functions take the K samples of one question in sampling order:

* ``answers``: the normalised extracted answer of each sample (``None`` when it stated none),
* ``correct``: whether each sample is correct (from the verifier),
* ``scores``: a reward-model score per sample (for rerank@k).

``maj_at_k`` and ``rerank_at_k`` look at the first ``k`` samples (all when ``k`` is ``None``), so a
curve over k reuses one set of samples. ``aggregate`` averages per-question values over a dataset
with a percentile-bootstrap confidence interval; ``over_seeds`` averages over several runs with a two-level
bootstrap (runs, then questions within each run). Pure Python: importing this module needs no torch.

``EVALUATE_METRIC`` is the path of the same metrics packaged as a Hugging Face ``evaluate`` metric
(``evaluate.load(EVALUATE_METRIC)``, offline), for scripts that already report through ``evaluate``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Bumped when what an evaluation measures changes (the verifier's rules, the metrics), so a cached
# evaluation (eval/<model>/metrics.json) or a comparison record made under older rules is not reused.
# 2: 'Answer: N' statements and hedges after a box. 3: a statement of an unevaluated expression
# ('#### 4 + 4') states nothing.
EVALUATION_VERSION = 3

EVALUATE_METRIC = str(Path(__file__).parent / "evaluate_metric" / "reasoning_metrics.py")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one problem with ``n`` samples, ``c`` of them correct.

    ``1 - C(n-c, k) / C(n, k)`` (Chen et al., 2021), computed as a running product so large n does
    not overflow.
    """
    if not (0 <= c <= n):
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


def _first_k(values: Sequence, k: int | None, name: str) -> Sequence:
    if k is None:
        return values
    if k < 1:
        raise ValueError(f"{name}: k must be >= 1, got {k}")
    return values[:k]


def majority_answer(answers: Sequence[str | None]) -> tuple[str | None, int]:
    """Most frequent non-``None`` answer and the index of its first occurrence.

    Tie-break: among equally frequent answers, the one sampled first wins, so the vote is
    deterministic. Unanswered samples do not vote; returns ``(None, -1)`` when nobody answered.
    """
    counts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        counts[answer] = counts.get(answer, 0) + 1
        first_seen.setdefault(answer, i)
    if not counts:
        return None, -1
    best = max(counts, key=lambda a: (counts[a], -first_seen[a]))
    return best, first_seen[best]


def maj_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int | None = None) -> float:
    """1.0 when the majority answer among the first ``k`` samples is correct, else 0.0."""
    answers = _first_k(answers, k, "maj_at_k")
    _, index = majority_answer(answers)
    return float(index >= 0 and bool(correct[index]))


def rerank_at_k(
    answers: Sequence[str | None],
    correct: Sequence[bool],
    scores: Sequence[float],
    k: int | None = None,
    weighted: bool = False,
) -> float:
    """1.0 when the reward model's choice among the first ``k`` samples is correct.

    ``weighted=False`` takes the answer of the single best-scored sample (ties: first sampled);
    ``weighted=True`` sums scores per answer and takes the answer with the largest total
    (score-weighted voting). Unanswered samples are never chosen.
    """
    answers, scores = _first_k(answers, k, "rerank_at_k"), _first_k(scores, k, "rerank_at_k")
    answered = [i for i, answer in enumerate(answers) if answer is not None]
    if not answered:
        return 0.0
    if weighted:
        totals: dict[str, float] = {}
        for i in answered:
            totals[answers[i]] = totals.get(answers[i], 0.0) + float(scores[i])
        winner = max(totals, key=lambda a: (totals[a], -answers.index(a)))
        index = answers.index(winner)
    else:
        index = max(answered, key=lambda i: (float(scores[i]), -i))
    return float(bool(correct[index]))


def exploration_stats(completions: Sequence[str], correct: Sequence[bool]) -> dict[str, float]:
    """How widely one question's samples explore: distinct solutions, distinct correct ones."""
    normalised = [" ".join(c.split()) for c in completions]
    correct_set = {c for c, ok in zip(normalised, correct, strict=True) if ok}
    return {
        "distinct_solutions": float(len(set(normalised))),
        "distinct_correct_solutions": float(len(correct_set)),
        "any_correct": float(bool(correct_set)),
    }


def powers_of_two_up_to(k_max: int) -> list[int]:
    """``[1, 2, 4, ..., k_max]``: the k values of a pass@k / maj@k curve (``k_max`` always included)."""
    ks, k = [], 1
    while k < k_max:
        ks.append(k)
        k *= 2
    return ks + [k_max]


@dataclass(frozen=True)
class Estimate:
    """A dataset-level mean with a bootstrap confidence interval."""

    mean: float
    ci_low: float
    ci_high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}


def aggregate(
    values: Sequence[float], n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """Mean of per-question values with a percentile-bootstrap interval (resampling questions)."""
    if not values:
        raise ValueError("aggregate: no values to aggregate (empty dataset?)")
    n = len(values)
    mean = sum(values) / n
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(n_bootstrap))
    tail = (1.0 - confidence) / 2
    low = means[int(tail * (n_bootstrap - 1))]
    high = means[int(round((1.0 - tail) * (n_bootstrap - 1)))]
    return Estimate(mean=mean, ci_low=low, ci_high=high, n=n)


def paired_difference(
    values: Sequence[float],
    baseline: Sequence[float],
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean of ``values[i] - baseline[i]`` (the same questions scored for two models) with a paired
    percentile-bootstrap interval: questions are resampled together, so shared difficulty cancels."""
    if len(values) != len(baseline):
        raise ValueError("paired_difference: both models must be scored on the same questions")
    return aggregate([a - b for a, b in zip(values, baseline, strict=True)], n_bootstrap, confidence, seed)


def over_seeds(
    groups: Sequence[Sequence[float]], n_bootstrap: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """Mean over runs (seeds) of each run's mean per-question value, with a two-level percentile-bootstrap
    interval: each replicate draws the runs with replacement, then the questions within every drawn run
    with replacement. The interval so carries both sources of noise, run to run (initialisation, training
    data, sampling) and the finite question set. ``groups[s]`` holds run ``s``'s per-question values (for
    a gain: the paired differences on that run's questions). With one run it is ``aggregate``'s interval.
    """
    groups = [list(g) for g in groups]
    if not groups or any(not g for g in groups):
        raise ValueError("over_seeds: need at least one run, each with at least one value")
    mean = sum(sum(g) / len(g) for g in groups) / len(groups)
    rng = random.Random(seed)
    replicates = []
    for _ in range(n_bootstrap):
        drawn = rng.choices(groups, k=len(groups))
        replicates.append(sum(sum(rng.choices(g, k=len(g))) / len(g) for g in drawn) / len(drawn))
    replicates.sort()
    tail = (1.0 - confidence) / 2
    low = replicates[int(tail * (n_bootstrap - 1))]
    high = replicates[int(round((1.0 - tail) * (n_bootstrap - 1)))]
    return Estimate(mean=mean, ci_low=low, ci_high=high, n=sum(len(g) for g in groups))


def over_seeds_variance(groups: Sequence[Sequence[float]]) -> float:
    """The variance of ``over_seeds``' bootstrap replicates, in closed form: with run means ``m_s``,
    within-run variances ``v_s`` (over ``n_s`` questions) and ``S`` runs,
    ``(Var_s(m_s) + mean_s(v_s / n_s)) / S`` (population variances, as the bootstrap draws them). The
    figures' bands use it (mean +- 1.96 standard deviations) where drawing replicates per point is slow."""
    groups = [list(g) for g in groups]
    means = [sum(g) / len(g) for g in groups]
    grand = sum(means) / len(means)
    between = sum((m - grand) ** 2 for m in means) / len(means)
    within = sum(sum((x - m) ** 2 for x in g) / len(g) / len(g) for g, m in zip(groups, means, strict=True))
    return (between + within / len(groups)) / len(groups)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the probability that a random positive outranks a random negative
    (ties count half). NaN when one class is missing."""
    if len(scores) != len(labels):
        raise ValueError("auroc: scores and labels must have the same length")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # average rank over ties
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for n in range(i, j + 1):
            ranks[order[n]] = (i + j) / 2 + 1
        i = j + 1
    positives = sum(bool(label) for label in labels)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = sum(r for r, label in zip(ranks, labels, strict=True) if label)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    n = len(points)
    mean_x, mean_y = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return None if spread == 0 else sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def linear_trend(xs: Sequence[float], ys: Sequence[float], n_bootstrap: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> Estimate:
    """The least-squares slope of ``ys`` on ``xs`` (a logged training curve, such as the rollout reward
    against the optimizer step) with a percentile-bootstrap interval over the (x, y) points. Points are
    resampled as independent, which neighbouring points of a curve are not quite: read the interval as
    the noise of the points, not of the run. ``n`` is the number of points; needs 3 with distinct x."""
    points = list(zip(xs, ys, strict=True))
    slope = _slope(points) if len(points) >= 3 else None
    if slope is None:
        raise ValueError("linear_trend: need at least 3 points with distinct x")
    rng = random.Random(seed)
    replicates = sorted(s for s in (_slope(rng.choices(points, k=len(points))) for _ in range(n_bootstrap))
                        if s is not None)
    tail = (1.0 - confidence) / 2
    low = replicates[int(tail * (len(replicates) - 1))]
    high = replicates[int(round((1.0 - tail) * (len(replicates) - 1)))]
    return Estimate(mean=slope, ci_low=low, ci_high=high, n=len(points))


# Fewer logged points than this: the slope without an interval. Resampling 3-7 points mostly redraws the
# same few pairs, so the percentile interval comes out narrow whatever the noise (3 points of a flat
# PPO run on SmolLM2 gave [-0.139, -0.125] around -0.130).
MIN_POINTS_FOR_TREND_INTERVAL = 8


def logged_values(log_history: Sequence[dict], key: str = "reward") -> list[tuple[int, float]]:
    """``(step, value)`` for each entry of a TRL trainer's ``log_history`` that logged ``key`` (the
    closing summary entry and the steps that logged other things are left out)."""
    return [(e["step"], e[key]) for e in log_history if key in e and "step" in e]


def reward_trend(log_history: Sequence[dict], key: str = "reward", per: int = 100) -> dict | None:
    """The trend of a TRL trainer's logged ``key`` (``trainer.state.log_history``): its slope per ``per``
    optimizer steps with a 95% interval (``linear_trend``; None, with a note, under
    ``MIN_POINTS_FOR_TREND_INTERVAL`` points), the first and last logged values and steps, and the number
    of logged points; None with fewer than 3 points."""
    logged = logged_values(log_history, key)
    if len({step for step, _ in logged}) < 3:
        return None
    trend = linear_trend([s for s, _ in logged], [v for _, v in logged])
    record = {"key": key, "slope_per_steps": per, "slope": trend.mean * per,
              "ci95": [trend.ci_low * per, trend.ci_high * per], "points": trend.n,
              "first": logged[0][1], "last": logged[-1][1],
              "first_step": logged[0][0], "last_step": logged[-1][0]}
    if trend.n < MIN_POINTS_FOR_TREND_INTERVAL:
        record["ci95"] = None
        record["note"] = (f"{trend.n} logged points: too few for an interval (log more often: "
                          "logging_steps)")
    return record
