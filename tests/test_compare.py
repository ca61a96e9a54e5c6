"""`trl-reasoning compare`: the interval method against hand computations, and a shrunk comparison
(2 seeds, 2 methods, a tiny budget) that writes its table and figures, killed after its first seed and
rerun without redoing the finished pieces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trl_reasoning.errors import RecipeError
from trl_reasoning.metrics import over_seeds, over_seeds_variance

ROOT = Path(__file__).resolve().parents[1]


def test_over_seeds_with_constant_runs_is_the_seed_resampling_distribution():
    """Run A scores 1 on both questions, run B 0: question resampling changes nothing, so the replicates
    are the seed draws, by hand {AA: 1, AB and BA: 0.5, BB: 0} with probabilities 1/4, 1/2, 1/4; the
    95% percentile interval is [0, 1] and the estimate 0.5."""
    estimate = over_seeds([[1.0, 1.0], [0.0, 0.0]], n_bootstrap=4000, seed=1)
    assert estimate.mean == 0.5
    assert (estimate.ci_low, estimate.ci_high) == (0.0, 1.0)
    narrow = over_seeds([[1.0, 1.0], [0.0, 0.0]], n_bootstrap=4000, confidence=0.4, seed=1)
    assert (narrow.ci_low, narrow.ci_high) == (0.5, 0.5)  # half the mass sits on 0.5


def test_over_seeds_variance_matches_a_hand_computation_and_the_bootstrap():
    groups = [[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]]
    # by hand: run means 0.75, 0.25, 1.0 (grand 2/3); their population variance is
    # ((1/12)^2 + (5/12)^2 + (4/12)^2) / 3 = 42/432; within-run variances 3/16, 3/16, 0 over 4 questions
    # give mean(v / n) = (3/64 + 3/64 + 0) / 3 = 1/32; the replicates' variance is (42/432 + 1/32) / 3
    by_hand = (42 / 432 + 1 / 32) / 3
    assert over_seeds_variance(groups) == pytest.approx(by_hand)
    replicates = [over_seeds(groups, n_bootstrap=1, seed=s).ci_low for s in range(4000)]
    mean = sum(replicates) / len(replicates)
    variance = sum((r - mean) ** 2 for r in replicates) / len(replicates)
    assert variance == pytest.approx(by_hand, rel=0.08)
    assert mean == pytest.approx(2 / 3, abs=0.01)


def test_over_seeds_interval_is_wider_than_the_questions_alone_when_seeds_disagree():
    from trl_reasoning.metrics import aggregate

    groups = [[1.0] * 60 + [0.0] * 40, [1.0] * 30 + [0.0] * 70]
    pooled = aggregate([v for g in groups for v in g])
    two_level = over_seeds(groups)
    assert two_level.mean == pytest.approx(pooled.mean)
    assert two_level.ci_high - two_level.ci_low > 1.5 * (pooled.ci_high - pooled.ci_low)


SHRUNK = """
model: tiny
task: arithmetic
output_dir: {output}
stages: [sft, eval]
num_train_examples: 64
num_eval_examples: 12
ei_train_limit: 8
arithmetic: {{max_operand: 9, operators: ['+', '-']}}
tiny: {{hidden_size: 64, num_layers: 1, num_heads: 2}}
sft: {{num_train_epochs: 1, per_device_train_batch_size: 16, learning_rate: 3.0e-3, max_length: 128,
      gradient_checkpointing: false}}
ei: {{num_rounds: 1, num_generations: 2, max_new_tokens: 24, generation_batch_size: 16, num_train_epochs: 1,
     per_device_train_batch_size: 8, max_length: 128, gradient_checkpointing: false,
     eval_num_generations: 2, eval_temperature: 0.7}}
eval: {{num_generations: 2, temperature: 0.7, max_new_tokens: 24, batch_size: 16}}
compare:
  budget: 16
  methods:
    ei: {{stage: ei}}
    sft_more: {{stage: sft, sft: {{num_train_epochs: 1, learning_rate: 1.0e-3}}}}
