import json
import subprocess
import sys

import pytest

from trl_reasoning.tasks import add_prompts, load_task
from trl_reasoning.trainers import ExpertIterationConfig, ExpertIterationTrainer
from trl_reasoning.trainers.expert_iteration_trainer import select_solutions


def test_select_solutions_dedups_caps_and_remembers():
    samples = [
        {"id": "q1", "completion": " 1 + 1 = 2\n#### 2", "correct": True},
        {"id": "q1", "completion": " 1 + 1 = 2\n#### 2", "correct": True},  # exact duplicate
        {"id": "q1", "completion": "  1 + 1  = 2\n####   2", "correct": True},  # whitespace variant
        {"id": "q1", "completion": " 1+1 = 2\n#### 2", "correct": True},
        {"id": "q1", "completion": " wrong", "correct": False},
        {"id": "q2", "completion": " 1 + 1 = 2\n#### 2", "correct": True},  # same text, other question
    ]
    seen = set()
    kept = select_solutions(samples, seen, max_per_question=None)
    assert [k["completion"] for k in kept] == [" 1 + 1 = 2\n#### 2", " 1+1 = 2\n#### 2", " 1 + 1 = 2\n#### 2"]
    assert select_solutions(samples, seen, None) == []  # a later round adds nothing already kept
    assert len(select_solutions(samples, set(), max_per_question=1)) == 2


def test_select_solutions_without_deduplication_keeps_every_sample_as_drawn_within_the_cap():
    right, wrong, empty = (" 1 + 1 = 2\n#### 2", True), (" wrong", False), ("  ", False)
    samples = [{"id": "q1", "completion": text, "correct": ok} for text, ok in [right] * 3 + [wrong, empty]]
    seen = {("q1", "1 + 1 = 2 #### 2")}  # kept in an earlier round
    kept = select_solutions(samples, seen, None, only_correct=False, deduplicate=False)
    assert [k["completion"] for k in kept] == [" 1 + 1 = 2\n#### 2"] * 3 + [" wrong"]  # empty ones never
    assert len(select_solutions(samples, set(), 2, only_correct=False, deduplicate=False)) == 2


def test_the_deduplicate_field_reaches_each_rounds_selection(tmp_path):
    """The config's ``deduplicate`` decides what a round keeps (three copies of one right solution)."""
    from types import SimpleNamespace

    from trl_reasoning.trainers import ExpertIterationConfig
    from trl_reasoning.trainers.rounds import RoundsTrainer

    samples = [{"id": "q1", "completion": " 1 + 1 = 2\n#### 2", "correct": True}] * 3
    for deduplicate, kept in ((True, 1), (False, 3)):
        args = ExpertIterationConfig(output_dir=str(tmp_path), deduplicate=deduplicate, use_cpu=True,
                                     report_to="none")
        rounds = SimpleNamespace(args=args, seen=set(), kept_union=[])
        assert len(RoundsTrainer._select(rounds, samples, only_correct=True)) == kept


def answer_marker_reward(completions, **kwargs):
    """A TRL reward function an untrained tiny model can learn fast: write the answer marker ``####``
    (about 5% of its random 8-token completions do)."""
    return [1.0 if "####" in c else 0.0 for c in completions]


def test_expert_iteration_learns_from_a_trl_style_script(tiny_model_dir, tmp_path):
    """Written as a TRL user would: config + trainer(model, args, datasets, processing_class,
    reward_funcs)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    train = add_prompts(load_task("arithmetic", split="train", num_examples=64))
    args = ExpertIterationConfig(
        output_dir=str(tmp_path / "ei"),
        num_rounds=3,
        num_generations=8,
        temperature=1.0,
        max_new_tokens=8,
        generation_batch_size=128,
        learning_rate=1e-2,
        num_train_epochs=2,
        per_device_train_batch_size=32,
        lr_scheduler_type="constant",
        use_cpu=True,
        bf16=False,
        report_to="none",
        gradient_checkpointing=False,
        stop_when_no_new_solutions=False,
        logging_steps=100,
        max_length=128,
    )
    trainer = ExpertIterationTrainer(
        model=model, args=args, train_dataset=train, processing_class=tokenizer,
        reward_funcs=[answer_marker_reward],
    )
    history = trainer.train()
    accuracy = [r["train"]["sample_accuracy"] for r in history[1:]]
    assert accuracy[0] < 0.2
    assert accuracy[-1] > accuracy[0] + 0.2, accuracy  # the policy learned what the filter keeps
    assert history[-1]["cumulative_samples"] == 3 * 64 * 8
    run = tmp_path / "ei"
    assert {"metrics.json", "exploration.png", "README.md"} <= {p.name for p in run.iterdir()}
    for round_index in (1, 2, 3):
        folder = run / f"round_{round_index:03d}"
        assert {"samples.jsonl", "kept.jsonl", "metrics.json", "checkpoint"} <= {
            p.name for p in folder.iterdir()
        }
    trainer.save_model(str(tmp_path / "final"))
    assert "Metrics per round" in (tmp_path / "final" / "README.md").read_text()


def test_bad_datasets_fail_clearly(tiny_model_dir, tmp_path):
    args = ExpertIterationConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    bare = load_task("arithmetic", num_examples=4)
    with pytest.raises(ValueError, match=r"train_dataset: missing column\(s\) \['prompt'\]"):
        ExpertIterationTrainer(model=str(tiny_model_dir), args=args, train_dataset=bare)
    with pytest.raises(ValueError, match="num_rounds: need at least 1"):
        ExpertIterationConfig(output_dir=str(tmp_path), num_rounds=0, use_cpu=True, bf16=False)
    with pytest.raises(ValueError, match="temperature: 0 means greedy"):
        ExpertIterationConfig(output_dir=str(tmp_path), temperature=0.0, use_cpu=True, bf16=False)


SHORT_RECIPE = """
model: tiny
task: arithmetic
output_dir: {out}
stages: [sft, ei]
num_train_examples: 48
num_eval_examples: 8
tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2}}
sft: {{num_train_epochs: 1, per_device_train_batch_size: 16, gradient_checkpointing: false, max_length: 128}}
ei:
  num_rounds: 3
  num_generations: 2
  max_new_tokens: 24
  generation_batch_size: 32
  stop_when_no_new_solutions: false
  include_reference_solutions: true
  num_train_epochs: 1
  per_device_train_batch_size: 16
  gradient_checkpointing: false
  max_length: 128
  eval_num_generations: 2
