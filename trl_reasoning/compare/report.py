"""A comparison's results over seeds: ``results.json``, ``results.md`` and two figures, all built from the
seeds' records (``runner``: each method's metrics, per-question values and training-time points).

Intervals: every gain (a method over SFT) and gap (a method to the reference method) is a mean over
seeds of the paired per-question differences on that seed's held-out questions, with a two-level
bootstrap 95% interval (``metrics.over_seeds``: resample seeds, then questions within each seed), so it
carries the run-to-run noise as well as the question sample. The figures' bands are the same interval
in closed form (as ``metrics.over_seeds_variance``, +-1.96 standard deviations).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..metrics import over_seeds
from ..reporting import markdown_table, plot_curves, write_json_atomic, write_text_atomic
from .records import sampled_k

INTERVAL_METHOD = ("two-level bootstrap (2000 replicates): seeds drawn with replacement, then questions "
                   "within each drawn seed; paired per question within a seed")
CURVE_FILES = {"maj@1": "accuracy_vs_samples.png", "pass": "pass_at_k_vs_samples.png",
               "time": "accuracy_vs_time.png"}


def _paired(seeds_values: list[dict], a: str, b: str, metric: str) -> list[list[float]]:
    """Per seed, ``a - b`` on each question both were scored on."""
    groups = []
    for values in seeds_values:
        mine, theirs = values[a][metric], values[b][metric]
        groups.append([mine[i] - theirs[i] for i in theirs if i in mine])
    return groups


def _interval(groups: list[list[float]]) -> dict:
    estimate = over_seeds(groups)
    return {"mean": estimate.mean, "ci95": [estimate.ci_low, estimate.ci_high],
            "per_seed": [sum(g) / len(g) for g in groups]}


def summarise(plan, seeds: list[int], output: Path, records: list[dict]) -> dict:
    """Aggregate finished seeds into ``results.json``, ``results.md`` and the figures; returns the results."""
    k = sampled_k(records[0]["results"])
    names = list(records[0]["results"])
    values = [r["per_question"] for r in records]
    reference = plan.reference if plan.reference in names else None
    tracked = ["maj@1", f"maj@{k}", f"rerank@{k}", "pass@1", f"pass@{k}"]
    methods = {}
    for name in names:
        per_seed = {m: [r["results"][name]["metrics"].get(m) for r in records] for m in tracked}
        per_seed["distinct_correct"] = [r["results"][name]["exploration"].get("distinct_correct_solutions")
                                        for r in records]
        entry = {
            "metrics": {m: {"mean": _mean(v), "per_seed": v} for m, v in per_seed.items() if None not in v},
            "samples": [r["samples"].get(name, 0) for r in records],
            "wall_seconds": [r["wall_seconds"].get(name) for r in records],
            "train_seconds": [r.get("train_seconds", {}).get(name) for r in records],
        }
        if name != plan.baseline:
            entry["gain_over_sft"] = {m: _interval(_paired(values, name, plan.baseline, m))
                                      for m in ("maj@1", f"pass@{k}")}
        if reference and name not in (reference, plan.baseline):
            entry["gap_to_reference"] = {m: _interval(_paired(values, name, reference, m))
                                         for m in ("maj@1", f"pass@{k}")}
        methods[name] = entry
    sft = methods[plan.baseline]["metrics"]["maj@1"]["per_seed"]
    results = {
        "seeds": [r["seed"] for r in records], "k": k, "reference": reference, "baseline": plan.baseline,
        "budget": plan.budget, "num_questions": [r["num_questions"] for r in records],
        "eval_split": records[0].get("eval_split", "test"),
        "interval_method": INTERVAL_METHOD, "machine": records[0].get("machine", {}),
        "sft_spread": {"std": statistics.stdev(sft) if len(sft) > 1 else 0.0, "per_seed": sft},
        "methods": methods, "curves": _curves(records, k),
    }
    write_json_atomic(output / "results.json", results)
    write_text_atomic(output / "results.md", results_markdown(results))
    plot_comparison(output, results)
    return results


def _mean(values: list) -> float:
    return sum(values) / len(values)


# ------------------------------------------------------------------ curves


def _curves(records: list[dict], k: int) -> dict:
    """Per method: the x values (samples drawn; and the training seconds, mean over seeds, where every
    point has them) and each seed's maj@1 and pass@k there. The start is the SFT policy's final
    evaluation (0 s), the end the method's (at its stage's ``train_seconds``, the clock of its points:
    loading and engine start-up left out); the points between come from its training (records written
    before points had seconds hold two values, and before ``train_seconds`` have no time curve). Where
    those points scored only the first N held-out questions (``training_eval.limit``), the start and end
    are scored on the same N (``_on_subset``), so that a line never joins two sets of questions; the
    curve then carries ``num_questions``."""
    curves = {}
    for name, info in records[0]["methods"].items():
        if info.get("entry") != info.get("stage") or name == "sft":
            continue  # the extra entries of a stage (RCRL unconditioned) and the start have no curve
        subset = _subset_size(records, name)
        seeds = []
        for r in records:
            start, end = (_on_subset(r, model, subset, k) for model in ("sft", name))
            middle = [(p[0], p[1], p[2] if len(p) > 2 else None) for p in r["training_points"][name]
                      if 0 < p[0] < r["samples"][name]]
            seeds.append([(0, start, 0.0), *middle,
                          (r["samples"][name], end, r.get("train_seconds", {}).get(name))])
        xs = [p[0] for p in seeds[0]]
        if any([p[0] for p in s] != xs for s in seeds):  # seeds evaluated at different points: ends only
            seeds = [[s[0], s[-1]] for s in seeds]
            xs = [p[0] for p in seeds[0]]
        curves[name] = {"samples": xs, **{m: [[p[1].get(m) for p in s] for s in seeds]
                                          for m in ("maj@1", f"pass@{k}")}}
        if subset:
            curves[name]["num_questions"] = subset
        if all(p[2] is not None for s in seeds for p in s):
            curves[name]["seconds"] = [_mean([s[i][2] for s in seeds]) for i in range(len(xs))]
    return curves


def _subset_size(records: list[dict], name: str) -> int | None:
    """How many held-out questions ``name``'s training-time evaluations scored, where fewer than all
    (the same in every seed; None otherwise, or in records written before the seed record kept it)."""
    sizes = {(r.get("training_eval_questions") or {}).get(name) for r in records}
    size = sizes.pop() if len(sizes) == 1 else None
    return size if size and all(size < r["num_questions"] for r in records) else None


def _on_subset(record: dict, model: str, subset: int | None, k: int) -> dict:
    """``model``'s held-out metrics in one seed's record: as evaluated, or, with ``subset``, maj@1 (and
    pass@k where every one of them has K samples) on the first ``subset`` held-out questions (the
    evaluation's order, which the start's per-question values keep) from its per-question values."""
    if not subset:
        return record["results"][model]["metrics"]
    values = record["per_question"][model]
    order = list(record["per_question"]["sft"]["maj@1"])[:subset]
    missing = [i for i in order if i not in values["maj@1"]]
    if missing:
        raise KeyError(f"{model}: no greedy held-out value for {len(missing)} of the first {subset} "
                       f"questions, such as {missing[0]!r}")
    return {m: sum(values[m][i] for i in order) / subset for m in ("maj@1", f"pass@{k}")
            if m in values and all(i in values[m] for i in order)}


def _band(per_seed: list[list[float]], num_questions: list[int]) -> tuple[list, list, list]:
    """Mean over seeds and a closed-form two-level 95% band per x: ``over_seeds_variance`` with each
    seed's within-question variance taken as ``p (1 - p)`` (exact for 0/1 outcomes such as greedy
    correctness, an upper bound for pass@k's values in [0, 1])."""
    means, lows, highs = [], [], []
    for i in range(len(per_seed[0])):
        ps = [s[i] for s in per_seed]
        if None in ps:
            return [], [], []
        mean = _mean(ps)
        between = _mean([(p - mean) ** 2 for p in ps])
        within = _mean([p * (1 - p) / n for p, n in zip(ps, num_questions, strict=True)])
        half = 1.96 * ((between + within) / len(ps)) ** 0.5
        means.append(mean)
        lows.append(mean - half)
        highs.append(mean + half)
    return means, lows, highs


