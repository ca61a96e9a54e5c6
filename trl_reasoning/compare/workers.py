"""Several processes on one comparison: ``trl-reasoning compare RECIPE --seeds 0 1 2 --workers 2``.

A comparison is made of pieces: per seed, the shared stages (SFT, the reward models and the start's
evaluation), then each method (train and evaluate). Each piece is claimed with an advisory file lock
(``fcntl.flock``) before it runs, so every ``compare`` process on one output folder takes the pieces no
other one holds, and none runs twice. The kernel drops a dead process's locks, so a killed worker never
blocks the rerun that resumes it (no stale lock files to clean).

``--workers N`` starts N-1 copies of the same command, each on its own share of the CPU cores (or, with
as many GPUs as workers, its own GPU), and works as the first itself; worker ``i`` starts at the
``i``-th seed, so the workers train different SFT policies at once and then meet on the methods. Once
every copy has exited, the first writes the report from the records, as a one-process run would.

Under ``accelerate launch`` (several ranks per run) the ranks must agree on every piece, so pieces are
not claimed there and ``--workers`` is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import RecipeError


class WorkerError(RuntimeError):
    """A worker started by ``--workers`` stopped before the end (rerun the command to resume)."""


WORKER_ENV = "TRL_REASONING_COMPARE_WORKER"  # set by --workers in the copies it starts: "INDEX/COUNT"


class Claim:
    """An exclusive advisory lock on ``path`` (created if missing): ``try_take()`` without waiting,
    ``take()`` waiting for the holder to finish; ``release()`` (or the process's exit) frees it."""

    def __init__(self, path: str | Path):
        self.path, self.fd = Path(path), None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)

    def try_take(self) -> bool:
        """Take the lock if no process holds it; False (and nothing held) when one does."""
        import fcntl

        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def take(self) -> None:
        """Take the lock, waiting (in the kernel, not by polling) until its holder releases it or exits."""
        import fcntl

        self.fd = self._open()
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def claims_enabled() -> bool:
    """Pieces are claimed in one-rank runs only (the ranks of a launched run take every piece together)."""
    return int(os.environ.get("WORLD_SIZE", "1")) == 1


def this_worker() -> tuple[int, int]:
    """(index, count) of this process among ``--workers``' copies; (0, 1) for a plain run."""
    text = os.environ.get(WORKER_ENV, "0/1")
    index, count = (int(v) for v in text.split("/"))
    return index, count


def seed_order(seeds: list[int], index: int) -> list[int]:
    """The seeds worker ``index`` visits: all of them, starting at its own (``index``-th) one."""
    start = index % len(seeds)
    return seeds[start:] + seeds[:start]


def core_shares(count: int) -> list[list[int]]:
    """This process's CPU cores split into ``count`` disjoint, equal shares (the remainder unused);
    every worker gets the whole set where there are fewer cores than workers."""
    cores = sorted(os.sched_getaffinity(0))
    per = len(cores) // count
    if per < 1:
        return [cores] * count
    return [cores[i * per:(i + 1) * per] for i in range(count)]


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def worker_environment(index: int, count: int, cores: list[int], gpus: int) -> dict[str, str]:
    """What worker ``index`` of ``count`` runs under: its place, its threads and vLLM CPU binding on its
    ``cores`` (where the environment does not bind already), and its own GPU when every worker can have
    one. Workers share the GPUs otherwise."""
    env = {WORKER_ENV: f"{index}/{count}", "OMP_NUM_THREADS": str(len(cores))}
    if gpus >= count:
        env["CUDA_VISIBLE_DEVICES"] = str(index)
    elif gpus == 0 and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
    return env


def start_workers(argv: list[str], count: int) -> list[subprocess.Popen]:
    """Start workers 1..count-1 as copies of ``compare argv`` and place this process as worker 0 (its
    cores, threads and GPU); returns the copies. Each copy dies with this process."""
    from ..sampling.server_launch import _death_signal

    if not claims_enabled():
        raise RecipeError("--workers: not under accelerate launch (each launched rank runs every piece); "
                          "run compare with --workers in a plain process")
    shares, gpus = core_shares(count), _gpu_count()
    workers = []
    for index in range(1, count):
        env = {**os.environ, **worker_environment(index, count, shares[index], gpus)}
        command = [sys.executable, "-m", "trl_reasoning", "compare", *argv]
        death, cores = _death_signal(), set(shares[index])

        def place(death=death, cores=cores) -> None:  # in the child, before it runs
            os.sched_setaffinity(0, cores)
            if death is not None:
                death()

        workers.append(subprocess.Popen(command, env=env, preexec_fn=place))
    os.environ.update(worker_environment(0, count, shares[0], gpus))
    os.sched_setaffinity(0, set(shares[0]))
    try:
        import torch

        torch.set_num_threads(len(shares[0]))
    except ImportError:
        pass
    return workers


def wait_for(workers: list[subprocess.Popen]) -> None:
    """Wait until every started worker exits; one line naming any that failed."""
    failed = [(i, w.wait()) for i, w in enumerate(workers, start=1)]
    failed = [(i, code) for i, code in failed if code != 0]
    if failed:
        names = ", ".join(f"worker {i} (exit code {code})" for i, code in failed)
        raise WorkerError(f"compare: {names} stopped before the end; its output is above; rerun the same "
                           "command to resume")


def without_workers_flag(argv: list[str]) -> list[str]:
    """``argv`` without ``--workers N`` (the copies run one worker each)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--workers":
            skip = True
        elif not token.startswith("--workers="):
            out.append(token)
    return out
