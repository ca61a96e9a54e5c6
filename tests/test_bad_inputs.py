"""A sweep of bad inputs: each ends in one clear line (a non-zero exit), and a fixed rerun resumes."""

from __future__ import annotations

import errno
import json
import os
import re

import pytest

from trl_reasoning.cli import main


def _error_line(argv) -> str:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    message = str(caught.value.code)
    assert message.startswith("trl-reasoning: error: ") and "\n" not in message, message
    return message


def _eval(data, tmp_path, model):
    return ["eval", "--model", str(model), "--task", "gsm8k", "--data", str(data), "--num-generations", "1",
            "--temperature", "0", "--max_new_tokens", "4", "--output", str(tmp_path / "out")]


GOOD = {"question": "Ann has 3 cups and gets 4 more. How many?", "answer": "3 + 4 = 7\n#### 7"}


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([GOOD, {"question": "q?"}], "record 1 of .* lacks field\\(s\\) \\['answer'\\]"),
        ([GOOD, {"question": "q?", "answer": ""}], "record 1 of .* lacks field\\(s\\) \\['answer'\\]"),
        ([{**GOOD, "question": "x" * 10_000_000}], "10,000,000-character 'question'"),
        ([{**GOOD, "id": "a"}, {**GOOD, "id": "a"}], "records 0 and 1 of .* share the id 'a'"),
    ],
    ids=["missing answer", "empty answer", "10 MB question", "duplicate ids"],
)
def test_bad_data_files_are_one_line(tiny_model_dir, tmp_path, records, message):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert re.search(message, _error_line(_eval(data, tmp_path, tiny_model_dir)))


def test_non_utf8_data_file_is_one_line(tiny_model_dir, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"question": "\xff\xfe", "answer": "1"}\n')
    assert "is not UTF-8 text" in _error_line(_eval(data, tmp_path, tiny_model_dir))


def _recipe(tmp_path, **keys) -> str:
    values = {
        "model": "tiny",
        "task": "arithmetic",
        "output_dir": str(tmp_path / "run"),
        "stages": "[sft, ei]",
        "num_train_examples": 24,
        "num_eval_examples": 4,
        "tiny": "{hidden_size: 32, num_layers: 1, num_heads: 2}",
        "sft": "{num_train_epochs: 1, per_device_train_batch_size: 8, gradient_checkpointing: false, "
        "max_length: 128}",
        "ei": "{num_rounds: 1, num_generations: 2, max_new_tokens: 12, generation_batch_size: 32, "
        "num_train_epochs: 1, per_device_train_batch_size: 8, gradient_checkpointing: false, "
        "max_length: 128, eval_num_generations: 2, stop_when_no_new_solutions: false, "
        "include_reference_solutions: true}",
        **keys,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    return str(path)


def test_model_folder_without_weights_is_one_line(tmp_path):
    folder = tmp_path / "half_saved"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert "has a config.json but no weights" in _error_line(["train", _recipe(tmp_path, model=str(folder))])


def test_output_folder_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    line = _error_line(["train", _recipe(tmp_path, output_dir=str(blocker))])
    assert "output_dir: cannot use" in line and "choose a writable folder" in line


def test_disk_full_is_one_line_and_the_rerun_loses_nothing(tmp_path, monkeypatch):
    """ENOSPC while round 1's kept solutions are written: one line, no half-written file; the rerun
    resumes in round 1 from its samples (not sampled again) and finishes."""
    from trl_reasoning import reporting

    recipe = _recipe(tmp_path)
    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("round_001/kept.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(reporting.os, "replace", full_disk)
    line = _error_line(["train", recipe])
    assert "No space left on device" in line and "rerun the same command" in line
    round_dir = tmp_path / "run" / "ei" / "round_001"
    assert not (round_dir / "kept.jsonl").exists() and not list(round_dir.glob(".*.tmp"))
    sampled = (round_dir / "samples.jsonl").stat().st_mtime_ns
    monkeypatch.setattr(reporting.os, "replace", real_replace)
    main(["train", recipe])
    assert (round_dir / "samples.jsonl").stat().st_mtime_ns == sampled  # not sampled twice
    assert len((round_dir / "samples.jsonl").read_text().splitlines()) == 24 * 2
    assert (tmp_path / "run" / "ei" / "final_model" / "config.json").exists()
    mask = os.umask(0)
    os.umask(mask)
    assert (round_dir / "kept.jsonl").stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


def test_a_tracker_that_is_not_installed_is_one_line(tmp_path, monkeypatch):
    """report_to naming a tracker whose package is missing fails before any work, naming the extra."""
    import importlib.util

    from trl_reasoning.recipes import RecipeError, load_recipe

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    path = tmp_path / "r.yaml"
    path.write_text("model: tiny\ntask: arithmetic\nstages: [sft]\nreport_to: [wandb]\n")
    with pytest.raises(RecipeError, match=r"'report_to' names 'wandb', which is not installed: pip install "
                                          r"'trl-reasoning\[wandb\]'"):
        load_recipe(path)
    path.write_text("model: tiny\ntask: arithmetic\nstages: [sft]\nsft: {report_to: wandb}\n")
    with pytest.raises(RecipeError, match=r"'sft.report_to' names 'wandb'"):
        load_recipe(path)