def plot_comparison(output: Path, results: dict) -> None:
    """Held-out maj@1 and pass@k against training samples drawn, one line per method with its band."""
    k = results["k"]
    for metric, file in (("maj@1", CURVE_FILES["maj@1"]), (f"pass@{k}", CURVE_FILES["pass"])):
        curves, bands = {}, {}
        for name, curve in results["curves"].items():
            per_seed = curve.get(metric) or []
            means, lows, highs = _band(per_seed, _sizes(results, curve)) if per_seed else ([], [], [])
            if means:
                label = _label(name, curve)
                curves[label], bands[label] = (curve["samples"], means), (lows, highs)
        if curves:
            seeds = len(results["seeds"])
            plot_curves(output / file, curves, "training samples drawn", f"held-out {metric}",
                        f"{metric} vs samples, same SFT start, mean of {seeds} seed(s), 95% band",
                        bands=bands)
    timed, bands = {}, {}
    for name, curve in results["curves"].items():
        means, lows, highs = _band(curve["maj@1"], _sizes(results, curve)) if curve.get("seconds") \
            else ([], [], [])
        if means:
            label = _label(name, curve)
            timed[label], bands[label] = ([s / 60 for s in curve["seconds"]], means), (lows, highs)
    if timed:
        plot_curves(output / CURVE_FILES["time"], timed, "minutes of training (mean over seeds)",
                    "held-out maj@1", f"maj@1 vs wall time, same SFT start, mean of {len(results['seeds'])} "
                    "seed(s), 95% band", bands=bands)