"""


def _compare(recipe: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trl_reasoning", "compare", str(recipe), "--seeds", "0", "1",
                           *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=900)


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_compare_writes_the_table_and_figures_and_resumes_after_a_kill(tmp_path):
    output = tmp_path / "cmp"
    recipe = tmp_path / "cmp.yaml"
    recipe.write_text(SHRUNK.format(output=output))
    killed = _compare(recipe, env={"TRL_REASONING_FAULT": "seed_done:0"})
    assert killed.returncode == 75, killed.stderr[-2000:]
    assert (output / "seed_0" / "seed_results.json").exists()
    assert not (output / "seed_1" / "seed_results.json").exists() and not (output / "results.json").exists()
    before = _mtimes(output / "seed_0")

    done = _compare(recipe)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "seed 0: finished before" in done.stdout
    assert _mtimes(output / "seed_0") == before  # nothing of the finished seed was redone or rewritten

    results = json.loads((output / "results.json").read_text())
    assert results["seeds"] == [0, 1] and set(results["methods"]) == {"sft", "ei", "sft_more"}
    ei = results["methods"]["ei"]
    assert ei["samples"] == [16, 16]  # 8 questions x 2 samples x 1 round, the budget, on both seeds
    gain = ei["gain_over_sft"]["maj@1"]
    assert gain["ci95"][0] <= gain["mean"] <= gain["ci95"][1] and len(gain["per_seed"]) == 2
    seeds = [json.loads((output / f"seed_{s}" / "seed_results.json").read_text()) for s in (0, 1)]
    by_hand = [s["results"]["ei"]["metrics"]["maj@1"] - s["results"]["sft"]["metrics"]["maj@1"]
               for s in seeds]
    assert gain["per_seed"] == pytest.approx(by_hand)
    assert results["methods"]["sft_more"]["samples"] == [0, 0]
    assert "gap_to_reference" in results["methods"]["sft_more"]
    table = (output / "results.md").read_text()
    assert "| ei |" in table and "maj@1 gain over sft" in table and "gap to ei" in table
    for figure in ("accuracy_vs_samples.png", "pass_at_k_vs_samples.png"):
        assert (output / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["curves"]["ei"]["samples"] == [0, 16]
    trained = [s["train_seconds"]["ei"] for s in seeds]  # rounds 1.. of each seed's EI, as recorded
    assert all(0 < t <= w for t, w in zip(trained, ei["wall_seconds"], strict=True))
    assert results["curves"]["ei"]["seconds"] == pytest.approx([0.0, sum(trained) / 2])
    assert (output / "accuracy_vs_time.png").read_bytes()[:4] == b"\x89PNG" and "| stage wall s |" in table
    _check_results_page(output, tmp_path / "docs_results")
    _check_records_alone_resume(recipe, output, results)


def _check_records_alone_resume(recipe: Path, output: Path, results: dict) -> None:
    """A seed's method records are all a rerun needs (a records folder copied to a new machine): with the
    checkpoints and the seed's results gone, nothing trains again and the results come out the same. A
    method whose settings changed is not reused."""
    import shutil

    from trl_reasoning.compare import load_plan
    from trl_reasoning.compare.runner import load_method, method_settings

    seed = output / "seed_1"
    for gone in ("sft", "ei", "sft_more", "eval", "seed_results.json"):
        shutil.rmtree(seed / gone) if (seed / gone).is_dir() else (seed / gone).unlink()
    again = _compare(recipe)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "seed 1: finished before" in again.stdout  # its records, from one start, are all it needs
    assert not any((seed / name).exists() for name in ("sft", "ei", "sft_more"))  # nothing retrained
    assert json.loads((output / "results.json").read_text())["methods"] == results["methods"]
    changed = load_plan(recipe, [("ei.learning_rate", "1.0e-4")])
    ei, sft_more = (method_settings(changed, m, 1, seed) for m in changed.methods)
    assert load_method(seed, "ei", ei) is None and load_method(seed, "sft_more", sft_more) is not None
    budget_changed = load_plan(recipe, [("compare.budget", "99")])  # the comparison's own section
    assert load_method(seed, "ei", method_settings(budget_changed, budget_changed.methods[0], 1, seed))
    start_changed = load_plan(recipe, [("sft.warmup_steps", "0.2")])  # sft_more's own keys unchanged
    sft_more = method_settings(start_changed, start_changed.methods[1], 1, seed)
    assert load_method(seed, "sft_more", sft_more) is None
    _check_other_start_weights_rerun(recipe, seed)


def _check_other_start_weights_rerun(recipe: Path, seed: Path) -> None:
    """A record measured from other start weights (the same recipe and seed trained elsewhere) is rerun
    from this machine's SFT policy; the records from the same weights are kept."""
    path = seed / "methods" / "ei.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "start_weights": "another-machine"}))
    again = _compare(recipe)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "method ei was measured from other start weights" in again.stdout
    assert "method sft_more finished before" in again.stdout
    weights = {json.loads((seed / "methods" / f"{n}.json").read_text())["start_weights"]
               for n in ("sft", "ei", "sft_more")}
    assert len(weights) == 1 and "another-machine" not in weights  # the SFT retrained to the same weights


