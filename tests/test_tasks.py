import json
from pathlib import Path

import pytest

from trl_reasoning.tasks import DataError, add_prompts, build_prompt, load_task
from trl_reasoning.tasks.arithmetic import ArithmeticConfig, generate
from trl_reasoning.tasks.gsm8k import calculator_results, strip_annotations
from trl_reasoning.verifiers import is_correct


def test_gsm8k_local_file(gsm8k_test):
    dataset = load_task("gsm8k", data=str(gsm8k_test), split="test")
    assert len(dataset) == 1319
    assert dataset.column_names == ["id", "question", "solution", "answer", "task"]
    row = dataset[0]
    assert row["answer"] == "18" and "<<" not in row["solution"]
    assert all(is_correct(r["solution"], r["answer"]) for r in dataset)


def test_svamp_local_file(svamp_file):
    dataset = load_task("svamp", data=str(svamp_file), split="train", limit=50)
    assert len(dataset) == 50
    assert dataset[0]["answer"] == "51"
    assert dataset[0]["question"].endswith("How much do you have to pay to buy each pack?")
    assert all(is_correct(r["solution"], r["answer"], task="svamp") for r in dataset)


def _shared_words(question: str, others: list[str]) -> float:
    """The largest Jaccard overlap of ``question``'s content words with any of ``others``'."""
    from trl_reasoning.tasks.svamp import _content_words

    mine = _content_words(question)
    return max(len(mine & _content_words(o)) / len(mine | _content_words(o)) for o in others)


def test_the_original_svamp_file_splits_by_family_the_same_way_every_time(svamp_file, tmp_path):
    """No test problem is a variation of a train problem: none shares FAMILY_OVERLAP of its words
    (numbers aside) with any train problem. The id-based split this replaced failed here: 297 of its 300
    test problems had such a sibling in train."""
    from trl_reasoning.tasks.svamp import FAMILY_OVERLAP

    train = load_task("svamp", data=str(svamp_file), split="train")
    test = load_task("svamp", data=str(svamp_file), split="test")
    assert (len(train), len(test)) == (696, 304) and not set(train["id"]) & set(test["id"])
    assert max(_shared_words(q, train["question"]) for q in test["question"]) < FAMILY_OVERLAP
    assert test["id"][:3] == ["chal-3", "chal-8", "chal-28"]  # fixed by SPLIT_SEED: a change shows here
    assert load_task("svamp", data=str(svamp_file), split="test")["id"] == test["id"]
    part = tmp_path / "part.json"  # any other file is the user's own split: used whole
    part.write_text(json.dumps(json.loads(svamp_file.read_text())[:10]))
    assert len(load_task("svamp", data=str(part), split="test")) == 10


def test_svamp_families_join_variations_of_one_problem_and_chains_of_them():
    from trl_reasoning.tasks.svamp import families

    texts = ["Dan has $ 4. He had $ 3 left after he bought a candy bar. How much did the candy bar cost?",
             "Tom planted 12 trees in the park and cut 5 of them. How many trees are left in the park?",
             "Dan had $ 3 left after he bought a candy bar. If he had $ 7 at the start how much did it cost?",
             "Dan had $ 3 left after he bought a candy bar and a toy. If he had $ 7 how much was the toy?"]
    assert families(texts) == [0, 1, 0, 0]
    assert families(texts[1:2]) == [0]
    # a chain: A and C share 1 of 9 words, each shares 3 of 7 with B (0.43); C comes before B, so B
    # joins two families. Numbers do not count; D and E share 3 of 8 (0.375), just under the threshold
    chain = ["apple 3 bread cheese dates eggs", "cheese figs grapes honey ice 12",
             "apple bread cheese figs 7 grapes", "kiwi lemon mango nuts oats",
             "kiwi lemon mango pears quince rice"]
    assert families(chain) == [0, 0, 0, 3, 4]


def test_the_hub_copy_of_svamp_is_re_split_by_family(svamp_file, monkeypatch):
    """The Hub's own 700/300 split shares families: the default Hub dataset is re-split like the original
    file; a Hub copy that is not the original 1000 problems fails with one line naming ``data``."""
    import datasets

    from trl_reasoning.tasks import base

    records = json.loads(svamp_file.read_text())
    hub = {"train": records[:700], "test": records[700:]}
    monkeypatch.setattr(base, "_hub_unreachable", lambda repo_id: None)
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda hub_id, config, split: datasets.Dataset.from_list(hub[split]))
    for split in ("train", "test"):
        local = load_task("svamp", data=str(svamp_file), split=split)
        assert load_task("svamp", split=split)["id"] == local["id"]
    hub["test"] = records[700:-1]
    with pytest.raises(DataError, match=r"^data: the Hub copy of svamp holds 999 problems"):
        load_task("svamp", split="test")