def _sizes(results: dict, curve: dict) -> list[int]:
    """Each seed's number of questions behind a curve's values (its subset's where it has one)."""
    return [curve.get("num_questions", n) for n in results["num_questions"]]


def _label(name: str, curve: dict) -> str:
    """A curve's legend entry, naming its subset of held-out questions where it has one."""
    return f"{name} (first {curve['num_questions']} questions)" if "num_questions" in curve else name


# ------------------------------------------------------------------ markdown


def _cell(entry: dict | None) -> str:
    if not entry:
        return ""
    return f"{entry['mean']:+.3f} [{entry['ci95'][0]:+.3f}, {entry['ci95'][1]:+.3f}]"


def _with_seeds(entry: dict) -> str:
    return f"{entry['mean']:.3f} ({', '.join(f'{v:.3f}' for v in entry['per_seed'])})"


_SPLIT_WORDS = {"test": "held-out questions",
                "validation": "validation questions (carved from the train split, never trained on)"}


def _mean_or_blank(values: list | None) -> str:
    """A table cell: the mean of per-seed seconds, blank where a seed has none."""
    return "" if not values or None in values else f"{_mean(values):,.0f}"


def _spread_line(spread: dict) -> str:
    """The SFT policies' spread of maj@1 over seeds (none to state for one seed)."""
    values = ", ".join(f"{v:.3f}" for v in spread["per_seed"])
    if len(spread["per_seed"]) < 2:
        return f"SFT maj@1: one seed ({values}), no spread over seeds to state.\n\n"
    return f"SFT maj@1 across seeds: standard deviation {spread['std']:.3f} ({values}).\n\n"