def _check_results_page(output: Path, pages: Path) -> None:
    """docs/build_results.py renders the page from the run's copied results.json, figures linked."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_results", ROOT / "docs" / "build_results.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    builder.RESULTS = pages
    command = "trl-reasoning compare recipes/compare_quickstart.yaml --seeds 0 1"  # the recipe as it is now
    builder.RUNS = {"compare_quickstart": ("comparison.md", "The comparison", command)}
    builder.copy_run("compare_quickstart", output)
    (page,) = builder.build_pages()
    text = page.read_text()
    assert "| ei |" in text and "maj@1 gain over sft" in text and "The paper's findings" in text
    assert "](compare_quickstart/accuracy_vs_samples.png)" in text
    assert "](compare_quickstart/accuracy_vs_time.png)" in text
    assert (pages / "compare_quickstart" / "accuracy_vs_samples.png").read_bytes()[:4] == b"\x89PNG"
    assert "### Step errors by arithmetic fact" in text and "| sft | " in text.split("by arithmetic fact")[1]


def test_a_record_from_before_a_new_recipe_key_is_reused_while_the_key_holds_its_default(tmp_path):
    """Adding a recipe option must not rerun every finished method: a record without the key matches
    while the current recipe leaves it at its default, and not once it is set; a changed value or a key
    the recipe no longer has never matches."""
    from trl_reasoning.compare.runner import METHODS, load_method

    current = {"start": {"record_version": 2, "seed": 0, "time_budget_seconds": None, "task": "arithmetic"},
               "method": {"record_version": 2, "seed": 0, "time_budget_seconds": None, "task": "arithmetic"}}
    older = {part: {k: v for k, v in values.items() if k != "time_budget_seconds"}
             for part, values in current.items()}
    (tmp_path / METHODS).mkdir()

    def reused(stored: dict, now: dict) -> bool:
        (tmp_path / METHODS / "ei.json").write_text(json.dumps({"settings": stored}))
        return load_method(tmp_path, "ei", now) is not None

    assert reused(older, current) and reused(current, current)
    budgeted = {**current, "method": {**current["method"], "time_budget_seconds": 60}}
    assert not reused(older, budgeted)
    assert not reused({**older, "method": {**older["method"], "task": "svamp"}}, current)
    assert not reused({**current, "method": {**current["method"], "gone_key": 1}}, current)
    assert not reused({"start": current["start"]}, current)


def test_training_points_time_rounds_from_round_1_and_evaluations_by_their_seconds(tmp_path):
    """A rounds stage's points carry the recorded time of rounds 1 to each (round 0, the start's
    evaluation, trains nothing, as a time budget counts); an on-policy stage's, each evaluation's own."""
    from trl_reasoning.compare.records import training_points

    def round_record(samples, maj, **seconds):
        return {"cumulative_samples": samples, "eval": {"maj@1": maj}, "seconds": seconds}

    rounds = [round_record(0, 0.5, evaluation=5.0), round_record(8, 0.6, sampling=30.0, fine_tuning=10.0),
              round_record(16, 0.7, sampling=20.0, evaluation=5.0)]
    (tmp_path / "ei").mkdir()
    (tmp_path / "ei" / "metrics.json").write_text(json.dumps({"rounds": rounds}))
    assert training_points(tmp_path / "ei") == [[8, {"maj@1": 0.6}, 40.0], [16, {"maj@1": 0.7}, 65.0]]
    (tmp_path / "ppo" / "reasoning_eval").mkdir(parents=True)
    evaluations = [{"samples_drawn": 32, "metrics": {"maj@1": 0.6}, "seconds": 12.5},
                   {"samples_drawn": 64, "metrics": {"maj@1": 0.7}}]  # written before points had seconds
    path = tmp_path / "ppo" / "reasoning_eval" / "metrics.json"
    path.write_text(json.dumps({"evaluations": evaluations}))
    assert training_points(tmp_path / "ppo") == [[32, {"maj@1": 0.6}, 12.5], [64, {"maj@1": 0.7}, None]]


def test_the_training_evaluations_subset_is_read_where_the_points_came_from(tmp_path):
    """The held-out questions behind the training points: the evaluations' own count when fewer than all,
    none for a rounds stage (its reports score every question, whatever training_eval said)."""
    from trl_reasoning.compare.records import training_eval_questions

    (tmp_path / "ppo" / "reasoning_eval").mkdir(parents=True)
    during = tmp_path / "ppo" / "reasoning_eval" / "metrics.json"
    during.write_text(json.dumps({"num_questions": 100, "evaluations": []}))
    assert training_eval_questions(tmp_path / "ppo", 304) == 100
    assert training_eval_questions(tmp_path / "ppo", 100) is None  # all of them
    (tmp_path / "ppo" / "metrics.json").write_text(json.dumps({"rounds": []}))
    assert training_eval_questions(tmp_path / "ppo", 304) is None  # a rounds stage: training_points' source
    assert training_eval_questions(tmp_path / "none", 304) is None


def test_curves_take_each_points_seconds_and_records_without_seconds_draw_no_time_curve():
    """A point's training seconds (runner.training_points' third value) become the curve's time axis,
    averaged over seeds, from 0 at the start to the stage's train_seconds at the end; a record written
    before points had seconds (two values) still gives its samples curve, and no time curve; seeds
    evaluated at other points keep their two ends, in time too."""
    from trl_reasoning.compare.report import _curves

    def record(points, wall):
        start, end = {"maj@1": 0.5}, {"maj@1": 0.7}
        return {"methods": {"ppo": {"stage": "ppo", "entry": "ppo"}},
                "results": {"sft": {"metrics": start}, "ppo": {"metrics": end}},
                "samples": {"ppo": 64}, "train_seconds": {"ppo": wall}, "training_points": {"ppo": points}}

    timed = [record([[32, {"maj@1": 0.6}, 100.0], [64, {"maj@1": 0.7}, 190.0]], 210.0),
             record([[32, {"maj@1": 0.4}, 120.0], [64, {"maj@1": 0.7}, 230.0]], 250.0)]
    curve = _curves(timed, 4)["ppo"]
    assert curve["samples"] == [0, 32, 64] and curve["seconds"] == pytest.approx([0.0, 110.0, 230.0])
    assert curve["maj@1"] == [[0.5, 0.6, 0.7], [0.5, 0.4, 0.7]]
    old = _curves([record([[32, {"maj@1": 0.6}]], 210.0)], 4)["ppo"]
    assert old["samples"] == [0, 32, 64] and "seconds" not in old
    apart = _curves([timed[0], record([[16, {"maj@1": 0.6}, 50.0]], 250.0)], 4)["ppo"]
    assert apart["samples"] == [0, 64] and apart["seconds"] == pytest.approx([0.0, 230.0])


def test_curves_score_start_and_end_on_the_training_evaluations_subset():
    """PPO's training-time points scored the first 2 of 4 held-out questions (its record's
    training_eval_questions): its line starts and ends on those 2 questions (the held-out order, which the
    start's per-question values keep, not the method's own or sorted order), and its band and legend say
    so; EI, evaluated on all 4 every round, keeps the full-set ends; a record without those ids fails."""
    from trl_reasoning.compare.report import _band, _curves, _label, _sizes
    from trl_reasoning.compare.runner import _seed_record

    order = {"sft": ["q2", "q0", "q3", "q1"], "ppo": ["q1", "q3", "q0", "q2"], "ei": ["q0", "q1", "q2", "q3"]}
    greedy = {"sft": {"q2": 1, "q0": 0, "q3": 1, "q1": 1}, "ppo": {"q2": 1, "q0": 1, "q3": 0, "q1": 0},
              "ei": {"q2": 0, "q0": 0, "q3": 1, "q1": 1}}

    def method(name, subset):
        values = {"maj@1": {q: float(greedy[name][q]) for q in order[name]},
                  "pass@4": {q: 1.0 for q in order[name]}}
        return {"reranker": None, "num_questions": 4,
                "results": {name: {"metrics": {"maj@1": sum(greedy[name].values()) / 4, "pass@4": 1.0}}},
                "samples": {name: 64}, "methods": {name: {"stage": name, "entry": name}},
                "per_question": {name: values}, "training_eval_questions": {name: subset} if subset else {},
                "training_points": {name: [[32, {"maj@1": 0.5}]]} if name != "sft" else {}}

    class Recipe:
        eval_split = "test"

    record = _seed_record(0, Recipe, [method("sft", None), method("ppo", 2), method("ei", None)])
    assert record["training_eval_questions"] == {"ppo": 2}
    curves = _curves([record], 4)
    # on q2, q0 (the start's first two): start 1, 0 -> 0.5; ppo 1, 1 -> 1.0 (its own first two: 0.0)
    assert curves["ppo"]["maj@1"] == [[0.5, 0.5, 1.0]] and curves["ppo"]["num_questions"] == 2
    assert curves["ei"]["maj@1"] == [[0.75, 0.5, 0.5]] and "num_questions" not in curves["ei"]
    results = {"num_questions": [4]}
    assert _sizes(results, curves["ppo"]) == [2] and _sizes(results, curves["ei"]) == [4]
    assert _label("ppo", curves["ppo"]) == "ppo (first 2 questions)" and _label("ei", curves["ei"]) == "ei"
    _, low, _ = _band(curves["ppo"]["maj@1"], [2])
    assert low[0] == pytest.approx(0.5 - 1.96 * (0.25 / 2) ** 0.5)
    del record["per_question"]["ppo"]["maj@1"]["q0"]
    with pytest.raises(KeyError, match="ppo: no greedy held-out value for 1 of the first 2"):
        _curves([record], 4)


def test_the_fact_table_counts_wrong_equations_inside_and_outside_the_rl_facts(tmp_path):
    """benchmarks/arithmetic_facts.py on hand-written files: every count below is worked out by hand."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("facts", ROOT / "benchmarks" / "arithmetic_facts.py")
    facts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(facts)
    samples = tmp_path / "samples.jsonl"
    rows = [  # 3 greedy rows (2 right), one sampled row that must be ignored
        {"kind": "greedy", "correct": True, "completion": " 3 + 4 = 7\n7 - 2 = 5\n#### 5"},
        {"kind": "greedy", "correct": False, "completion": " 3 + 4 = 8\n8 - 1 = 6\n#### 6"},
        {"kind": "greedy", "correct": True, "completion": " 10 - 12 = -2\n-2 + 9 = 7\n#### 7"},
        {"kind": "sampled", "correct": False, "completion": " 3 + 4 = 9\n#### 9"},
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    known = {(3, "+", 4), (10, "-", 12)}
    found = facts.step_errors(samples, known)
    # inside: 3+4=7 right, 3+4=8 wrong, 10-12=-2 right: 1 of 3; outside: 7-2=5, 8-1=6 (wrong), -2+9=7
    assert found["equations_in"] == 3 and found["error_in"] == pytest.approx(1 / 3)
    assert found["equations_out"] == 3 and found["error_out"] == pytest.approx(1 / 3)
    assert found["maj@1"] == pytest.approx(2 / 3)
    kept = tmp_path / "ei" / "ei" / "round_001" / "kept.jsonl"
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps({"completion": " 2 + 2 = 5\n5 + 1 = 6"}) + "\n")
    assert facts.trained_rows_error(tmp_path / "ei") == pytest.approx(0.5)
    assert facts.trained_rows_error(tmp_path / "ppo") is None


