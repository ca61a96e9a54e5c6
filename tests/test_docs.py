"""The README and the docs site stay true to the code: length, links, commands, recipe paths, Makefile
targets, Python imports in examples, the generated recipe reference against ``train --help``, and a strict
MkDocs build (when the ``docs`` extra is installed). No network, no training."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
TEXTS = [README, *PAGES]

_FENCE_RE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$", re.S | re.M)
_SPAN_RE = re.compile(r"(`+)(.+?)\1", re.S)
_LINK_RE = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK_RE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _without_code(text: str) -> str:
    return _SPAN_RE.sub(" ", _FENCE_RE.sub("", text))


def _code(text: str) -> str:
    """The fenced blocks and inline code spans of a markdown text, one per line."""
    blocks = [m.group(0) for m in _FENCE_RE.finditer(text)]
    spans = [m.group(2) for m in _SPAN_RE.finditer(_FENCE_RE.sub("", text))]
    return "\n".join(blocks + spans)


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------ (a) README length


def test_readme_is_at_most_250_lines():
    lines = README.read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines; keep it at most 250 (move detail into docs/)"


def _results_builder():
    spec = importlib.util.spec_from_file_location("build_results", DOCS / "build_results.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    return builder


def _benchmark_pages():
    _results_builder()  # puts docs/ on sys.path
    import benchmark_pages

    return benchmark_pages


def _ppo_trials_page():
    _results_builder()  # puts docs/ on sys.path
    import ppo_trials_page

    return ppo_trials_page


def test_readme_quickstart_table_is_the_one_built_from_its_run():
    """The README's quickstart results are what docs/build_results.py makes of the copied run's
    results.json, between its marks: a rerun rewrites them, a hand edit fails here, and there is no
    table without its run."""
    import json

    builder = _results_builder()  # puts docs/ on sys.path
    import readme_table

    path = builder.RESULTS / "quickstart_seeds" / "results.json"
    start, end = readme_table.README_MARKS
    text = README.read_text()
    if not path.exists():
        assert start not in text, "README has a quickstart table but docs/results/quickstart_seeds/ no run"
        return
    assert start in text and end in text, "README lacks the quickstart table's marks"
    block = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert block == readme_table.readme_quickstart_table(json.loads(path.read_text())).strip()


def _eval_run(folder: Path, models: dict[str, list[int]], reverse: bool = False,
              sampled: dict[str, list[float]] | None = None) -> None:
    """A copied eval stage: per model, greedy rows (1/0 for questions q0, q1, ...; written last first with
    ``reverse``; a wrong one writes a false equation) and, with ``sampled``, two sampled rows' correctness
    per question (its share right: 0, 0.5 or 1), and a results.json."""
    import json

    for name, correct in models.items():
        rows = [{"id": f"q{i}", "kind": "greedy", "correct": bool(c),
                 "completion": " 1 + 1 = 2\n#### 2" if c else " 1 + 1 = 3\n#### 3"}
                for i, c in enumerate(correct)]
        rows += [{"id": f"q{i}", "kind": "sample", "correct": j < 2 * share}
                 for i, share in enumerate((sampled or {}).get(name, [])) for j in range(2)]
        (folder / "eval" / name).mkdir(parents=True)
        lines = [json.dumps(r) + "\n" for r in (rows[::-1] if reverse else rows)]
        (folder / "eval" / name / "samples.jsonl").write_text("".join(lines))
    def record(correct: list[int]) -> dict:  # every metric the greedy rate, its interval +-0.1
        rate = sum(correct) / len(correct)
        keys = ("maj@1", "maj@8", "pass@1", "pass@8")
        return {"metrics": dict.fromkeys(keys, rate), "confidence_intervals": dict.fromkeys(
            keys, [rate - 0.1, rate + 0.1]), "exploration": {"distinct_correct_solutions": rate},
            "num_questions": len(correct)}

    (folder / "results.json").write_text(json.dumps({name: record(c) for name, c in models.items()}))


def _real_model_pages():
    _results_builder()  # puts docs/ on sys.path: the page modules import each other
    spec = importlib.util.spec_from_file_location("real_model_pages", DOCS / "real_model_pages.py")
    pages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pages)
    return pages


def _ei_runs_page():
    _results_builder()  # puts docs/ on sys.path
    import ei_runs_page

    return ei_runs_page


def _rounds(folder: Path, maj1: list[float]) -> None:
    """EI round records ``ei/round_R/metrics.json``: round R's greedy maj@1 ``maj1[R]``, 8 samples a round,
    right at 0.5 + R / 10 (drawn by round R - 1's policy)."""
    import json

    for number, value in enumerate(maj1):
        (folder / "ei" / f"round_{number:03d}").mkdir(parents=True)
        record = {"round": number, "cumulative_samples": 8 * number,
                  "eval": {"maj@1": value, "ci95/maj@1": [value - 0.1, value + 0.1]},
                  "train": {"samples": 8, "sample_accuracy": 0.5 + number / 10} if number else {},
                  "seconds": {"evaluation": 10.0}}
        if number:
            record["seconds"].update(sampling=20.0, fine_tuning=30.0)
        (folder / "ei" / f"round_{number:03d}" / "metrics.json").write_text(json.dumps(record))


def test_the_recipe_eval_table_pairs_pass_at_1_where_sampled_rows_were_kept_and_sorts_greedy_rows(tmp_path):
    """The eval table's paired gains: maj@1 from the greedy rows, pass@1 from the sampled rows' correctness
    (mean over the questions of the EI model's share right minus the SFT's: (1 + 0.5 + 0 + 0) / 4), blank
    in a copy without them; below it, what each model's greedy answers are."""
    page = _ei_runs_page()
    greedy = {"sft": [1, 0, 0, 0], "ei": [1, 1, 0, 0]}
    _eval_run(tmp_path / "kept", greedy, sampled={"sft": [0, 0, 0.5, 0], "ei": [1, 0.5, 0.5, 0]})
    text = page._recipe_eval_table(tmp_path / "kept")
    ei_row = next(line for line in text.splitlines() if line.startswith("| ei | 0.500"))
    maj1, pass1 = ei_row.split(" | ")[-2:]
    assert maj1.startswith("+0.250 [") and pass1.startswith("+0.375 [")
    assert "| sft | 0.250 | 0.750 | 0.000 | 0.000 |" in text  # right, a false equation, ...
    assert "| ei | 0.500 | 0.500 | 0.000 | 0.000 |" in text
    _eval_run(tmp_path / "greedy_only", greedy)
    ei_row = next(line for line in page._recipe_eval_table(tmp_path / "greedy_only").splitlines()
                  if line.startswith("| ei | 0.500"))
    assert ei_row.split(" | ")[-2].startswith("+0.250 [") and ei_row.endswith("|  |")


def test_finding_d_section_pairs_the_two_starts_by_question(tmp_path):
    """The gaps between the SFT and the pretrained start, before and after EI, pair each question with
    itself (by id, whatever the files' order): before, every question scores the same for both, so the
    paired gap and its interval are exactly 0 (paired by line they would not be); after, 3/4 - 1/4. No
    section until a pretrained run exists; runs on other questions are refused."""
    page = _ei_runs_page()
    _eval_run(tmp_path / page.SMOLLM2_RECIPE, {"sft": [1, 0, 1, 0], "ei": [1, 1, 1, 0]})
    assert page.starts_section(tmp_path) == ""
    pretrained = {"initial": [1, 0, 1, 0], "ei": [0, 0, 1, 0]}
    _eval_run(tmp_path / page.SMOLLM2_PRETRAINED, pretrained, reverse=True)
    text = page.starts_section(tmp_path)
    assert "| greedy maj@1 before EI | 0.500 | 0.500 | +0.000 [+0.000, +0.000] |" in text
    assert "| greedy maj@1 after 3 EI rounds | 0.750 | 0.250 | +0.500 [" in text
    assert "the gap changed by +0.500 [" in text
    (tmp_path / page.SMOLLM2_PRETRAINED / "eval" / "ei" / "samples.jsonl").write_text(
        '{"id": "other", "kind": "greedy", "correct": true}\n')
    with pytest.raises(ValueError, match="other questions"):
        page.starts_section(tmp_path)


def test_finding_d_has_a_block_per_split_with_the_pretrained_rounds_before_the_gap(tmp_path):
    """A pretrained run's rounds show as soon as they are copied, its gap only once both runs' eval stages
    are; each split's block pairs the pretrained run with that split's recipe run (the family split's, not
    the former one's, whose questions differ), family split first."""
    page = _ei_runs_page()
    family, former = "smollm2_recipe_family", page.SMOLLM2_RECIPE
    _rounds(tmp_path / page.PRETRAINED_RUNS[family], [0.05, 0.09, 0.15])
    _eval_run(tmp_path / former, {"sft": [1, 1, 0, 0], "ei": [1, 1, 1, 0]})
    text = page.starts_section(tmp_path)
    assert "### On SVAMP's family split" in text and "former" not in text
    assert "--output_dir runs/smollm2_pretrained_ei_family" in text
    assert "| pretrained, 4-shot | 0.050 [-0.050, 0.150] | 0.600 | 0 | 10 |" in text
    assert "| EI round 1 | 0.090 [-0.010, 0.190] | 0.700 | 8 | 60 |" in text  # round 2's samples: its own
    assert "| EI round 2 | 0.150 [0.050, 0.250] |  | 16 | 60 |" in text
    assert "once the eval stages of smollm2_recipe_family and smollm2_pretrained_ei_family have" in text
    _eval_run(tmp_path / family, {"sft": [1, 0, 0], "ei": [1, 1, 0]})
    _eval_run(tmp_path / page.PRETRAINED_RUNS[family], {"initial": [0, 0, 0], "ei": [1, 0, 0]})
    _eval_run(tmp_path / page.SMOLLM2_PRETRAINED, {"initial": [0, 0, 0, 0], "ei": [1, 0, 0, 0]})
    text = page.starts_section(tmp_path)
    family_block, former_block = text.split("### On the former id-based split")
    # the pretrained run's eval table, its gain over its own start: 1/3 - 0
    eval_row = "| ei | 0.333 [0.233, 0.433] | 0.333 | 0.333 | 0.333 [0.233, 0.433] | 0.333 | +0.333 ["
    assert eval_row in family_block and "gain over initial, paired 95%" in family_block
    assert "| greedy maj@1 after 3 EI rounds | 0.667 | 0.333 | +0.333 [" in family_block
    assert "| greedy maj@1 before EI | 0.333 | 0.000 | +0.333 [" in family_block
    assert "on the 3 test questions" in family_block and "once the eval" not in family_block
    assert family_block.index("| pretrained, 4-shot |") < family_block.index("| greedy maj@1 before EI |")
    assert "| greedy maj@1 after 3 EI rounds | 0.750 | 0.250 | +0.500 [" in former_block


def test_an_ei_run_is_copied_with_its_records_greedy_rows_and_sampled_correctness(tmp_path):
    """``copy_ei_run`` takes the stage records, the rounds' metrics and the eval stage's results, and of
    its samples the greedy rows whole and of the sampled ones which question and whether right (what the
    paired gains and gaps read), leaving sampled texts, checkpoints and train samples."""
    import json

    page = _ei_runs_page()
    run, copy = tmp_path / "run", tmp_path / "copy"
    _rounds(run, [0.2, 0.3])
    (run / "ei" / "round_001" / "samples.jsonl").write_text("{}\n")
    (run / "ei" / "round_001" / "checkpoint").mkdir()
    (run / "ei" / "stage_complete.json").write_text("{}")
    (run / "eval" / "ei").mkdir(parents=True)
    rows = [{"id": "q0", "kind": "greedy", "correct": True, "completion": " 2"},
            {"id": "q0", "kind": "sample", "correct": False, "completion": " 3", "sample_index": 0}]
    (run / "eval" / "ei" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "eval" / "ei" / "metrics.json").write_text("{}")
    (run / "eval" / "sft").mkdir()  # a model whose metrics.json is not written yet
    (run / "eval" / "sft" / "samples.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (run / "sft").mkdir()
    (run / "sft" / "stage_complete.json").write_text("{}")
    (run / "sft" / "model.safetensors").write_text("")
    (run / "results.json").write_text("{}")
    page.copy_ei_run(run, copy)
    copied = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file())
    assert copied == ["ei/round_000/metrics.json", "ei/round_001/metrics.json", "ei/stage_complete.json",
                      "eval/ei/metrics.json", "eval/ei/samples.jsonl", "eval/sft/samples.jsonl",
                      "results.json", "sft/stage_complete.json"]
    kept = (copy / "eval/ei/samples.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in kept] == [rows[0], {"id": "q0", "kind": "sample", "correct": False}]


def test_the_recipe_section_has_a_block_per_split_family_first_each_with_its_counts(tmp_path):
    """One block per copied recipe run, the family split's first, each headed by its train / test question
    counts and with its own checkout; only an unfinished run says it is still going; no run, no section."""
    import json

    page = _ei_runs_page()
    assert page.smollm2_recipe_section(tmp_path) == ""
    runs = (("smollm2_recipe_family", 696, [1, 0, 0]), ("smollm2_recipe", 700, [1, 0]))
    for name, questions, correct in runs:
        _rounds(tmp_path / name, [0.2, 0.3])
        (tmp_path / name / "sft").mkdir()
        (tmp_path / name / "sft" / "stage_complete.json").write_text(json.dumps({"questions": questions,
                                                                                 "wall_seconds": 99.0}))
        _eval_run(tmp_path / name, {"sft": correct})
    (tmp_path / "smollm2_recipe" / "ei" / "stage_complete.json").write_text("{}")
    (tmp_path / "smollm2_recipe" / "sft" / "stage_complete.json").write_text(json.dumps(
        {"questions": 700, "wall_seconds": 99.0, "epochs": 3, "num_processes": 1}))
    text = page.smollm2_recipe_section(tmp_path)
    family, former = text.split("### On the former id-based split")
    assert "### On SVAMP's family split: 696 train / 3 test questions" in family
    assert former.startswith(": 700 train / 2 test questions")
    assert "still going" in family and "still going" not in former
    assert "git checkout" not in family and "git checkout 6a93a44 && trl-reasoning train" in former
    assert "| SFT | 0.200 [0.100, 0.300] | 0.600 | 0 | 99 |" in family


def test_each_ei_run_names_its_machine_and_finding_d_warns_when_the_cpus_differ(tmp_path):
    """A run whose stage records hold the machine is said to have run there (each stage, where they
    differ); one from before they did, on the 2-core AMD EPYC those ran on. Finding (d) warns when its two
    runs ran on different CPUs, not when they only used other cores; the recipe's bf16 note quotes the PPO
    profile only when the profile ran on the run's CPU."""
    import json

    page = _ei_runs_page()
    xeon = {"cpu": "Intel Xeon", "matrix_extensions": ["avx2", "avx512f"], "cores": 2, "cores_used": 2}
    family, pretrained = "smollm2_recipe_family", page.PRETRAINED_RUNS["smollm2_recipe_family"]
    sft = {"questions": 3, "wall_seconds": 99.0, "epochs": 3, "num_processes": 1}
    for name, stage, record in ((family, "sft", {**sft, "machine": xeon}), (pretrained, "ei", sft)):
        _rounds(tmp_path / name, [0.2, 0.3])
        (tmp_path / name / stage).mkdir(exist_ok=True)
        (tmp_path / name / stage / "stage_complete.json").write_text(json.dumps(record))
    _eval_run(tmp_path / family, {"sft": [1, 0, 0], "ei": [1, 1, 0]})
    _eval_run(tmp_path / pretrained, {"initial": [0, 0, 0], "ei": [1, 0, 0]})
    one_core = {**xeon, "cores_used": 1}  # EI restarted on one core
    (tmp_path / family / "ei" / "stage_complete.json").write_text(json.dumps({"machine": one_core}))
    profile = {"bare_model": {}, "cpu": "AMD EPYC (avx2)",
               "matmul_gflops": {"float32": 100.0, "bfloat16": 2.0}}
    (tmp_path / "ppo_profile").mkdir()
    (tmp_path / "ppo_profile" / "p.json").write_text(json.dumps(profile))
    recipe = page.smollm2_recipe_section(tmp_path)
    assert ("Ran on: sft Intel Xeon (AVX-512, no AMX), 2 of 2 cores; ei Intel Xeon (AVX-512, no AMX), "
            "1 of 2 cores.") in recipe
    assert "bf16 matmuls" not in recipe  # the profile ran on the EPYC, not on this run's Xeon
    starts = page.starts_section(tmp_path)
    assert "Ran on the 2-core AMD EPYC (AVX2, no AVX-512), one core, other runs beside it (not recorded)." \
        in starts
    assert ("The two runs ran on different CPUs, the SFT start's on Intel Xeon (AVX-512, no AMX), the "
            "pretrained start's on AMD EPYC (AVX2, no AVX-512):") in starts
    profile["cpu"] = "Intel Xeon (avx2, avx512f)"
    (tmp_path / "ppo_profile" / "p.json").write_text(json.dumps(profile))
    assert "bf16 matmuls ran about 50x slower" in page.smollm2_recipe_section(tmp_path)
    (tmp_path / family / "ei" / "stage_complete.json").write_text(json.dumps({"machine": xeon}))
    assert "Ran on Intel Xeon (AVX-512, no AMX), 2 of 2 cores." in page.smollm2_recipe_section(tmp_path)
    pretrained_record = json.dumps({**sft, "machine": one_core})
    (tmp_path / pretrained / "ei" / "stage_complete.json").write_text(pretrained_record)
    assert "different CPUs" not in page.starts_section(tmp_path)  # the same CPU, fewer cores
    # a recipe run from before records held the machine: the profile from the EPYC is its own
    (tmp_path / family / "sft" / "stage_complete.json").write_text(json.dumps(sft))
    profile["cpu"] = "AMD EPYC (avx2)"
    (tmp_path / "ppo_profile" / "p.json").write_text(json.dumps(profile))
    assert "bf16 matmuls ran about 50x slower" in page.smollm2_recipe_section(tmp_path)


def test_reward_trend_section_shows_each_comparison_runs_logs_newest_split_first(tmp_path):
    """One block per comparison run with copied reward logs, the family split's before the former's, each
    row from its method's rewards file; no logs, no section."""
    import json

    pages = _real_model_pages()
    assert pages.reward_trend_section(tmp_path) == ""
    rising = [{"step": s, "reward": 0.1 + 0.01 * s} for s in range(1, 21, 2)]
    for run in ("smollm2_compare", "smollm2_compare_family"):
        folder = tmp_path / run / "seed_0" / "rewards"
        folder.mkdir(parents=True)
        method = "ppo_sparse" if run == "smollm2_compare" else "grpo"
        (folder / f"{method}.json").write_text(json.dumps(rising))
    text = pages.reward_trend_section(tmp_path)
    family, former = text.index("### On SVAMP's family split"), text.index("### On the former id-based split")
    assert family < text.index("| grpo | 0 | 10 | 0.110 | 0.290 | +1.000 [+1.000, +1.000] | 0.000 |") < former
    assert former < text.index("| ppo_sparse | 0 | 10 |")
    assert (tmp_path / "smollm2_compare_family" / "reward_trend.png").exists()


def test_the_sft_trials_section_has_one_block_per_split_family_split_first(tmp_path):
    """Each finished trial folder is a row under its split's block (the family split's first), whose command
    names the folder it reads, with the machine its SFT record names (the earlier EPYC where it names
    none); a folder without its SFT record (still running) gives no row."""
    import json

    pages = _real_model_pages()
    assert pages.smollm2_trials_section(tmp_path) == ""
    for folder, value in (("smollm2_val", 0.161), ("smollm2_val_family", 0.205)):
        trial = tmp_path / folder / "steps_e3_lr5e-4"
        trial.mkdir(parents=True)
        sft = {"metrics": {"maj@1": value, "pass@4": 0.3}, "confidence_intervals": {"maj@1": [0.1, 0.2]},
               "num_questions": 146}
        (trial / "results.json").write_text(json.dumps({"sft": sft}))
        (trial / "sft_stage_complete.json").write_text(json.dumps({"wall_seconds": 2000.4}))
        (tmp_path / folder / "steps_e3_lr2e-4").mkdir()  # still running: no files
    trial = tmp_path / "smollm2_val_family" / "steps_e3_lr1e-3"  # a trial whose record names its machine
    trial.mkdir()
    family_results = tmp_path / "smollm2_val_family" / "steps_e3_lr5e-4" / "results.json"
    (trial / "results.json").write_text(family_results.read_text())
    machine = {"cpu": "Intel(R) Xeon(R) Processor", "matrix_extensions": ["avx2", "avx512f"], "cores": 2,
               "cores_used": 1}
    (trial / "sft_stage_complete.json").write_text(json.dumps({"wall_seconds": 1233.7, "machine": machine}))
    text = pages.smollm2_trials_section(tmp_path)
    family, former = text.index("### On SVAMP's family split"), text.index("### On the former id-based split")
    assert family < text.index("runs/smollm2_val_family/FORMAT_eE_lrLR") < text.index(
        "| steps | 3 | 5e-4 | 0.205 [0.100, 0.200] | 0.300 | 146 | 2000 | the 2-core AMD EPYC") < former
    assert former < text.index("runs/smollm2_val/FORMAT_eE_lrLR") < text.index("| steps | 3 | 5e-4 | 0.161")
    assert "2e-4" not in text
    assert text.index("| steps | 3 | 1e-3 | 0.205 [0.100, 0.200] | 0.300 | 146 | 1234 | Intel(R) Xeon(R) "
                      "Processor (AVX-512, no AMX), 1 of 2 cores |") < former
    assert "number of rounds" not in text  # no validation EI run copied yet
    rounds = tmp_path / "smollm2_val_family" / pages.VALIDATION_EI
    _rounds(rounds, [0.2, 0.25])
    (rounds / "sft").mkdir()
    record = {"wall_seconds": 99.0, "machine": machine}
    (rounds / "sft" / "stage_complete.json").write_text(json.dumps(record))
    text = pages.smollm2_trials_section(tmp_path)
    block = text[text.index("### On SVAMP's family split"):text.index("### On the former id-based split")]
    assert "--output_dir runs/smollm2_val_family/ei_recipe" in block and "Intel(R) Xeon(R)" in block
    sft_row = "| SFT | 0.200 [0.100, 0.300] | 0.600 | 0 | 99 |"
    assert block.index("| steps | 3 | 1e-3 |") < block.index(sft_row)
    assert "| EI round 1 | 0.250 [0.150, 0.350] |  | 8 | 60 |" in block


def test_the_subset_section_scores_start_and_end_on_the_training_evaluations_questions(tmp_path):
    """A method whose training-time evaluations scored the first N held-out questions (its record's
    training_eval_questions) gets a row whose start and final are the SFT's and its own greedy answers on
    those questions only (the held-out order), not on all of them; a rounds method gets none, even under
    a recipe-wide training_eval.limit (its reports score every question)."""
    import json

    pages = _real_model_pages()
    assert pages.subset_curve_section(tmp_path) == ""
    folder = tmp_path / "smollm2_compare_family" / "seed_0" / "methods"
    folder.mkdir(parents=True)
    sft = {"q0": 0.0, "q1": 0.0, "q2": 1.0}  # 0.000 on the first two, 0.333 on all three
    (folder / "sft.json").write_text(json.dumps({"per_question": {"sft": {"maj@1": sft}}}))
    for name, subset in (("ppo_sparse", {"ppo_sparse": 2}), ("ei", {})):
        record = {"settings": {"method": {"training_eval": {"limit": 2}}}, "training_eval_questions": subset,
                  "training_points": {name: [[8, {"maj@1": 0.5}, 10.0]]}, "samples": {name: 16},
                  "per_question": {name: {"maj@1": {"q0": 1.0, "q1": 1.0, "q2": 0.0}}}}  # 1.0 vs 0.667
        (folder / f"{name}.json").write_text(json.dumps(record))
    text = pages.subset_curve_section(tmp_path)
    assert "| SVAMP's family split | ppo_sparse | 0 | 2 | 0.000 | 8: 0.500 | 1.000 | 16 |" in text
    assert "| ei |" not in text


def test_ppo_trials_section_reads_each_trials_log_and_the_rise_its_interval_needs(tmp_path):
    """A PPO trial's row comes from its copied trainer_state.json, stage record and trial.json (what it
    changed, its command and commit): the slope of its logged rewards (a straight line: +1.0 per 100
    steps, an interval of width 0, so no rise is needed), the last KL (not the largest) and the explained
    variance's mean, first and last; a noisy trial needs the rise its interval's half-width spans over its
    logged steps (2 to 40). Rows go by folder name; a trial whose stage has not finished is left out."""
    import json

    from trl_reasoning.metrics import reward_trend

    pages = _ppo_trials_page()
    assert pages.ppo_trials_section(tmp_path) == ""
    line = [{"step": s, "reward": 0.1 + 0.01 * s, "ppo/kl": 0.5 if s == 9 else s / 100,
             "ppo/explained_variance": -0.5 if s < 6 else 0.5} for s in range(1, 21, 2)]
    noisy = [{"step": s, "reward": [0.2, 0.4, 0.1, 0.3][(s // 2) % 4], "ppo/kl": 0.07,
              "ppo/explained_variance": 0.25} for s in range(2, 42, 2)]
    for name, history in (("b_lr", line), ("a_head", noisy), ("c_running", line)):
        folder = tmp_path / pages.PPO_TRIALS / name
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
        (folder / "trial.json").write_text(json.dumps({"change": f"change {name}", "commit": "abc1234",
                                                       "command": f"trl-reasoning train {name}.yaml"}))
        if name != "c_running":  # still running: no stage record yet
            machine = {"machine": {"cpu": "Xeon", "matrix_extensions": ["avx512f"], "cores": 2,
                                   "cores_used": 1}}
            (folder / "stage_complete.json").write_text(json.dumps({"steps": history[-1]["step"] + 1,
                                                                    "wall_seconds": 2700.4,
                                                                    **(machine if name == "b_lr" else {})}))
    text = pages.ppo_trials_section(tmp_path)
    # the machine from the stage record; a trial from before records held it ran on the EPYC
    row = ("| b_lr | change b_lr | Xeon (AVX-512, no AMX), 1 of 2 cores | 20 | 2700 | 10 | 0.110 | 0.290 | "
           "+1.000 [+1.000, +1.000] | 0.000 | "
           "0.190 | +0.200, -0.500, +0.500 |")
    assert row in text
    low, high = reward_trend(noisy)["ci95"]
    assert high - low > 0.1  # the noisy trial's interval has a width, which the rise scales by 38 steps
    epyc = pages.EARLIER_WHERE
    assert f"| a_head | change a_head | {epyc} | 41 | 2700 | 20 | 0.400 | " in text
    rise = (high - low) / 2 * 0.38
    assert f"[{low:+.3f}, {high:+.3f}] | {rise:.3f} | 0.070 | +0.250, +0.250, +0.250 |" in text
    assert text.index("| a_head |") < text.index("| b_lr |") and "c_running" not in text
    assert "- b_lr, change b_lr (at abc1234):\n\n  ```bash\n  trl-reasoning train b_lr.yaml\n" in text
    assert (tmp_path / pages.PPO_TRIALS / "reward_trend.png").exists()
    assert "Against the start" not in text  # no trial logged its completions


def test_a_trial_copied_with_its_completion_logs_is_scored_against_the_start(tmp_path):
    """copy_trial reads the trial's completion logs (TRL's parquet files; a step that reused its batch
    logs it again and counts once) and the start's pass rates on the questions drawn; the section's
    second table subtracts them per completion: 3 rollouts of 2 questions each, 0.375 above, 0.125 below
    and 0.5 above the start's rates on their questions, a mean of +0.250 (by hand)."""
    import json

    import pandas as pd

    pages = _ppo_trials_page()
    stage = tmp_path / "run" / "ppo"
    (stage / "completions").mkdir(parents=True)
    batches = {1: (["a", "a", "b", "b"], [1.0, 0.0, 1.0, 1.0]),
               3: (["b", "b", "c", "c"], [1.0, 0.0, 0.0, 0.0]),
               5: (["a", "a", "c", "c"], [1.0, 1.0, 0.0, 1.0])}
    for step, (ids, rewards) in batches.items():
        for logged in (step, step + 1):  # the next step logs the same rollout again
            pd.DataFrame({"step": [logged] * 4, "prompt": [f"Q {i}" for i in ids], "completion": list("wxyz"),
                          "correctness_svamp": rewards, "advantage": [0.0] * 4, "id": ids}).to_parquet(
                stage / "completions" / f"completions_{logged:05d}.parquet")
    history = [{"step": s, "reward": sum(batches[s][1]) / 4} for s in batches]
    (stage / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    (stage / "stage_complete.json").write_text(json.dumps({"steps": 6, "wall_seconds": 2700.0}))
    samples = tmp_path / "samples.jsonl"  # start: a 1/4, b 2/4, c 1/4 (and d, never drawn)
    start = {"a": [1, 0, 0, 0], "b": [1, 1, 0, 0], "c": [0, 1, 0, 0], "d": [1, 1, 1, 1]}
    samples.write_text("".join(json.dumps({"id": q, "correct": c}) + "\n" for q, cs in start.items()
                               for c in cs))
    trial = {"change": "pool", "command": "trl-reasoning train x.yaml", "commit": "abc1234"}
    pages.copy_trial(tmp_path / "run", tmp_path / pages.PPO_TRIALS / "pool", trial, [samples])
    copied = json.loads((tmp_path / pages.PPO_TRIALS / "pool" / "start_pass_rates.json").read_text())
    assert copied["rates"] == {"a": 0.25, "b": 0.5, "c": 0.25} and copied["source"] == str(samples)
    assert copied["samples"] == {"a": 4, "b": 4, "c": 4}
    text = pages.ppo_trials_section(tmp_path)
    # rollout means minus start: (0.75 - 0.375), (0.25 - 0.375), (0.75 - 0.25) = +0.375, -0.125, +0.5
    assert "| pool | 3 | 3 | 2.0 | 0.333 | +0.250 " in text
    # last draw - first draw: a 1/2 -> 2/2 (+0.5), b 2/2 -> 1/2 (-0.5), c 0/2 -> 1/2 (+0.5)
    row = next(line for line in text.splitlines() if line.startswith("| pool | 3 |"))
    assert row.endswith(f" | +0.167 [-0.500, +0.500] | {pages.CONTROL} not copied or not finished |"), row
    assert (tmp_path / pages.PPO_TRIALS / "reward_vs_start.png").exists()
    # a control on the same questions, each losing half: a 2/2 -> 1/2, b 2/2 -> 1/2, c 2/2 -> 1/2; paired
    # against it the trial gains a +1, b 0, c +1: +0.667; the control's own row has no such cell
    import shutil

    control = tmp_path / pages.PPO_TRIALS / pages.CONTROL
    shutil.copytree(tmp_path / pages.PPO_TRIALS / "pool", control)
    rewards = {1: [1.0, 1.0, 1.0, 1.0], 3: [1.0, 0.0, 1.0, 1.0], 5: [1.0, 0.0, 1.0, 0.0]}
    logged = json.loads((control / "rollouts.json").read_text())
    (control / "rollouts.json").write_text(json.dumps([{**r, "rewards": rewards[r["step"]]} for r in logged]))
    lines = pages.ppo_trials_section(tmp_path).splitlines()
    row = next(line for line in lines if line.startswith("| pool | 3 |"))
    assert row.endswith(f" | +0.667 [+0.000, +1.000], 3 rollouts, against {pages.CONTROL} |"), row
    assert next(line for line in lines if line.startswith(f"| {pages.CONTROL} | 3 |")).endswith(" | |")
    # a trial naming its own control (another start or machine) is paired with it, not with CONTROL:
    # against a copy of itself every question's gain is 0
    shutil.copytree(tmp_path / pages.PPO_TRIALS / "pool", tmp_path / pages.PPO_TRIALS / "own_control")
    own = json.dumps({**trial, "control": "own_control"})
    (tmp_path / pages.PPO_TRIALS / "pool" / "trial.json").write_text(own)
    lines = pages.ppo_trials_section(tmp_path).splitlines()
    row = next(line for line in lines if line.startswith("| pool | 3 |"))
    assert row.endswith(" | +0.000 [+0.000, +0.000], 3 rollouts, against own_control |"), row
    # not against a control that ran on another CPU (its figures differ), nor one that has not finished
    machine = {"cpu": "Xeon", "matrix_extensions": ["avx512f"], "cores": 2, "cores_used": 1}
    record = tmp_path / pages.PPO_TRIALS / "own_control" / "stage_complete.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "machine": machine}))
    row = next(line for line in pages.ppo_trials_section(tmp_path).splitlines()
               if line.startswith("| pool | 3 |"))
    assert row.endswith(" | own_control ran on another CPU |"), row
    record.unlink()
    row = next(line for line in pages.ppo_trials_section(tmp_path).splitlines()
               if line.startswith("| pool | 3 |"))
    assert row.endswith(" | own_control not copied or not finished |"), row


def test_a_comparisons_rollouts_are_scored_against_the_start_by_their_logged_means(tmp_path):
    """benchmarks/rollouts_against_start.py's files: each logged mean minus the start's mean rate on the
    questions drawn (one entry per completion): 0.5 - 0.25, 0.25 - 0.5, 1.0 - 0.5 -> mean +0.167 (by hand);
    three points, so the slopes (least squares, per 100 steps) have no interval."""
    import json

    pages = _ppo_trials_page()
    seed = tmp_path / "seed_0"
    (seed / "rollouts").mkdir(parents=True)
    (seed / "start_pass_rates.json").write_text(json.dumps({"source": "ei/r1.jsonl", "rates": {
        "a": 0.0, "b": 0.5, "c": 1.0}, "samples": {"a": 4, "b": 4, "c": 4}}))
    rows = [{"step": 1, "questions": ["a", "b"], "reward": 0.5},
            {"step": 2, "questions": ["b", "b"], "reward": 0.25},
            {"step": 3, "questions": ["a", "c"], "reward": 1.0}]
    (seed / "rollouts" / "grpo.json").write_text(json.dumps(rows))
    assert pages.against_start_table([]) == ""
    text = pages.against_start_table([seed / "rollouts" / "grpo.json"])
    assert "| grpo | 0 | 3 | +0.167 [" in text and "ei/r1.jsonl" in text
    assert "| +12.500 | +25.000 |" in text  # adjusted +0.125 a step, raw +0.25 a step


def test_the_reward_models_section_copies_each_seeds_scores_and_says_when_reranking_is_chance(tmp_path,
                                                                                             monkeypatch):
    """copy_run carries each seed's orm/prm metrics.json; the section lists them per seed, and calls the
    reranker no better than chance only when rerank@k is at most pass@1."""
    import json

    builder = _results_builder()
    monkeypatch.setattr(builder, "RESULTS", tmp_path / "docs")
    run = tmp_path / "run"
    for seed, auroc in ((0, 0.578), (1, 0.549)):
        for kind in ("orm", "prm"):
            (run / f"seed_{seed}" / kind).mkdir(parents=True)
            heldout = {"final_auroc": auroc + (kind == "prm") * 0.1, "final_accuracy": 0.5,
                       "step_accuracy": 0.6}
            (run / f"seed_{seed}" / kind / "metrics.json").write_text(json.dumps({"heldout": heldout}))
    builder.copy_run("compare_tuning", run)
    metrics = {"pass@1": {"mean": 0.478}, "maj@4": {"mean": 0.532}, "rerank@4": {"mean": 0.466}}
    results = {"seeds": [0, 1], "k": 4, "baseline": "sft", "methods": {"sft": {"metrics": metrics}}}
    text = builder.reward_models_section("compare_tuning", results)
    assert "| 0 | 0.578 | 0.500 | 0.678 | 0.600 |" in text and "| 1 | 0.549 | 0.500 | 0.649 | 0.600 |" in text
    assert "no better than chance" in text
    metrics["rerank@4"]["mean"] = 0.6
    assert "no better than chance" not in builder.reward_models_section("compare_tuning", results)
    assert builder.reward_models_section("compare_quickstart", results) == ""  # no copied scores


def test_fact_tables_keep_the_rows_of_methods_whose_samples_stayed_on_another_machine(tmp_path):
    """A run resumed elsewhere from its copied records has only the samples it made there: the rows of
    the other methods stay as an earlier copy computed them, new samples replace their method's row, and
    a seed whose records are gone loses its table."""
    import json

    builder = _results_builder()
    run, target = tmp_path / "run", tmp_path / "copied"
    for method in ("sft", "ei"):
        (run / "seed_0" / "eval" / method).mkdir(parents=True)
        row = {"kind": "greedy", "correct": method == "ei", "completion": "2 + 3 = 6\nThe answer is 6"}
        (run / "seed_0" / "eval" / method / "samples.jsonl").write_text(json.dumps(row) + "\n")
    (target / "seed_0").mkdir(parents=True)
    earlier = [{"method": "sft", "maj@1": 0.9}, {"method": "ppo_sparse", "maj@1": 0.5}]
    (target / builder.FACTS.format(seed=0)).write_text(json.dumps(earlier))
    (target / builder.FACTS.format(seed=7)).write_text("[]")  # no seed_7 records in the copy
    builder.write_fact_tables(str(ROOT / "recipes" / "compare_quickstart.yaml"), run, target)
    rows = {r["method"]: r for r in json.loads((target / builder.FACTS.format(seed=0)).read_text())}
    assert list(rows) == ["sft", "ei", "ppo_sparse"]
    assert rows["sft"]["maj@1"] == 0.0 and rows["ei"]["maj@1"] == 1.0 and rows["ppo_sparse"] == earlier[1]
    assert rows["sft"]["equations_in"] + rows["sft"]["equations_out"] == 1  # 2 + 3 = 6, counted once
    assert not (target / builder.FACTS.format(seed=7)).exists()


def test_the_reranker_section_tables_each_seed_and_says_what_the_orm_ranks(tmp_path):
    """Built from benchmarks/reranker_within_question.py's JSON; absent without it; the verdict follows
    the numbers (pooled above 0.55 with within-question at most 0.55: questions, not answers)."""
    import json

    pages = _benchmark_pages()
    assert pages.reranker_section(tmp_path / "r.json") == ""
    row = {"seed": 0, "questions": 1000, "mixed_questions": 652, "pooled_auroc": 0.617,
           "within_question_auroc": 0.484, "best_scored_right_on_mixed": 0.41,
           "random_pick_right_on_mixed": 0.484}
    (tmp_path / "r.json").write_text(json.dumps({"rows": [row], "machine": {"cpu": "AMD EPYC"}}))
    text = pages.reranker_section(tmp_path / "r.json")
    assert "| 0 | 652 of 1000 | 0.617 | 0.484 | 0.410 | 0.484 |" in text and "--seeds 0" in text
    assert "not a question's answers" in text
    row["within_question_auroc"] = 0.6
    (tmp_path / "r.json").write_text(json.dumps({"rows": [row], "machine": {"cpu": "AMD EPYC"}}))
    assert "not a question's answers" not in pages.reranker_section(tmp_path / "r.json")


def test_the_sft_stability_section_tables_the_benchmarks_rows(tmp_path):
    """Built from benchmarks/sft_stability.py's JSON rows; absent without them."""
    import json

    pages = _benchmark_pages()
    assert pages.sft_stability_section(tmp_path / "rows.json") == ""
    rows = [{"learning_rate": 0.003, "threads": 1, "maj@1": 0.611, "ci95": [0.58, 0.64]},
            {"learning_rate": 0.003, "threads": 2, "maj@1": 0.455, "ci95": [0.424, 0.486],
             "max_weight_difference_vs_1_thread": 0.0123}]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    text = pages.sft_stability_section(tmp_path / "rows.json")
    assert "| 0.003 | 1 | 0.611 [0.580, 0.640] |  |" in text
    assert "| 0.003 | 2 | 0.455 [0.424, 0.486] | 1.23e-02 |" in text


def test_the_seed_spread_section_tables_each_seed_and_reproduces_the_command(tmp_path):
    """Built from benchmarks/sft_seed_spread.py's JSON line (seeds as JSON keys: strings); absent without."""
    import json

    pages = _benchmark_pages()
    assert pages.sft_seed_spread_section(tmp_path / "spread.json") == ""
    row = {"overrides": "--sft.learning_rate 1e-3", "maj@1": {"100": 0.982, "101": 0.95}, "mean": 0.966,
           "std": 0.0226}
    data = {"seeds": [100, 101], "recipe": "recipes/compare_quickstart.yaml", "rows": {"lr1e-3": row},
            "machine": {"cpu": "AMD EPYC", "matrix_extensions": ["avx2"]}}
    (tmp_path / "spread.json").write_text(json.dumps(data))
    text = pages.sft_seed_spread_section(tmp_path / "spread.json")
    assert "| lr1e-3 | `--sft.learning_rate 1e-3` | 0.982 | 0.950 | 0.966 | 0.023 |" in text
    assert "--seeds 100 101 \\\n    --setting 'lr1e-3=--sft.learning_rate 1e-3'" in text
    assert "AMD EPYC (avx2)" in text


def test_the_reward_model_sweep_section_tables_each_setting_with_its_command(tmp_path):
    """Built from benchmarks/reward_model_sweep.py's <stage>_sweep.json rows; absent without them."""
    import json

    pages = _benchmark_pages()
    assert pages.reward_model_sweep_section(tmp_path, "abc1234") == ""
    rows = [{"setting": "as_recipe", "overrides": "", "final_auroc": 0.6481, "final_accuracy": 0.565,
             "positive_share": 0.594},
            {"setting": "value_head", "overrides": "--orm.head value", "final_auroc": 0.701,
             "final_accuracy": 0.667, "positive_share": 0.578}]
    (tmp_path / "orm_sweep.json").write_text(json.dumps(rows))
    text = pages.reward_model_sweep_section(tmp_path, "abc1234")
    assert "| value_head | `--orm.head value` | 0.701 | 0.667 | 0.578 |  |" in text
    assert "--setting as_recipe= \\\n    --setting 'value_head=--orm.head value'" in text
    assert "prm setting" not in text  # no prm file
    assert "git checkout abc1234 && python benchmarks/reward_model_sweep.py" in text


# ------------------------------------------------------------------ (b) links


def _relative_links(path: Path) -> list[str]:
    text = _without_code(path.read_text())
    targets = _LINK_RE.findall(text) + _REF_LINK_RE.findall(text)
    return [t for t in targets if not re.match(r"^(?:[a-z][a-z0-9+.-]*:|#|/)", t, re.I)]


@pytest.mark.parametrize("path", TEXTS, ids=_rel)
def test_relative_links_resolve_to_files(path):
    broken = []
    for target in _relative_links(path):
        file = (path.parent / target.split("#", 1)[0]).resolve()
        if not file.is_file():
            broken.append(target)
    assert not broken, f"{_rel(path)}: links to missing files: {broken}"


def _nav_files(nav) -> list[str]:
    files = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        files += _nav_files(value) if isinstance(value, list) else [value]
    return files


def test_every_docs_page_is_in_the_nav_and_linked_from_the_readme():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_files(config["nav"])
    missing = [f for f in nav if not (DOCS / f).is_file()]
    assert not missing, f"mkdocs.yml nav names missing pages: {missing}"
    pages = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert pages == set(nav), f"pages not in the nav: {sorted(pages - set(nav))}"
    linked = {(README.parent / t.split("#")[0]).resolve() for t in _relative_links(README)}
    unlinked = [f for f in nav if (DOCS / f).resolve() not in linked]
    assert not unlinked, f"README.md has no link to these docs pages: {unlinked}"


# ------------------------------------------------------------------ (c) recipe reference vs --help


def _help_names(text: str, header: str) -> set[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    names = set()
    for line in lines[start + 1:]:
        if not line.strip():
            break
        names.add(line.split()[0])
    return names


def test_recipe_reference_lists_every_key_of_train_help():
    from trl_reasoning.cli_help import train_help

    text = train_help()
    keys = _load_hooks().reference_keys()
    top_level = _help_names(text, "recipe keys:")
    stages = _help_names(text, "stage sections")
    assert top_level and stages
    assert top_level <= keys["top_level"], f"not in the reference: {sorted(top_level - keys['top_level'])}"
    assert stages <= set(keys) - {"top_level"}, f"stages not in the reference: {sorted(stages - set(keys))}"


def test_recipe_reference_lists_every_field_of_every_stage_section():
    import dataclasses

    from trl_reasoning.stages import get_stage, stage_names

    keys = _load_hooks().reference_keys()
    for name in stage_names():
        fields = {f.name for f in dataclasses.fields(get_stage(name).config())}
        assert fields == keys[name], f"{name}: missing {sorted(fields - keys[name])}"
    markdown = _load_hooks().recipe_reference_markdown()
    assert all(f"`{key}`" in markdown for key in keys["top_level"])
    assert "<!-- recipe-reference -->" in (DOCS / "reference" / "recipe.md").read_text()


# ------------------------------------------------------------------ (d) commands, recipes, make targets


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    targets = set()
    for line in text.splitlines():
        if line.startswith(".PHONY:"):
            targets |= set(line.split(":", 1)[1].split())
        elif (m := re.match(r"^([A-Za-z][\w.-]*(?:\s+[A-Za-z][\w.-]*)*)\s*:(?!=)", line)):
            targets |= set(m.group(1).split())
    return targets


@pytest.mark.parametrize("path", TEXTS, ids=_rel)
def test_quoted_commands_recipes_and_make_targets_exist(path):
    from trl_reasoning.cli import COMMANDS

    text = path.read_text()
    code = _code(text)
    commands = set(re.findall(r"(?<![\w/.-])trl-reasoning[ \t]+([a-z][\w-]*)", code))
    commands |= set(re.findall(r"python -m trl_reasoning[ \t]+([a-z][\w-]*)", code))
    assert commands <= set(COMMANDS), f"{_rel(path)}: unknown commands {sorted(commands - set(COMMANDS))}"
    recipes = set(re.findall(r"(?<![\w/])recipes/[\w.-]+\.yaml", text))
    missing = sorted(r for r in recipes if not (ROOT / r).is_file())
    assert not missing, f"{_rel(path)}: recipes that do not exist: {missing}"
    targets = set(re.findall(r"(?<![\w-])make[ \t]+([a-z][\w-]*)", code)) - _makefile_targets()
    assert not targets, f"{_rel(path)}: not Makefile targets: {sorted(targets)}"


def test_readme_lists_every_recipe():
    listed = set(re.findall(r"^\| `(recipes/[\w.-]+\.yaml)`", README.read_text(), re.M))
    shipped = {f"recipes/{p.name}" for p in (ROOT / "recipes").glob("*.yaml")}
    assert shipped <= listed, f"README.md's recipe table lacks {sorted(shipped - listed)}"


@pytest.mark.parametrize("path", [p for p in TEXTS if _python_blocks(p.read_text())], ids=_rel)
def test_python_examples_import_names_that_exist(path):
    for block in _python_blocks(path.read_text()):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trl_reasoning"):
                module = importlib.import_module(node.module)
                absent = [a.name for a in node.names if not hasattr(module, a.name)]
                assert not absent, f"{_rel(path)}: {node.module} has no {absent}"


# ------------------------------------------------------------------ (e) the site builds


def _required_or_skip(reason: str) -> None:
    """Skip on a developer machine without the tool; fail in CI, which installs it (.ci/run, make setup)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    if importlib.util.find_spec("mkdocs") is None:
        _required_or_skip("mkdocs is not installed: pip install -e '.[docs]' to build the docs site")
    site = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{output}"
    return site


def test_mkdocs_build_strict(built_site):
    for page in ("reference/recipe/index.html", "architecture/index.html", "api/verifiers/index.html"):
        assert (built_site / page).is_file()
    reference = (built_site / "reference" / "recipe" / "index.html").read_text()
    assert "<!-- recipe-reference -->" not in reference and "num_rounds" in reference


def _chromium(*args: str) -> subprocess.CompletedProcess:
    import shutil

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        _required_or_skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1800"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("page", ["index.html", "results/comparison/index.html"])
def test_rendered_pages_show_their_tables_and_figures(built_site, tmp_path, page):
    """Headless Chromium renders the built home and results pages: a screenshot with content, and, on
    the results page, a results table and every figure it shows present in the site."""
    from PIL import Image

    url = (built_site / page).as_uri()
    shot = tmp_path / "page.png"
    _chromium(f"--screenshot={shot}", url)
    with Image.open(shot) as image:
        low, high = image.convert("L").getextrema()
        assert image.size[0] >= 1000 and low != high, "a blank screenshot"
    dom = _chromium("--dump-dom", url).stdout
    assert "<h1" in dom
    if page.startswith("results/"):
        assert "<table" in dom and "maj@1 gain over sft" in dom, "the results page has no results table"
        figures = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom)
        assert figures, "the results page shows no figure"
        for src in figures:
            assert (built_site / page).parent.joinpath(src).resolve().is_file(), src