def results_markdown(results: dict) -> str:
    """The comparison as markdown: per method the means over seeds (with each seed's value), then each
    gain over SFT and gap to the reference with its two-level interval."""
    k, methods = results["k"], results["methods"]
    names = ["maj@1", f"maj@{k}", f"rerank@{k}", "pass@1", f"pass@{k}", "distinct_correct"]
    shown = [n for n in names if all(n in m["metrics"] for m in methods.values())]
    # a stage's wall seconds count its last run only; its training clock (the time budget's) goes on
    # through resumes: shown where a run recorded it
    clocked = any(None not in (e.get("train_seconds") or [None]) for e in methods.values())
    rows = []
    for name, entry in methods.items():
        cells = [_with_seeds(entry["metrics"][n]) for n in shown]
        times = [_mean_or_blank(entry.get("wall_seconds"))]
        times += [_mean_or_blank(entry.get("train_seconds"))] if clocked else []
        rows.append([name, *cells, f"{_mean(entry['samples']):,.0f}", *times])  # a count, not a rate
    table = markdown_table(["method", *shown, "training samples", "stage wall s",
                            *(["training clock s"] if clocked else [])], rows)
    reference = results["reference"]  # None when the run left the reference method out (--only)
    gain_rows = [[name, _cell(e.get("gain_over_sft", {}).get("maj@1")),
                  _cell(e.get("gain_over_sft", {}).get(f"pass@{k}")),
                  *([_cell(e.get("gap_to_reference", {}).get("maj@1"))] if reference else [])]
                 for name, e in methods.items() if name != results["baseline"]]
    gains = markdown_table(["method", "maj@1 gain over sft", f"pass@{k} gain over sft",
                            *([f"maj@1 gap to {reference}"] if reference else [])], gain_rows)
    from .findings import findings

    spread, split = results["sft_spread"], results.get("eval_split", "test")
    seeds = ", ".join(map(str, results["seeds"]))
    stated = "\n".join(f"- {line}" for line in findings(results))
    if len(results["seeds"]) == 1:  # the seed level of the bootstrap has nothing to resample
        stated = ("With one seed the intervals carry the question sample only, not the run-to-run noise: "
                  "read these as one run.\n\n" + stated)
    return (f"# Comparison over seeds {seeds}\n\n"
            f"{results['num_questions'][0]} {_SPLIT_WORDS[split]} per seed; "
            f"each cell: mean over seeds (each seed's value).\n\n{table}\n\n"
            + ("Stage wall s: the stage's last run (a resumed stage's earlier runs are not in it); "
               "training clock s: its training time, resumes included (what a time budget counts).\n\n"
               if clocked else "") +
            f"Gains and gaps, 95% interval: {results['interval_method']}.\n\n{gains}\n\n"
            f"## The paper's findings, as measured\n\n{stated}\n\n"
            + _spread_line(spread) +
            f"Machine: {results['machine'].get('cpu', 'unknown CPU')}, "
            f"{', '.join(results['machine'].get('matrix_extensions', []))}.\n\n"
            f"![maj@1 vs samples]({CURVE_FILES['maj@1']})\n" + _pass_figure(results, k)
            + _time_figure(results))


def _time_figure(results: dict) -> str:
    """The maj@1-vs-wall-time figure's link, where ``plot_comparison`` drew one (curves with seconds)."""
    if any(curve.get("seconds") and _band(curve["maj@1"], results["num_questions"])[0]
           for curve in results["curves"].values()):
        return f"\n![maj@1 vs wall time]({CURVE_FILES['time']})\n"
    return ""


def _pass_figure(results: dict, k: int) -> str:
    """The pass@k figure's link, where ``plot_comparison`` drew one: only methods whose training-time
    evaluations sampled k completions have pass@k points (EI's rounds greedy-only do not)."""
    for curve in results["curves"].values():
        per_seed = curve.get(f"pass@{k}") or []
        if per_seed and _band(per_seed, results["num_questions"])[0]:  # as plot_comparison decides
            return f"\n![pass@{k} vs samples]({CURVE_FILES['pass']})\n"
    return ""