def test_the_reranker_benchmark_tells_ranking_questions_from_ranking_answers(tmp_path, monkeypatch):
    """benchmarks/reranker_within_question.py with a scorer that ranks the easy question's samples above
    the hard one's but, within each question, a wrong sample first: pooled AUROC 21/32 (worked out by
    hand), within-question AUROC 0, the best-scored sample never right where a random pick is half."""
    import importlib.util

    import trl_reasoning.reward_models as reward_models

    path = ROOT / "benchmarks" / "reranker_within_question.py"
    spec = importlib.util.spec_from_file_location("rerank", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    table = {"easy": ([True, True, True, False], [0.9, 0.8, 0.7, 0.95]),
             "hard": ([True, False, False, False], [0.1, 0.2, 0.15, 0.3]),
             "solved": ([True] * 4, [0.9] * 4)}
    rows = [{"id": q, "kind": "greedy", "prompt": q, "completion": "greedy", "correct": False} for q in table]
    rows += [{"id": q, "kind": "sample", "prompt": q, "completion": str(i), "correct": right[i]}
             for q, (right, _) in table.items() for i in range(4)]
    samples = tmp_path / "seed_3" / "eval" / "sft" / "samples.jsonl"
    samples.parent.mkdir(parents=True)
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))

    class Scorer:  # scores by (question, sample index); the greedy rows must not be scored
        def rerank_scorer(self, prompts, completions):
            return [table[p][1][int(c)] for p, c in zip(prompts, completions, strict=True)]

    monkeypatch.setattr(reward_models, "load_reward_model", lambda path: Scorer())
    found = bench.seed_row(tmp_path, 3)
    assert found["samples"] == 12 and found["questions"] == 3 and found["mixed_questions"] == 2
    assert found["pooled_auroc"] == pytest.approx(21 / 32) and found["within_question_auroc"] == 0.0
    assert found["best_scored_right_on_mixed"] == 0.0 and found["random_pick_right_on_mixed"] == 0.5