def test_math_local_file(tmp_path):
    path = tmp_path / "math.jsonl"
    rows = [{"problem": "1/2 + 0?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "level": "Level 1"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    dataset = load_task("math", data=str(path))
    assert dataset[0]["answer"] == "\\frac{1}{2}"
    assert is_correct("\\boxed{0.5}", dataset[0]["answer"], task="math")


def test_parquet_and_json_list(tmp_path):
    rows = [{"question": "q1", "answer": "x\n#### 3"}, {"question": "q2", "answer": "#### 4"}]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    assert load_task("gsm8k", data=str(tmp_path / "list.json"))["answer"] == ["3", "4"]
    from datasets import Dataset

    Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    assert load_task("gsm8k", data=str(tmp_path / "d.parquet"))["answer"] == ["3", "4"]


def test_gsm8k_annotations():
    solution = "She sold 48/2 = <<48/2=24>>24 clips.\n#### 24"
    assert strip_annotations(solution) == "She sold 48/2 = 24 clips.\n#### 24"
    assert calculator_results(solution) == ["24"]


def test_arithmetic_is_deterministic_and_splits_never_share_questions():
    train = generate(500, "train", seed=3)
    assert train == generate(500, "train", seed=3)
    assert train != generate(500, "train", seed=4)
    test = generate(200, "test", seed=3)
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert len({r["question"] for r in train}) == 500
    for row in train[:50]:
        assert is_correct(row["solution"], row["answer"], task="arithmetic")


def _arithmetic_splits_in_use() -> list[tuple[int, int, dict, str]]:
    """(train size, test size, difficulty, where) of every arithmetic recipe and test in the repository."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[1]
    found = []
    for path in sorted((root / "recipes").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if raw.get("task") == "arithmetic":
            found.append((raw.get("num_train_examples", 2000), raw.get("num_eval_examples", 200),
                          raw.get("arithmetic", {}), path.name))
    for path in sorted(root.glob("tests/test_*.py")):
        for size in re.findall(r"num_train_examples[\"']?[:=,]\s*(\d+)", path.read_text()):
            found.append((int(size), 200, {}, path.name))
    return found


def test_arithmetic_test_split_shares_no_solution_with_train():
    """Held out by content: no test solution (numbers, operations, steps) is a train solution, for every
    split size and difficulty the recipes and tests use, and across seeds (a split is the solution's)."""
    in_use = _arithmetic_splits_in_use()
    assert any(where == "compare_quickstart.yaml" for *_, where in in_use)
    checked = set()
    for num_train, num_test, difficulty, where in in_use:
        key = (num_train, num_test, repr(sorted(difficulty.items())))
        if key in checked:
            continue
        checked.add(key)
        cfg = ArithmeticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in difficulty.items()})
        train = {r["solution"] for seed in (0, 1) for r in generate(num_train, "train", seed, cfg)}
        test = [r["solution"] for r in generate(num_test, "test", 0, cfg)]
        assert len(set(test)) == len(test), where
        assert not train & set(test), f"{where}: {len(train & set(test))} test solutions also in train"


def test_wording_does_not_make_a_test_question_new():
    """The split follows the solution: two problems that differ only in names and items fall together."""
    from trl_reasoning.tasks.arithmetic import split_of

    cfg = ArithmeticConfig(max_operand=9, operators=("+", "-"))
    rows = generate(3000, "train", 0, cfg) + generate(800, "test", 0, cfg)
    for row in rows:
        assert split_of(row["solution"], cfg.test_fraction) == ("test" if row in rows[3000:] else "train")
    solutions = [r["solution"] for r in rows]
    assert len(set(solutions)) == len(solutions)  # every problem's solution is new, not just its wording


def test_arithmetic_difficulty_knobs():
    cfg = ArithmeticConfig(min_steps=4, max_steps=4, max_operand=9, operators=("+", "/"))
    rows = generate(20, "train", config=cfg)
    for row in rows:
        lines = row["solution"].splitlines()
        assert len(lines) == 5 and lines[-1] == f"#### {row['answer']}"
        assert all("+" in line or "/" in line for line in lines[:-1])
    with pytest.raises(DataError, match="operators"):
        ArithmeticConfig(operators=("^",))


def test_prompt_styles():
    assert build_prompt("What is 2+2?") == "Question: What is 2+2?\nAnswer:"
    shots = [{"question": "1+1?", "solution": "1 + 1 = 2\n#### 2"}]
    few = build_prompt("2+2?", "few_shot", shots)
    assert few == "Question: 1+1?\nAnswer: 1 + 1 = 2\n#### 2\n\nQuestion: 2+2?\nAnswer:"
    chat = build_prompt("2+2?", "chat", instruction="Be brief.")
    assert chat == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    dataset = load_task("arithmetic", split="test", num_examples=3)
    exemplars = load_task("arithmetic", split="train", num_examples=10).to_list()
    prompts = add_prompts(dataset, "few_shot", exemplars, num_shots=2)["prompt"]
    assert all(p.count("Question:") == 3 for p in prompts)
    assert add_prompts(dataset, "chat")["prompt"][0][0]["role"] == "system"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "gsm9k"}, "task: unknown task 'gsm9k'"),
        ({"name": "gsm8k", "data": "missing/file.jsonl"}, "does not exist"),
        ({"name": "gsm8k", "split": "dev", "data": None}, "split: 'dev' is not a split of gsm8k"),
    ],
)
def test_bad_input_raises_one_clear_error(kwargs, message):
    with pytest.raises(DataError, match=message):
        load_task(**kwargs)


