"""One run per output folder: a live holder refuses a second run in one line; a stale lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from trl_reasoning.run_lock import LOCK_NAME, RunLock, RunLockError


def _lock_for(folder, pid: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(
        json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier"})
    )


def test_second_run_on_a_live_runs_folder_gets_one_line(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        out = tmp_path / "run"
        _lock_for(out, holder.pid)
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"model: tiny\ntask: arithmetic\noutput_dir: {out}\nstages: "
                          "[eval]\nnum_eval_examples: 2\n")
        done = subprocess.run(
            [sys.executable, "-m", "trl_reasoning", "train", str(recipe)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert done.returncode != 0
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("trl-reasoning: error: output_dir:") and f"pid {holder.pid}" in last, (
            done.stderr[-1500:]
        )
        assert "Traceback" not in done.stderr
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid  # the live lock is untouched
    finally:
        holder.communicate(b"")


def test_stale_lock_is_taken_over_and_released(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is no longer alive
    _lock_for(tmp_path, dead.pid)
    with RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockError, match="in use by another run"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists()