def test_a_bad_compare_section_fails_in_one_line(tmp_path):
    from trl_reasoning.compare import load_plan

    recipe = tmp_path / "bad.yaml"
    text = SHRUNK.format(output=tmp_path / "out")
    recipe.write_text(text.replace("ei: {stage: ei}", "ei: {stage: eval}"))
    with pytest.raises(RecipeError, match="compare.methods.ei.stage: 'eval' trains no policy"):
        load_plan(recipe)
    recipe.write_text(text.replace("ei: {stage: ei}", "ei: {stage: ei, num_eval_examples: 5}"))
    with pytest.raises(RecipeError, match="compare.methods.ei.num_eval_examples"):
        load_plan(recipe)
    recipe.write_text(text.replace("ei: {stage: ei}", "ei: {stage: ei, ei: {num_roundz: 2}}"))
    with pytest.raises(RecipeError, match="ei.num_roundz"):
        load_plan(recipe)


def test_a_method_may_set_its_own_time_budget(tmp_path):
    """Equal wall time: ``time_budget_seconds`` is a method override; the shared start keeps none."""
    from trl_reasoning.compare import load_plan

    recipe = tmp_path / "budget.yaml"
    text = SHRUNK.format(output=tmp_path / "out")
    recipe.write_text(text.replace("ei: {stage: ei}", "ei: {stage: ei, time_budget_seconds: 60}"))
    plan = load_plan(recipe)
    budgets = {m.name: m.recipe.time_budget_seconds for m in plan.methods}
    assert budgets["ei"] == 60 and plan.recipe.time_budget_seconds is None
    assert set(budgets.values()) == {60, None}


