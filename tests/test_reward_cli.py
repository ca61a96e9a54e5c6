"""`trl-reasoning sample` and `trl-reasoning eval --reward_model` on tiny models (offline)."""

from __future__ import annotations

import json

import pytest

from trl_reasoning.cli import main


@pytest.fixture(scope="module")
def arithmetic_file(tmp_path_factory):
    from trl_reasoning.tasks import load_task

    path = tmp_path_factory.mktemp("data") / "questions.jsonl"
    rows = load_task("arithmetic", split="test", num_examples=6, seed=0).to_list()
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sample_writes_labelled_rows(tiny_model_dir, arithmetic_file, tmp_path, capsys):
    main(
        [
            "sample",
            "--model",
            str(tiny_model_dir),
            "--task",
            "arithmetic",
            "--data",
            str(arithmetic_file),
            "--num_generations",
            "2",
            "--max_new_tokens",
            "12",
            "--mc_rollouts",
            "2",
            "--output",
            str(tmp_path),
        ]
    )
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {"prompt", "completion", "label", "answer", "step_labels"} <= set(rows[0])
    assert all(isinstance(r["label"], bool) for r in rows)
    assert "12 samples of 6 questions" in capsys.readouterr().out


def test_eval_reranks_with_a_reward_model(tiny_model_dir, arithmetic_file, tmp_path):
    from trl_reasoning.reward_models import OutcomeRewardModel

    OutcomeRewardModel.from_causal_lm(str(tiny_model_dir)).save_pretrained(tmp_path / "orm")
    main(["eval", "--model", str(tiny_model_dir), "--task", "arithmetic", "--data", str(arithmetic_file),
          "--num_generations", "4", "--max_new_tokens", "12", "--reward_model", str(tmp_path / "orm"),
          "--output", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {"rerank@1", "rerank@4"} <= set(report["metrics"]) and "auroc" in report["reward_model"]
    assert all(
        "score" in r
        for r in map(json.loads, (tmp_path / "eval" / "samples.jsonl").read_text().splitlines())
        if r["kind"] == "sample"
    )


def test_eval_with_a_plain_model_as_reward_model_fails_in_one_line(tiny_model_dir, arithmetic_file, tmp_path):
    with pytest.raises(SystemExit, match="not a trl-reasoning reward model"):
        main(["eval", "--model", str(tiny_model_dir), "--task", "arithmetic", "--data", str(arithmetic_file),
              "--num_generations", "2", "--max_new_tokens", "4", "--reward_model", str(tiny_model_dir),
              "--output", str(tmp_path)])
