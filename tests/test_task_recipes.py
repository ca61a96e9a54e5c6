"""A recipe's data keys: validation splits carved from the train split (generated and file tasks),
``eval_split``, ``solution_format: steps`` and tiny models built for a file task."""

import pytest

from trl_reasoning.tasks import DataError
from trl_reasoning.verifiers import is_correct


def _recipe(tmp_path, text):
    from trl_reasoning.recipes import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(f"output_dir: {tmp_path / 'run'}\nstages: [eval]\n" + text)
    return load_recipe(path)


def test_validation_split_of_a_generated_task_is_new_problems_and_leaves_train_as_it_was(tmp_path):
    """``eval_split: validation`` on arithmetic: the train rows are exactly a test run's, the validation
    questions are more train-split problems, none sharing a solution with them or with the test split."""
    from trl_reasoning.pipeline import load_datasets

    base = "model: tiny\ntask: arithmetic\nnum_train_examples: 300\nnum_eval_examples: 120\n"
    train, _, test = load_datasets(_recipe(tmp_path, base))
    v_train, _, validation = load_datasets(_recipe(tmp_path, base + "eval_split: validation\n"))
    assert v_train["id"] == train["id"] and len(validation) == 120
    assert not set(validation["solution"]) & set(train["solution"])
    assert not set(validation["solution"]) & set(test["solution"])
    assert not set(validation["question"]) & set(test["question"])


def test_validation_split_of_a_file_keeps_each_family_on_one_side(tmp_path, svamp_file, gsm8k_test):
    """A file's train rows are cut by family: SVAMP's variations of one problem (``families``) all on one
    side, no solution (up to spacing and case) on both sides for a task without families, about a
    fifth held back, and the cut is the same on every load."""
    from trl_reasoning.pipeline import load_datasets
    from trl_reasoning.tasks.svamp import FAMILY_OVERLAP, _content_words

    recipe = _recipe(tmp_path, f"model: tiny\ntask: svamp\ntrain_data: {svamp_file}\n"
                               "eval_split: validation\n")
    train, _, validation = load_datasets(recipe)
    words = [_content_words(q) for q in train["question"]]
    for question in validation["question"]:
        mine = _content_words(question)
        assert all(len(mine & w) / len(mine | w) < FAMILY_OVERLAP for w in words)
    assert 0.18 < len(validation) / (len(train) + len(validation)) < 0.25
    assert load_datasets(recipe)[2]["id"] == validation["id"]
    assert len(train) + len(validation) == 696  # SVAMP's train split, all of it on one side or the other
    recipe = _recipe(tmp_path, f"model: tiny\ntask: gsm8k\ntrain_data: {gsm8k_test}\n"
                               "eval_split: validation\n")
    train, _, validation = load_datasets(recipe)
    norm = lambda rows: {" ".join(s.split()).lower() for s in rows["solution"]}  # noqa: E731
    assert not norm(train) & norm(validation)
    assert 0.18 < len(validation) / (len(train) + len(validation)) < 0.22


def test_a_tiny_model_for_a_file_task_trains_its_tokenizer_on_the_file_offline(tmp_path, svamp_file,
                                                                               monkeypatch):
    """``model: tiny`` with ``task: svamp`` and a local ``train_data`` builds without the Hub (it asked
    the Hub for the SVAMP dataset, and failed offline)."""
    from types import SimpleNamespace

    from trl_reasoning.pipeline import initial_model

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = _recipe(tmp_path, f"model: tiny\ntask: svamp\ntrain_data: {svamp_file}\n"
                               "tiny: {hidden_size: 32, num_layers: 1, num_heads: 2}\n")
    folder = initial_model(recipe, SimpleNamespace(is_main_process=True, wait_for_everyone=lambda: None))
    assert (tmp_path / "run" / "tiny_init" / "config.json").is_file() and folder.endswith("tiny_init")


def test_eval_split_must_be_test_or_validation(tmp_path):
    from trl_reasoning.recipes import RecipeError

    with pytest.raises(RecipeError, match="'eval_split' must be"):
        _recipe(tmp_path, "model: tiny\ntask: arithmetic\neval_split: dev\n")


def test_svamp_references_unrolled_into_steps_verify_and_check(svamp_file, tmp_path):
    """``solution_format: steps``: every SVAMP equation becomes one true 'a op b = c' line per
    operation ending at the answer, which the verifier and the equation check both accept."""
    from trl_reasoning.pipeline import load_datasets
    from trl_reasoning.tasks.svamp import equation_steps
    from trl_reasoning.verifiers import equations_hold

    assert equation_steps("( ( 7.0 * 3.0 ) - 2.0 )") == ["7 * 3 = 21", "21 - 2 = 19"]
    assert equation_steps("( 7.0 / 2.0 )") == ["7 / 2 = 3.5"]
    assert equation_steps("( ( 55.0 / 15.0 ) * 60.0 )") == ["( 55 / 15 ) * 60 = 220"]  # no short decimal
    with pytest.raises(DataError, match="cannot read the equation"):
        equation_steps("__import__('os')")
    recipe = _recipe(tmp_path, f"model: tiny\ntask: svamp\ntrain_data: {svamp_file}\n"
                               f"eval_data: {svamp_file}\nsolution_format: steps\n")
    train, _, test = load_datasets(recipe)
    rows = list(train) + list(test)
    assert len(rows) == 1000
    for row in rows:
        lines = row["solution"].splitlines()
        assert lines[-1] == f"#### {row['answer']}" and len(lines) >= 2, row["solution"]
        assert is_correct(row["solution"], row["answer"], "svamp") and equations_hold(row["solution"])
    assert any(len(row["solution"].splitlines()) >= 3 for row in rows)  # nested equations unrolled