def _entry(mean, low, high):
    return {"mean": mean, "ci95": [low, high], "per_seed": [mean]}


def _results(ppo_gap, rcrl_gap, sft_more_gain, ei_gain, pass_gains):
    methods = {
        "sft": {"metrics": {"distinct_correct": {"mean": 1.2}}},
        "ei": {"metrics": {"distinct_correct": {"mean": 1.0}},
               "gain_over_sft": {"maj@1": _entry(*ei_gain), "pass@4": _entry(*pass_gains["ei"])}},
        "ppo_sparse": {"metrics": {}, "gap_to_reference": {"maj@1": _entry(*ppo_gap)},
                       "gain_over_sft": {"maj@1": _entry(0.0, -0.1, 0.1),
                                         "pass@4": _entry(*pass_gains["ppo"])}},
        "rcrl": {"metrics": {}, "gap_to_reference": {"maj@1": _entry(*rcrl_gap)},
                 "gain_over_sft": {"maj@1": _entry(0.0, -0.1, 0.1), "pass@4": _entry(0.0, -0.05, 0.05)}},
        "sft_more": {"metrics": {}, "gap_to_reference": {"maj@1": _entry(0, -1, 1)},
                     "gain_over_sft": {"maj@1": _entry(*sft_more_gain[0]),
                                       "pass@4": _entry(*sft_more_gain[1])}},
    }
    return {"methods": methods, "reference": "ei", "baseline": "sft", "k": 4, "seeds": [0, 1, 2]}