"""


def _env():
    from conftest import run_env

    return run_env()


def test_killed_run_resumes_at_the_round_it_was_in(tmp_path):
    """The run dies right after round 2's samples are written (a test-only fault point, no timing);
    the rerun resumes inside round 2 without sampling rounds 1 or 2 again."""
    from trl_reasoning.faults import FAULT_ENV

    out = tmp_path / "run"
    recipe = tmp_path / "short.yaml"
    recipe.write_text(SHORT_RECIPE.format(out=out))
    command = [sys.executable, "-m", "trl_reasoning", "train", str(recipe)]
    crashed = subprocess.run(
        command, env={**_env(), FAULT_ENV: "samples_written:2"}, capture_output=True, text=True, timeout=600
    )
    assert crashed.returncode == 75, crashed.stderr[-2000:]
    assert (out / "ei" / "round_002" / "samples.jsonl").exists()
    assert not (out / "ei" / "round_002" / "metrics.json").exists()
    before = {p: p.stat().st_mtime_ns for p in (out / "ei").rglob("*.jsonl")}
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for path, mtime in before.items():
        if path.name == "samples.jsonl":
            assert path.stat().st_mtime_ns == mtime, f"{path} was sampled again"
    history = json.loads((out / "ei" / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in history] == [0, 1, 2, 3]
    assert history[-1]["cumulative_samples"] == 3 * 48 * 2
    for round_index in (1, 2, 3):
        lines = (out / "ei" / f"round_{round_index:03d}" / "samples.jsonl").read_text().splitlines()
        assert len(lines) == 48 * 2  # every sample written once
    assert (out / "ei" / "stage_complete.json").exists()


def always_right(completions, **kwargs):
    return [1.0] * len(completions)


def _small_ei_args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "ei"),
        num_rounds=2,
        num_generations=4,
        temperature=1.0,
        max_new_tokens=8,
        generation_batch_size=128,
        learning_rate=1e-3,
        num_train_epochs=1,
        per_device_train_batch_size=32,
        use_cpu=True,
        bf16=False,
        report_to="none",
        gradient_checkpointing=False,
        stop_when_no_new_solutions=False,
        logging_steps=100,
        max_length=128,
        disable_tqdm=True,
        eval_num_generations=2,
    )
    return ExpertIterationConfig(**{**values, **overrides})


@pytest.mark.parametrize("reinit", [False, True])
def test_rounds_train_on_the_union_capped_per_question_and_evaluate_each_round(
    tiny_model_dir, tmp_path, reinit
):
    train = add_prompts(load_task("arithmetic", split="train", num_examples=12))
    trainer = ExpertIterationTrainer(
        model=str(tiny_model_dir),
        train_dataset=train,
        eval_dataset=train.select(range(4)),
        reward_funcs=[always_right],
        args=_small_ei_args(tmp_path, max_solutions_per_question=5, reinit_each_round=reinit),
    )
    fine_tuned, reloaded = [], []
    fine_tune, reload = trainer._fine_tune, trainer._reload
    trainer._fine_tune = lambda rows, folder, **kwargs: (
        fine_tuned.append([dict(r) for r in rows]),
        fine_tune(rows, folder, **kwargs),
    )
    trainer._reload = lambda folder: (reloaded.append(str(folder)), reload(folder))[1]
    history = trainer.train()
    first, second = fine_tuned
    kept = [r["train"]["kept"] for r in history[1:]]
    assert len(first) == kept[0] and len(second) == kept[0] + kept[1]  # round 2 trains on rounds 1 + 2
    assert [r["completion"] for r in second[:len(first)]] == [r["completion"] for r in first]
    per_question = {}
    for row in second:
        per_question[row["id"]] = per_question.get(row["id"], 0) + 1
    assert max(per_question.values()) == 5 and kept[1] > 0  # the cap holds over the union
    assert reloaded == (
        [str(tiny_model_dir)] * 2 if reinit else []
    )  # each round restarts from the initial model
    assert [r["round"] for r in history] == [0, 1, 2]
    assert all(
        {"maj@1", "maj@2", "pass@1", "pass@2"} <= set(r["eval"]) for r in history
    )  # evaluated every round


def test_the_equation_check_drops_lucky_answers_and_counts_them(tiny_model_dir, tmp_path):
    """With check_equations, a right final answer after a false written step is not kept, and the round
    reports how many it dropped."""
    from trl_reasoning.sampling.results import Completion

    train = add_prompts(load_task("arithmetic", split="train", num_examples=1))
    args = _small_ei_args(tmp_path, check_equations=True)
    trainer = ExpertIterationTrainer(model=str(tiny_model_dir), train_dataset=train,
                                     reward_funcs=[always_right], args=args)
    texts = ["10 + 10 = 11\n#### 11", "10 + 1 = 11\n#### 11", "no equation\n#### 11"]
    samples = trainer._score([[Completion(t, 5) for t in texts]])
    assert [s["correct"] for s in samples] == [False, True, True]
    assert trainer._train_stats(samples, [])["dropped_by_equation_check"] == 1


class _PieceSampler:
    """Completions that name their prompt and seed; ``fail_at``: the call that raises (a lost server)."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def sample(self, prompts, seed, logits_processors):
        from trl_reasoning.sampling import Completion, SamplingError, SamplingResult

        self.calls.append(list(prompts))
        if len(self.calls) == self.fail_at:
            raise SamplingError("vllm_server: every server failed")
        groups = [[Completion(f"{p}/{seed}/{j}", j + 1) for j in range(2)] for p in prompts]
        return SamplingResult(completions=groups, seconds=1.0)


