"""Shared fixtures. Real data lives in ../shared/data beside the checkout and is never copied here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trl_reasoning.tasks import ArithmeticConfig


def pytest_configure(config):
    """Under ``pytest -n 2`` (``make test``) each worker computes on one thread, so two workers share two
    cores instead of four threads fighting over them; their subprocesses inherit the setting."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


SHARED_DATA = Path(
    os.environ.get("TRL_REASONING_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared/data; skip (or fail when CI requires the data) if absent."""
    path = SHARED_DATA / relative
    if not path.is_file():
        reason = f"shared data file {path} is absent (put the shared/ folder beside the checkout)"
        if os.environ.get("TRL_REASONING_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason + " and TRL_REASONING_REQUIRE_SHARED_DATA=1")
        pytest.skip(reason)
    return path


@pytest.fixture
def gsm8k_train() -> Path:
    return shared_file("gsm8k/train.jsonl")


@pytest.fixture
def gsm8k_test() -> Path:
    return shared_file("gsm8k/test.jsonl")


@pytest.fixture
def svamp_file() -> Path:
    return shared_file("svamp/SVAMP.json")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained tiny Qwen2 model + tokenizer folder, built offline once per test session."""
    from trl_reasoning.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny"), hidden_size=64, num_layers=2)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from trl_reasoning.loading import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from trl_reasoning.loading import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="session")
def servable_dir(tmp_path_factory):
    """A tiny model vLLM can serve, taught the arithmetic format for a few seconds (an untrained one
    repeats one token, which would make the backend comparisons vacuous)."""
    import torch

    from trl_reasoning.loading import load_model, load_tokenizer
    from trl_reasoning.tasks import build_prompt, completion_target, load_task
    from trl_reasoning.tiny import make_tiny_model

    folder = make_tiny_model(tmp_path_factory.mktemp("servable"), hidden_size=64, num_layers=2, num_heads=2)
    model, tokenizer = load_model(str(folder)), load_tokenizer(str(folder), padding_side="right")
    rows = load_task("arithmetic", split="train", num_examples=512)
    texts = [
        build_prompt(r["question"]) + completion_target(r["solution"]) + tokenizer.eos_token for r in rows
    ]
    torch.manual_seed(0)
    fit_on_texts(model, tokenizer, texts, steps=120)
    model.save_pretrained(folder)
    return folder


# Easy arithmetic (2-3 additions of numbers up to 4): a tiny model learns its steps in seconds
EASY_ARITHMETIC = ArithmeticConfig(max_operand=4, operators=("+",), min_steps=2, max_steps=3)
EASY_ARITHMETIC_RECIPE = "arithmetic: {max_operand: 4, operators: ['+'], min_steps: 2, max_steps: 3}"


@pytest.fixture(scope="session")
def arithmetic_start(tmp_path_factory) -> Path:
    """A tiny model fine-tuned (800 steps, ~30 s) on 250 easy-arithmetic references whose answer line is
    off by one 70% of the time: it writes its steps right, then copies the result into ``#### N`` one too
    high about three times in four (about a fifth of held-out questions right). A verifier reward can fix
    that habit, and it carries over to questions never seen: the start of the held-out learning tests,
    and a policy whose samples are right often enough for EI to keep some.
    Trained to its habit on purpose: after 400 steps (half off by one) half of its held-out samples on an
    AVX-512 Xeon still had a wrong or misread step, and the start differed by CPU (greedy 0.183 there,
    0.233 on an AVX2 EPYC), and so, likely, did what a trainer could learn from it; ``noisy_start``
    checks the habit."""
    import random

    import torch

    from trl_reasoning.loading import load_model, load_tokenizer
    from trl_reasoning.tasks import build_prompt, completion_target, load_task
    from trl_reasoning.tiny import make_tiny_model

    folder = make_tiny_model(tmp_path_factory.mktemp("arithmetic_start"), hidden_size=64, num_layers=2,
                             num_heads=2)
    model, tokenizer = load_model(str(folder)), load_tokenizer(str(folder), padding_side="right")
    rng = random.Random(0)

    def off_by_one_mostly(solution: str) -> str:
        head, answer = solution.rsplit("#### ", 1)
        return f"{head}#### {int(answer) + 1}" if rng.random() < 0.7 else solution

    rows = load_task("arithmetic", split="train", num_examples=250, arithmetic_config=EASY_ARITHMETIC)
    texts = [build_prompt(r["question"]) + completion_target(off_by_one_mostly(r["solution"]))
             + tokenizer.eos_token for r in rows]
    torch.manual_seed(0)
    fit_on_texts(model, tokenizer, texts, steps=800)
    model.save_pretrained(folder)
    return folder


def fit_on_texts(model, tokenizer, texts: list[str], steps: int, lr: float = 3e-3, batch_size: int = 16):
    """A few seconds of plain causal-LM training on ``texts`` (batches taken in turn), left in eval mode:
    a tiny model whose outputs are worth comparing."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        batch = tokenizer(texts[(step * batch_size) % len(texts):][:batch_size], return_tensors="pt",
                          padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def run_env(**extra) -> dict:
    """The environment of a run a test starts as a subprocess: offline, one thread, quiet tokenizers."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            **extra}