def test_findings_are_read_off_the_intervals():
    from trl_reasoning.compare.findings import finding_a, finding_b, finding_c, findings, seeds_needed

    clear = _results(ppo_gap=(-0.08, -0.12, -0.04), rcrl_gap=(-0.1, -0.15, -0.05),
                     sft_more_gain=((0.03, 0.01, 0.05), (-0.04, -0.06, -0.02)), ei_gain=(0.1, 0.06, 0.14),
                     pass_gains={"ei": (0.0, -0.02, 0.02), "ppo": (0.01, -0.02, 0.04)})
    assert finding_a(clear).startswith("(a) EI >= PPO ~ RCRL: holds.")
    assert "ppo_sparse -0.080 [-0.120, -0.040]" in finding_a(clear)
    assert ": holds." in finding_b(clear) and ": holds." in finding_c(clear)
    murky = _results(ppo_gap=(-0.01, -0.05, 0.03), rcrl_gap=(0.05, 0.01, 0.09),
                     sft_more_gain=((0.0, -0.02, 0.02), (0.0, -0.02, 0.02)), ei_gain=(0.02, -0.01, 0.05),
                     pass_gains={"ei": (0.05, 0.02, 0.08), "ppo": (0.0, -0.02, 0.02)})
    assert ": does not hold." in finding_a(murky)  # RCRL above EI
    assert ": cannot be told at this scale." in finding_b(murky)
    assert ": does not hold for ei." in finding_c(murky)
    # every gain holds 0: the budget note says how many seeds each would need (3 x (half / mean)^2 + 1)
    assert seeds_needed(_entry(0.02, -0.01, 0.05), 3) == int(3 * (0.03 / 0.02) ** 2) + 1
    assert len(findings(clear)) == 3  # EI's gain excludes 0: no budget note
    assert findings(murky)[-1] == (
        "No method's maj@1 gain over SFT excludes 0 with 3 seed(s). At the measured sizes and spread, "
        f"telling each from 0 would take: ei ~{int(3 * (0.03 / 0.02) ** 2) + 1} seeds. ppo_sparse, rcrl, "
        "sft_more: a measured gain of exactly 0, from which no number of seeds follows.")
    flat = _results(ppo_gap=(-0.01, -0.05, 0.03), rcrl_gap=(0.0, -0.04, 0.04),
                    sft_more_gain=((0.0, -0.02, 0.02), (0.0, -0.02, 0.02)), ei_gain=(0.0, -0.03, 0.03),
                    pass_gains={"ei": (0.0, -0.02, 0.02), "ppo": (0.0, -0.02, 0.02)})
    assert "would take" not in findings(flat)[-1]  # every gain exactly 0: no empty list of seeds


