"""`compare --workers N` and pieces claimed by file locks: a held piece is skipped or waited for, a dead
holder's claim is gone, and two workers finish a shrunk comparison without running any piece twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_compare import SHRUNK  # pytest puts tests/ on sys.path (rootdir conftest)

from trl_reasoning.compare.workers import (
    Claim,
    core_shares,
    seed_order,
    start_workers,
    wait_for,
    without_workers_flag,
    worker_environment,
)
from trl_reasoning.errors import RecipeError


def test_a_held_claim_is_refused_and_a_dead_holders_claim_is_free(tmp_path):
    path = tmp_path / "seed_0" / ".shared.lock"
    first, second = Claim(path), Claim(path)
    assert first.try_take()
    assert not second.try_take()  # another open file description: flock refuses, even in one process
    first.release()
    assert second.try_take()
    second.release()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from trl_reasoning.compare.workers import Claim; "
         f"c = Claim({str(path)!r}); assert c.try_take(); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"  # waits for the line, not for a time
    assert not first.try_take()
    holder.kill()
    holder.wait()
    assert first.try_take()  # the kernel dropped the killed holder's lock: no stale lock to clean
    first.release()


def test_each_worker_starts_at_its_own_seed_on_its_own_cores(monkeypatch):
    assert seed_order([0, 1, 2], 0) == [0, 1, 2]
    assert seed_order([0, 1, 2], 1) == [1, 2, 0]
    assert seed_order([0, 1, 2], 4) == [1, 2, 0]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    assert core_shares(2) == [[0, 1], [2, 3]]  # disjoint, equal; the odd core unused
    assert core_shares(8) == [[0, 1, 2, 3, 4]] * 8  # fewer cores than workers: shared
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    env = worker_environment(2, 2, [2, 3], gpus=[])
    assert env == {"TRL_REASONING_COMPARE_WORKER": "2/2", "OMP_NUM_THREADS": "2",
                   "VLLM_CPU_OMP_THREADS_BIND": "2,3"}
    assert worker_environment(2, 2, [3], gpus=["4", "6"])["CUDA_VISIBLE_DEVICES"] == "6"  # the user's list
    assert "CUDA_VISIBLE_DEVICES" not in worker_environment(2, 2, [3], gpus=["0"])  # fewer GPUs: shared
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    assert "VLLM_CPU_OMP_THREADS_BIND" not in worker_environment(1, 2, [0], gpus=[])  # the user's binding
    assert without_workers_flag(["r.yaml", "--workers", "2", "--seeds", "0", "--workers=3"]) == [
        "r.yaml", "--seeds", "0"]


def test_a_failed_worker_is_named_after_every_worker_exits():
    workers = [subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"]) for code in (0, 3)]
    assert wait_for(workers) == ["worker 2 exited with code 3"]
    assert all(w.returncode is not None for w in workers)


def test_workers_are_refused_under_accelerate_launch(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RecipeError, match="--workers: not under accelerate launch"):
        start_workers(["r.yaml"], 2)


def _recipe(tmp_path: Path) -> tuple[Path, Path]:
    output, recipe = tmp_path / "cmp", tmp_path / "cmp.yaml"
    recipe.write_text(SHRUNK.format(output=output))
    return recipe, output


def test_a_seed_whose_shared_stages_another_process_holds_waits_until_they_are_free(tmp_path):
    """With seed 1's shared claim held here, ``--seeds 1 0`` runs seed 0 first, then says it waits and
    blocks; released, it trains seed 1 and writes the report."""
    recipe, output = _recipe(tmp_path)
    held = Claim(output / "seed_1" / ".shared.lock")
    assert held.try_take()
    command = [sys.executable, "-m", "trl_reasoning", "compare", str(recipe), "--seeds", "1", "0", "--only",
               "sft_more"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in run.stdout:  # read until the wait is announced (blocking reads, no clock)
            lines.append(line)
            if line.startswith("compare: waiting for the process that runs seed_1's shared stages"):
                break
        assert (output / "seed_0" / "seed_results.json").exists(), "".join(lines)[-3000:]
        assert not (output / "seed_1" / "sft").exists()  # seed 1 untouched while held
        held.release()
        rest = run.stdout.read()
        assert run.wait() == 0, rest[-3000:]
    finally:
        held.release()
        run.kill()
        run.wait()
    assert json.loads((output / "results.json").read_text())["seeds"] == [1, 0]


def test_a_worker_runs_every_seeds_shared_stages_before_any_method(tmp_path):
    """A worker trains seed 1's SFT before seed 0's methods (a plain run goes seed by seed), so the last
    seed's SFT is not what the workers wait on at the end."""
    recipe, output = _recipe(tmp_path)
    command = [sys.executable, "-m", "trl_reasoning", "compare", str(recipe), "--seeds", "0", "1", "--only",
               "sft_more"]
    env = {**os.environ, "TRL_REASONING_COMPARE_WORKER": "1/2"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    banners = [line for line in run.stdout.splitlines() if re.match(r"== \[\d+/\d+\] ", line)]
    pieces = [re.sub(r"^== \[\d+/\d+\] \w+: ", "", b).rstrip(" =") for b in banners]
    assert pieces == ["seed 0: supervised fine-tuning", "seed 0: the SFT start, held out",
                      "seed 1: supervised fine-tuning", "seed 1: the SFT start, held out",
                      "seed 0: method sft_more", "seed 0: method sft_more, held out",
                      "seed 1: method sft_more", "seed 1: method sft_more, held out"], run.stdout[-3000:]
    assert not (output / "results.json").exists()  # a worker leaves the report to its coordinator


@pytest.mark.slow
def test_two_workers_finish_a_comparison_without_running_any_piece_twice(tmp_path):
    recipe, output = _recipe(tmp_path)
    run = subprocess.run([sys.executable, "-m", "trl_reasoning", "compare", str(recipe), "--seeds", "0", "1",
                          "--workers", "2"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "compare: worker 1 of 2" in run.stdout and "compare: worker 2 of 2" in run.stdout
    for seed in (0, 1):
        for piece in ("sft: seed {s}: supervised fine-tuning ==", "eval: seed {s}: the SFT start",
                      "ei: seed {s}: method ei ==", "sft: seed {s}: method sft_more =="):
            pattern = re.escape(piece.format(s=seed))
            assert len(re.findall(pattern, run.stdout)) == 1, (piece, seed, run.stdout[-3000:])
    results = json.loads((output / "results.json").read_text())
    assert results["seeds"] == [0, 1] and set(results["methods"]) == {"sft", "ei", "sft_more"}
    assert results["methods"]["ei"]["samples"] == [16, 16]