def test_a_round_stopped_mid_sampling_resumes_from_its_last_written_piece(tmp_path):
    """Pieces of 3 questions; the sampler fails on the third piece; the rerun samples only the pieces
    not on disk and ends with exactly what an uninterrupted round draws."""
    from types import SimpleNamespace

    from trl_reasoning.sampling import SamplingError
    from trl_reasoning.trainers.round_sampling import PIECE_SEED_STRIDE, sample_in_pieces

    state = SimpleNamespace(is_main_process=True, wait_for_everyone=lambda: None)
    prompts = [f"q{i}" for i in range(10)]
    straight = sample_in_pieces(_PieceSampler(), prompts, 5, [], tmp_path / "straight", 3, state)
    with pytest.raises(SamplingError):
        sample_in_pieces(_PieceSampler(fail_at=3), prompts, 5, [], tmp_path / "run", 3, state)
    written = sorted((tmp_path / "run" / "pieces").iterdir())
    assert [p.name for p in written] == ["piece_00000.jsonl", "piece_00001.jsonl"]
    rerun = _PieceSampler()
    resumed = sample_in_pieces(rerun, prompts, 5, [], tmp_path / "run", 3, state)
    assert rerun.calls == [["q6", "q7", "q8"], ["q9"]]
    as_text = lambda groups: [[(c.text, c.num_tokens) for c in g] for g in groups]  # noqa: E731
    assert as_text(resumed) == as_text(straight)
    assert as_text(resumed)[7][1] == (f"q7/{5 + 2 * PIECE_SEED_STRIDE}/1", 2)  # piece 2's own seed
    (tmp_path / "run" / "pieces" / "piece_00001.jsonl").write_text(
        (tmp_path / "run" / "pieces" / "piece_00000.jsonl").read_text())  # another piece's prompts
    with pytest.raises(SamplingError, match="holds other prompts"):
        sample_in_pieces(_PieceSampler(), prompts, 5, [], tmp_path / "run", 3, state)


def test_a_round_in_one_piece_writes_no_pieces(tmp_path):
    from types import SimpleNamespace

    from trl_reasoning.trainers.round_sampling import sample_in_pieces

    state = SimpleNamespace(is_main_process=True, wait_for_everyone=lambda: None)
    out = sample_in_pieces(_PieceSampler(), ["a", "b"], 9, [], tmp_path, 0, state)
    assert [g[0].text for g in out] == ["a/9/0", "b/9/0"] and not (tmp_path / "pieces").exists()
