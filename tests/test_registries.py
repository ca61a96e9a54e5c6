"""One registry per concept: a task and a stage added from outside the package work everywhere,
without editing any module; reward-model kinds register themselves."""

from __future__ import annotations

import json
import re

import pytest

from trl_reasoning.answers import AnswerKind

TOY = "toy_answers"


def _toy_extract(text: str, mode: str) -> str | None:
    found = re.findall(r"ANSWER=(\d+)", text)
    return found[-1] if found and len(set(found)) == 1 else None


# A toy answer format none of the built-in tasks reads: "ANSWER=N", sampling stops after it.
TOY_KIND = AnswerKind(
    "toy",
    _toy_extract,
    reference=lambda text: _toy_extract(text, "strict") or text.strip(),
    key=lambda answer: answer,
    match=lambda gold, pred: gold == pred,
    stop_pattern=r"ANSWER=\d+\n",
)


@pytest.fixture
def toy_task(tmp_path):
    """A task registered in a few lines, with a local data file; unregistered afterwards."""
    from trl_reasoning.tasks import TASKS, TaskSpec, register_task

    def to_row(record: dict, index: int) -> dict:
        return {"id": f"toy-{index}", "question": f"What is {record['a']} plus {record['b']}?",
                "solution": f"{record['a']} + {record['b']} = {record['a'] + record['b']}\n"
                            f"ANSWER={record['a'] + record['b']}",
                "answer": str(record["a"] + record["b"])}

    register_task(TaskSpec(name=TOY, hub_id=None, hub_config=None, required_fields=("a", "b"), to_row=to_row,
                           instruction="Add the numbers; end with ANSWER=N.", answer=TOY_KIND))
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps({"a": a, "b": b}) + "\n" for a in range(4) for b in range(3)))
    yield data
    TASKS.pop(TOY)


def test_a_registered_task_reaches_verifiers_rewards_and_sampling(toy_task):
    from trl_reasoning.rewards import CorrectnessReward
    from trl_reasoning.sampling import answer_pattern_for
    from trl_reasoning.tasks import load_task
    from trl_reasoning.verifiers import extract_answer, is_correct

    rows = load_task(TOY, data=str(toy_task)).to_list()
    assert rows[5]["answer"] == "3" and rows[5]["task"] == TOY
    assert extract_answer("so ANSWER=7", TOY) == "7" and extract_answer("#### 7", TOY) is None
    assert is_correct("ANSWER=3", rows[5]["solution"], TOY)
    assert CorrectnessReward(TOY)(["ANSWER=3", "#### 3"], answer=["3", "3"]) == [1.0, 0.0]
    assert answer_pattern_for(TOY) == r"ANSWER=\d+\n"


def test_a_registered_task_runs_through_eval_sample_and_ei(toy_task, tiny_model_dir, tmp_path):
    from trl_reasoning.cli import main
    from trl_reasoning.tasks import add_prompts, load_task
    from trl_reasoning.trainers import ExpertIterationConfig, ExpertIterationTrainer

    common = [
        "--model",
        str(tiny_model_dir),
        "--task",
        TOY,
        "--data",
        str(toy_task),
        "--num_generations",
        "2",
        "--max_new_tokens",
        "8",
        "--backend",
        "hf",
    ]
    main(["eval", *common, "--output", str(tmp_path / "eval")])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_questions"] == 12 and "pass@2" in metrics["metrics"]
    main(["sample", *common, "--output", str(tmp_path / "sample")])
    assert len((tmp_path / "sample" / "samples.jsonl").read_text().splitlines()) == 24

    train = add_prompts(load_task(TOY, data=str(toy_task)))
    args = ExpertIterationConfig(output_dir=str(tmp_path / "ei"), task=TOY, num_rounds=1, num_generations=2,
                                 max_new_tokens=8, include_reference_solutions=True, sampling_backend="hf",
                                 per_device_train_batch_size=8, use_cpu=True, report_to="none", max_length=64)
    history = ExpertIterationTrainer(model=str(tiny_model_dir), args=args, train_dataset=train).train()
    kept = [
        json.loads(line) for line in (tmp_path / "ei" / "round_001" / "kept.jsonl").read_text().splitlines()
    ]
    assert history[-1]["cumulative_samples"] == 24
    assert sum(row.get("reference", False) for row in kept) == 12  # the toy references, verified and kept
    assert (tmp_path / "ei" / "round_001" / "checkpoint" / "config.json").exists()