def test_file_without_expected_fields_and_empty_file(tmp_path):
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"problem": "x", "solution": "y"}) + "\n")
    with pytest.raises(DataError, match=r"lacks field\(s\) \['question', 'answer'\] needed by task 'gsm8k'"):
        load_task("gsm8k", data=str(wrong))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        load_task("gsm8k", data=str(empty))
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(DataError, match="not valid JSON"):
        load_task("gsm8k", data=str(broken))
    with pytest.raises(DataError, match="prompt_style: few_shot needs"):
        add_prompts(load_task("arithmetic", num_examples=2), "few_shot")


def test_unreachable_hub_dataset_is_one_line(monkeypatch):
    import datasets

    from trl_reasoning.tasks import DataError, load_task

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)\nmore "
                              "lines")

    from trl_reasoning.tasks import base

    monkeypatch.setattr(base, "_hub_unreachable", lambda repo_id: None)  # the Hub "answers"; loading fails
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        DataError, match=r"cannot load the Hub dataset 'openai/gsm8k' .* pass a local file"
    ) as caught:
        load_task("gsm8k", split="test")
    assert "\n" not in str(caught.value)


def test_no_network_fails_after_one_retry_without_datasets_retries(monkeypatch):
    """No network and HF_HUB_OFFLINE unset: two quick probes, then one line (datasets would retry ~30 s)."""
    import datasets
    import huggingface_hub
    from huggingface_hub import constants

    from trl_reasoning.tasks import DataError, load_task

    class ConnectError(Exception):  # httpx's name, as the Hub client raises it
        pass

    calls = []

    def unreachable(self, repo_id, **kwargs):
        calls.append(repo_id)
        raise ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("datasets must not be asked"))
    with pytest.raises(DataError, match=r"cannot reach the Hub for dataset 'openai/gsm8k' "
                                        r".*HF_HUB_OFFLINE=1"):
        load_task("gsm8k", split="train")
    assert calls == ["openai/gsm8k", "openai/gsm8k"]


def test_fine_tunes_see_the_training_prompt_when_the_recipe_sets_one(tmp_path):
    """Few-shot sampling prompts, zero-shot training prompts (``train_prompt_style``): the SFT pairs and
    the rounds' fine-tune pairs use the ``training_prompt`` column."""
    from trl_reasoning.pipeline import load_datasets
    from trl_reasoning.recipes import load_recipe
    from trl_reasoning.trainers.sft import sft_examples

    path = tmp_path / "r.yaml"
    path.write_text("model: tiny\ntask: arithmetic\nstages: [sft]\nnum_train_examples: 20\n"
                    "num_eval_examples: 4\nprompt_style: few_shot\nnum_shots: 2\n"
                    f"train_prompt_style: zero_shot\noutput_dir: {tmp_path / 'run'}\n")
    train, _, held_out = load_datasets(load_recipe(path))
    row = train[0]
    assert row["prompt"] != row["training_prompt"] and row["training_prompt"] in row["prompt"]
    assert row["prompt"].count("####") == 2 and "####" not in row["training_prompt"]  # the 2 exemplars' lines
    assert sft_examples(train)[0]["prompt"] == row["training_prompt"]
    assert held_out[0]["training_prompt"] in held_out[0]["prompt"]  # for the models the run fine-tunes


PROMPTED_AS_TRAINED_RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [ei, eval]
num_train_examples: 16
num_eval_examples: 4
prompt_style: few_shot
num_shots: 2
train_prompt_style: zero_shot
tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2}}
ei: {{num_rounds: 2, num_generations: 2, max_new_tokens: 8, include_reference_solutions: true,
     stop_when_no_new_solutions: false, per_device_train_batch_size: 8, eval_num_generations: 1,
     eval_temperature: 0.0, sampling_backend: hf}}