def test_compare_command_line_splits_its_flags_from_recipe_overrides():
    from trl_reasoning.cli import _compare_args
    from trl_reasoning.tasks import DataError

    seeds, flags, rest = _compare_args(["--seeds", "0", "1", "2", "--only", "ei,ppo_sparse", "--output",
                                        "runs/x", "--ei.num_rounds", "3", "--workers", "2"])
    assert (seeds, flags) == ([0, 1, 2], {"output": "runs/x", "only": ["ei", "ppo_sparse"], "workers": 2})
    assert rest == ["--ei.num_rounds", "3"]
    assert _compare_args([])[1]["workers"] == 1 and _compare_args(["--workers=3"])[1]["workers"] == 3
    with pytest.raises(DataError, match="--workers: expected a positive integer, got '0'"):
        _compare_args(["--workers", "0"])
    assert _compare_args(["--seeds", "3,4"])[0] == [3, 4] and _compare_args([])[0] == [0]
    with pytest.raises(DataError, match="--seeds: expected integers"):
        _compare_args(["--seeds", "one"])


def _one_seed_results(train_seconds: dict) -> dict:
    """A one-seed comparison's results.json as summarise writes it: SFT and PPO, PPO resumed once."""
    def metrics(value):
        names = ("maj@1", "maj@4", "pass@1", "pass@4", "distinct_correct")
        return {n: {"mean": value, "per_seed": [value]} for n in names}

    methods = {"sft": {"metrics": metrics(0.5), "samples": [0], "wall_seconds": [100.0]},
               "ppo": {"metrics": metrics(0.6), "samples": [64], "wall_seconds": [50.0],
                       "gain_over_sft": {"maj@1": _entry(0.1, 0.0, 0.2), "pass@4": _entry(0.1, 0.0, 0.2)}}}
    for name, seconds in train_seconds.items():
        methods[name]["train_seconds"] = [seconds]
    return {"methods": methods, "k": 4, "baseline": "sft", "reference": None, "seeds": [0],
            "num_questions": [10], "eval_split": "test", "interval_method": "paired bootstrap",
            "machine": {}, "sft_spread": {"std": 0.0, "per_seed": [0.5]}, "curves": {}}


def test_the_table_shows_a_resumed_stages_training_clock_beside_its_last_runs_wall_time():
    """A stage resumed after a crash records the wall seconds of its last run only; its training clock (the
    time budget's, resumes included) goes in a column of its own, blank where a method has none (SFT),
    and the column is left out for runs that recorded no clock. One seed states no spread."""
    from trl_reasoning.compare.report import results_markdown

    text = results_markdown(_one_seed_results({"sft": None, "ppo": 2700.0}))
    assert "| training samples | stage wall s | training clock s |" in text
    assert "| 64 | 50 | 2,700 |" in text and "| 0 | 100 |  |" in text
    assert "SFT maj@1: one seed (0.500), no spread over seeds to state." in text
    assert "standard deviation" not in text
    older = results_markdown(_one_seed_results({}))
    assert "training clock s" not in older and "| 64 | 50 |" in older


def test_a_run_without_its_reference_method_shows_no_gap_column():
    """``--only`` without the reference method (``results['reference']`` None): the gains table has no
    "gap to" column rather than one headed "gap to None"; with a reference, the column is there."""
    from trl_reasoning.compare.report import results_markdown

    text = results_markdown(_one_seed_results({}))
    assert "| method | maj@1 gain over sft | pass@4 gain over sft |\n" in text and "gap to" not in text
    assert "| ppo | +0.100 [+0.000, +0.200] | +0.100 [+0.000, +0.200] |\n" in text  # no empty gap cell
    with_reference = _one_seed_results({})
    with_reference["reference"] = "ppo"
    assert "| maj@1 gap to ppo |" in results_markdown(with_reference)