TOY_STAGE_RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [toy_rounds, eval]
num_train_examples: 16
num_eval_examples: 4
tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2}}
toy_rounds: {{num_rounds: 1, num_generations: 2, max_new_tokens: 8, include_reference_solutions: true,
             per_device_train_batch_size: 8, eval_num_generations: 2, sampling_backend: hf}}
eval: {{num_generations: 2, max_new_tokens: 8, backend: hf}}
"""


def test_a_registered_stage_runs_in_a_recipe(tmp_path):
    """A toy EI subclass becomes a recipe stage with one register call: no edit to pipeline or recipes."""
    from trl_reasoning.pipeline import run_recipe
    from trl_reasoning.recipes import RecipeError, load_recipe
    from trl_reasoning.stages import register_stage, rounds_stage
    from trl_reasoning.stages.base import _REGISTRY
    from trl_reasoning.trainers import ExpertIterationConfig, ExpertIterationTrainer

    class ToyRounds(ExpertIterationTrainer):
        algorithm_name = "Toy Rounds"

    register_stage(rounds_stage("toy_rounds", ToyRounds, lambda: ExpertIterationConfig, order=35))
    try:
        path = tmp_path / "toy.yaml"
        path.write_text(TOY_STAGE_RECIPE.format(out=tmp_path / "run"))
        bad = tmp_path / "bad.yaml"
        bad.write_text(path.read_text().replace("num_rounds: 1", "num_roundz: 1"))
        with pytest.raises(RecipeError, match="unknown key 'toy_rounds.num_roundz'"):
            load_recipe(bad)
        results = run_recipe(load_recipe(path))
    finally:
        _REGISTRY.pop("toy_rounds")
    run = tmp_path / "run"
    done = json.loads((run / "toy_rounds" / "stage_complete.json").read_text())
    assert done["rounds"] == 1 and done["cumulative_samples"] == 32
    assert set(results) == {"initial", "toy_rounds"}  # no sft stage: compared with its start
    assert "toy_rounds" in (run / "results.md").read_text()
    assert "# Toy Rounds policy" in (run / "toy_rounds" / "final_model" / "README.md").read_text()


def test_reward_model_kinds_register_themselves():
    from trl_reasoning.reward_models import OutcomeRewardModel, ProcessRewardModel, reward_model_class
    from trl_reasoning.reward_models.base import RewardModelError, TokenRewardModel

    assert (
        reward_model_class("outcome") is OutcomeRewardModel
        and reward_model_class("process") is ProcessRewardModel
    )

    class ToyRewardModel(TokenRewardModel):
        kind = "toy_kind"

    class SameKind(OutcomeRewardModel):  # keeps its parent's kind: registers nothing
        pass

    try:
        assert reward_model_class("toy_kind") is ToyRewardModel
        assert reward_model_class("outcome") is OutcomeRewardModel
    finally:
        TokenRewardModel.kinds.pop("toy_kind")
    with pytest.raises(RewardModelError, match="unknown kind 'nope'; expected one of outcome, process"):
        reward_model_class("nope")


def test_former_names_of_a_setting_say_what_they_became(tmp_path, tiny_model_dir):
    from trl_reasoning.cli import main
    from trl_reasoning.recipes import RecipeError, load_recipe

    recipe = tmp_path / "old.yaml"
    recipe.write_text("model: tiny\neval: {num_samples: 8}\n")
    with pytest.raises(
        RecipeError, match="unknown key 'eval.num_samples' \\(renamed: use 'num_generations'\\)"
    ):
        load_recipe(recipe)
    with pytest.raises(SystemExit) as caught:
        main(["eval", "--model", str(tiny_model_dir), "--num_samples", "4"])
    assert "(renamed: use 'num_generations')" in str(caught.value.code)


def test_correctness_reward_is_a_picklable_callable_class():
    import pickle

    from trl_reasoning.rewards import CorrectnessReward

    reward = pickle.loads(pickle.dumps(CorrectnessReward("svamp", "flexible")))
    assert reward.__name__ == "correctness_svamp" and reward(["it is 4"], answer=["4"]) == [1.0]