eval: {{num_generations: 2, max_new_tokens: 8, backend: hf}}
"""


def test_fine_tuned_models_are_prompted_as_trained(tmp_path, monkeypatch):
    """Few-shot prompts sample the starting model (round 1, and its eval); once fine-tuned on zero-shot
    prompts, the policy samples (round 2) and is evaluated (rounds, eval stage) with those."""
    from trl_reasoning.pipeline import run_recipe
    from trl_reasoning.recipes import load_recipe
    from trl_reasoning.reporting import read_jsonl
    from trl_reasoning.trainers.rounds import RoundsTrainer

    def exemplars(prompts) -> set[int]:  # "####" lines in the prompts: 2 with the exemplars, 0 without
        return {p.count("####") for p in prompts}

    sampled, evaluated = {}, []
    original_prompts, original_eval = RoundsTrainer.sampling_prompts, RoundsTrainer._evaluate

    def recorded_prompts(self, round_index):
        sampled[round_index] = original_prompts(self, round_index)
        return sampled[round_index]

    def recorded_eval(self, dataset=None, *args, **kwargs):
        questions = dataset if dataset is not None else self.prompted(self.eval_dataset)
        evaluated.append(exemplars(questions["prompt"]))
        return original_eval(self, dataset, *args, **kwargs)

    monkeypatch.setattr(RoundsTrainer, "sampling_prompts", recorded_prompts)
    monkeypatch.setattr(RoundsTrainer, "_evaluate", recorded_eval)
    path = tmp_path / "r.yaml"
    path.write_text(PROMPTED_AS_TRAINED_RECIPE.format(out=tmp_path / "run"))
    run_recipe(load_recipe(path))
    run = tmp_path / "run"
    assert exemplars(sampled[1]) == {2} and exemplars(sampled[2]) == {0}
    assert evaluated == [{2}, {0}, {0}]  # rounds 0, 1, 2
    assert exemplars(r["prompt"] for r in read_jsonl(run / "eval" / "initial" / "samples.jsonl")) == {2}
    assert exemplars(r["prompt"] for r in read_jsonl(run / "eval" / "ei" / "samples.jsonl")) == {0}


class _Built(Exception):
    """Raised by the recording trainers below once a stage has built its trainer."""


def test_every_stage_samples_the_policy_with_the_prompts_it_was_trained_on(tmp_path, tiny_model_dir):
    """One rule (``RunContext.as_policy_sees``) for every caller: after this run fine-tuned the policy on
    zero-shot training prompts, PPO-style stages train on them and their training-time evaluations use
    them, and EI/RCRL start prompted as trained; before it, the starting model keeps the few-shot
    prompts. Round fine-tunes' evaluations always see the training prompts (they train on them)."""
    from trl_reasoning.pipeline import run_context
    from trl_reasoning.recipes import load_recipe
    from trl_reasoning.stages.rl import _ppo_config, _run_on_policy, rounds_stage
    from trl_reasoning.trainers.expert_iteration_config import ExpertIterationConfig

    path = tmp_path / "r.yaml"
    path.write_text("model: tiny\ntask: arithmetic\nstages: [sft, ppo]\nnum_train_examples: 16\n"
                    "num_eval_examples: 4\nprompt_style: few_shot\nnum_shots: 2\n"
                    "train_prompt_style: zero_shot\n"
                    f"output_dir: {tmp_path / 'run'}\ntraining_eval: {{num_generations: 1}}\n"
                    "ppo: {num_generations: 2, per_device_train_batch_size: 2}\n")
    ctx = run_context(load_recipe(path))

    def shots(prompts) -> set[int]:  # "####" lines: 2 with the exemplars, 0 without
        return {p.count("####") for p in prompts}

    seen = {}

    def on_policy(**kwargs):
        seen["train"] = shots(kwargs["train_dataset"]["prompt"])
        seen["eval"] = shots(kwargs["callbacks"][0].eval_dataset["prompt"])
        raise _Built

    class Rounds:
        def __init__(self, **kwargs):
            seen["round_eval"] = shots(kwargs["callbacks"][0].eval_dataset["prompt"])

        def train(self):
            seen["start_fine_tuned"] = self.policy_fine_tuned
            raise _Built

    probe = rounds_stage("probe", Rounds, lambda: ExpertIterationConfig, order=99)
    for fine_tuned in (False, True):
        ctx.policy = str(tiny_model_dir) if fine_tuned else ctx.initial
        for run in (lambda: _run_on_policy(ctx, tmp_path / "ppo", "ppo", _ppo_config(), on_policy, None),
                    lambda: probe.run(ctx, tmp_path / "probe")):
            with pytest.raises(_Built):
                run()
        expected = {0} if fine_tuned else {2}
        assert seen == {"train": expected, "eval": expected, "round_eval": {0},
                        "start_fine_tuned": fine_tuned}
