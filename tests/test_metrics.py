import itertools
from math import comb

import pytest

from trl_reasoning.metrics import (
    aggregate,
    exploration_stats,
    maj_at_k,
    majority_answer,
    pass_at_k,
    powers_of_two_up_to,
    rerank_at_k,
)


def _exact_pass_at_k(n, c, k):
    """Share of all k-subsets of n samples that contain at least one of the c correct ones."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_exact_combinatorics(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_exact_pass_at_k(n, c, k), abs=1e-12)
            assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    value = pass_at_k(10_000, 3, 96)
    assert value == pytest.approx(1 - comb(9_997, 96) / comb(10_000, 96), rel=1e-9)
    assert 0.0 < value < 1.0
    assert pass_at_k(96, 0, 96) == 0.0
    assert pass_at_k(96, 1, 1) == pytest.approx(1 / 96)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 2, 5), (4, 2, 0), (4, 5, 1), (4, -1, 1)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(n, c, k)


def test_majority_vote_tie_break_and_abstentions():
    assert majority_answer(["3", "4", "4", "3"]) == ("3", 0)  # tie: first sampled wins
    assert majority_answer([None, None, "4"]) == ("4", 2)  # unanswered samples do not vote
    assert majority_answer([None, None]) == (None, -1)
    assert maj_at_k(["3", "4", "4"], [False, True, True]) == 1.0
    assert maj_at_k(["3", "4", "4"], [False, True, True], k=1) == 0.0
    assert maj_at_k([None, None], [False, False]) == 0.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        maj_at_k(["3"], [True], k=0)


def test_rerank_best_sample_and_weighted_vote():
    answers, correct = ["1", "2", "2", None], [True, False, False, False]
    scores = [0.9, 0.6, 0.5, 5.0]  # the unanswered sample is never chosen
    assert rerank_at_k(answers, correct, scores) == 1.0
    assert rerank_at_k(answers, correct, scores, weighted=True) == 0.0  # 0.6 + 0.5 > 0.9
    assert rerank_at_k(answers, correct, scores, k=1) == 1.0
    assert rerank_at_k([None], [False], [1.0]) == 0.0


def test_exploration_stats_counts_distinct_solutions():
    stats = exploration_stats(["a  b", "a b", "c", "d"], [True, True, False, True])
    assert stats == {"distinct_solutions": 3.0, "distinct_correct_solutions": 2.0, "any_correct": 1.0}


def test_aggregate_bootstrap_interval():
    values = [1.0] * 30 + [0.0] * 70
    estimate = aggregate(values, seed=1)
    assert estimate.mean == pytest.approx(0.3)
    assert estimate.ci_low < 0.3 < estimate.ci_high
    assert 0.15 < estimate.ci_low and estimate.ci_high < 0.45
    assert aggregate(values, seed=1) == estimate  # deterministic for a seed
    with pytest.raises(ValueError, match="no values"):
        aggregate([])


def test_powers_of_two():
    assert powers_of_two_up_to(1) == [1]
    assert powers_of_two_up_to(8) == [1, 2, 4, 8]
    assert powers_of_two_up_to(96) == [1, 2, 4, 8, 16, 32, 64, 96]


def test_paired_difference_cancels_shared_difficulty():
    from trl_reasoning.metrics import paired_difference

    baseline = [0.0, 1.0] * 50
    better = [1.0, 1.0] * 50  # right on every question the baseline got, plus half the rest
    gain = paired_difference(better, baseline)
    assert gain.mean == 0.5 and 0.35 < gain.ci_low < 0.5 < gain.ci_high < 0.65
    assert (
        paired_difference(baseline, baseline).ci_low == paired_difference(baseline, baseline).ci_high == 0.0
    )
    with pytest.raises(ValueError, match="same questions"):
        paired_difference([1.0], [1.0, 0.0])


def test_the_paper_metrics_load_offline_as_an_evaluate_metric(tmp_path, monkeypatch):
    """``evaluate.load(EVALUATE_METRIC)`` by path with the Hub unreachable, and its numbers are the
    ones ``evaluation.compute_metrics`` reports (hand-checked here)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    import evaluate

    from trl_reasoning.metrics import EVALUATE_METRIC

    metric = evaluate.load(EVALUATE_METRIC, cache_dir=str(tmp_path))
    predictions = [
        ["2 + 2 = 4\n#### 4", "#### 5", "#### 5", "#### 4"],  # q1: 2 of 4 right, vote ties -> first (4)
        ["#### 7", "#### 7", "#### 6", "no answer"],  # q2: answer 6: 1 of 4 right, majority 7 is wrong
    ]
    results = metric.compute(
        predictions=predictions, references=["4", "6"], task="gsm8k",
        greedy_predictions=["#### 4", "#### 1"], scores=[[0.1, 0.9, 0.2, 0.3], [0.2, 0.1, 0.8, 0.9]],
    )
    assert results["maj@1"] == 0.5  # greedy: q1 right, q2 wrong
    assert results["maj@4"] == 0.5
    assert results["pass@4"] == 1.0 and results["pass@1"] == (2 / 4 + 1 / 4) / 2
    # rerank@4: q1 picks "#### 5" (0.9, wrong); q2 skips the unanswered 0.9 and picks "#### 6" (0.8, right)
    assert results["rerank@4"] == 0.5
    assert results["exploration/distinct_correct_solutions"] == (2 + 1) / 2
    with pytest.raises(ValueError, match="predictions: expected the same number"):
        metric.compute(predictions=[["#### 4"], ["#### 4", "#### 4"]], references=["4", "4"])


def test_linear_trend_is_the_least_squares_slope_with_a_bootstrap_interval():
    from trl_reasoning.metrics import linear_trend

    exact = linear_trend([0, 1, 2, 3], [1.0, 3.0, 5.0, 7.0])
    assert exact.mean == pytest.approx(2.0) and exact.ci_low == pytest.approx(2.0) == exact.ci_high
    # by hand: x mean 2, y mean 0.4; sum (x-2)(y-0.4) = 0.4 - 0.1 + 0 + 0.2 + 0.4 = 0.9, sum (x-2)^2 = 10
    noisy = linear_trend([0, 1, 2, 3, 4], [0.2, 0.5, 0.1, 0.6, 0.6])
    assert noisy.mean == pytest.approx(0.09) and noisy.ci_low < 0.09 < noisy.ci_high and noisy.n == 5
    with pytest.raises(ValueError, match="3 points"):
        linear_trend([1, 1, 1], [0.0, 1.0, 2.0])


def test_reward_trend_reads_a_trainers_log_per_100_steps():
    from trl_reasoning.metrics import reward_trend

    log = [{"step": s, "reward": 0.1 + 0.001 * s, "loss": 1.0} for s in (5, 10, 15, 20)]
    log.append({"step": 20, "train_runtime": 12.0})  # the closing entry has no reward
    trend = reward_trend(log)
    assert trend["slope"] == pytest.approx(0.1) and trend["points"] == 4
    assert trend["first"] == pytest.approx(0.105) and trend["last"] == pytest.approx(0.12)
    assert (trend["first_step"], trend["last_step"]) == (5, 20)
    assert trend["ci95"] is None and "too few for an interval" in trend["note"]  # 4 points
    assert reward_trend(log[:2]) is None
    noisy = [{"step": s, "reward": 0.1 + 0.001 * s + (0.01 if s % 10 else -0.01)} for s in range(5, 45, 5)]
    trend = reward_trend(noisy)  # 8 points: an interval around the slope
    assert trend["points"] == 8 and "note" not in trend
    assert trend["ci95"][0] < trend["slope"] < trend["ci95"][1]
