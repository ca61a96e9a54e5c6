"""Several processes on one comparison: ``trl-reasoning compare RECIPE --seeds 0 1 2 --workers 2``.

A comparison is made of pieces: per seed, the shared stages (SFT, the reward models and the start's
evaluation), then each method (train and evaluate). Each piece is claimed with an advisory file lock
(``fcntl.flock``) before it runs, so the workers of one run take the pieces no other worker holds and
none runs twice. The kernel drops a dead process's locks, so a killed worker never blocks the rerun that
resumes it (no stale lock files to clean).

``--workers N`` makes the command a coordinator: it holds the output folder's run lock (so no other run
shares the folder), starts N workers, copies of the same command, each on its own share of the CPU cores
(or, with as many GPUs as workers, its own GPU), waits for them, then runs what a failed worker left and
writes the report. Worker ``i`` starts at the ``i``-th seed, so the workers train different seeds' SFT
policies at once and then meet on the methods.

Under ``accelerate launch`` (several ranks per run) the ranks must agree on every piece, so pieces are
not claimed there and ``--workers`` is refused.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from ..errors import RecipeError

WORKER_ENV = "TRL_REASONING_COMPARE_WORKER"  # set by --workers in the copies it starts: "INDEX/COUNT"
SHARED_CLAIM = ".shared.lock"  # in a seed folder; a method's: methods/.NAME.lock


class PieceHeld(Exception):
    """Another worker holds a seed's shared stages (``run_seed(..., wait=False)``)."""


class WorkerError(RuntimeError):
    """A worker started by ``--workers`` stopped before the end (rerun the command to resume)."""


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
        """Free the lock (closing the descriptor drops the flock); nothing when not held."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def claims_enabled() -> bool:
    """Pieces are claimed in one-rank runs only (the ranks of a launched run take every piece together)."""
    return int(os.environ.get("WORLD_SIZE", "1")) == 1


@contextlib.contextmanager
def claimed(path: Path, wait: bool):
    """Yield whether this process holds ``path``'s claim; ``wait``: wait for another holder (announced)
    instead of yielding False. Always True where pieces are not claimed (``claims_enabled``)."""
    if not claims_enabled():
        yield True
        return
    claim = Claim(path)
    if not claim.try_take():
        if not wait:
            yield False
            return
        print(f"compare: waiting for the process that runs {path.parent.name}'s shared stages", flush=True)
        claim.take()
    try:
        yield True
    finally:
        claim.release()


def this_worker() -> tuple[int, int]:
    """(index, count) of this process among ``--workers``' copies (index from 1); (0, 1) for a plain run
    or the coordinator."""
    text = os.environ.get(WORKER_ENV, "0/1")
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise RecipeError(f"{WORKER_ENV}: expected INDEX/COUNT (set by --workers), got {text!r}") from None
    return index, count


def seed_order(seeds: list[int], index: int) -> list[int]:
    """The seeds a worker visits: all of them, starting at the one its ``index`` points to."""
    start = index % len(seeds)
    return seeds[start:] + seeds[:start]


def core_shares(count: int) -> list[list[int]]:
    """This process's CPU cores split into ``count`` disjoint, equal shares (``split_cores``); every
    worker gets the whole set where there are fewer cores than workers."""
    from ..environment import split_cores

    return split_cores(count) or [sorted(os.sched_getaffinity(0))] * count


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (the coordinator never
    trains, so asking torch here costs no GPU memory a worker needs)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except ImportError:
        return []


def worker_environment(index: int, count: int, cores: list[int], gpus: list[str]) -> dict[str, str]:
    """What worker ``index`` (from 1) of ``count`` runs under: its place, its threads and vLLM's CPU
    binding on its ``cores`` (where the environment does not bind already), and its own GPU when every
    worker can have one (else the workers share the GPUs)."""
    env = {WORKER_ENV: f"{index}/{count}", "OMP_NUM_THREADS": str(len(cores))}
    if gpus and len(gpus) >= count:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index - 1]
    elif not gpus and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
    return env


def start_workers(argv: list[str], count: int) -> list[subprocess.Popen]:
    """Start ``count`` workers, copies of ``compare argv`` (without ``--workers``), each on its cores;
    each dies with this process."""
    from ..sampling.server_launch import _death_signal

    if not claims_enabled():
        raise RecipeError("--workers: not under accelerate launch (each launched rank runs every piece); "
                          "run compare with --workers in a plain process")
    shares, gpus = core_shares(count), visible_gpus()
    if len(shares[0]) > len(os.sched_getaffinity(0)) // count:
        print(f"compare: {count} workers on {len(shares[0])} core(s): they share the cores", flush=True)
    workers = []
    for index in range(1, count + 1):
        env = {**os.environ, **worker_environment(index, count, shares[index - 1], gpus)}
        death, cores = _death_signal(), set(shares[index - 1])

        def place(death=death, cores=cores) -> None:  # in the child, before it runs
            os.sched_setaffinity(0, cores)
            if death is not None:
                death()

        command = [sys.executable, "-m", "trl_reasoning", "compare", *without_workers_flag(argv)]
        workers.append(subprocess.Popen(command, env=env, preexec_fn=place))
    return workers


def wait_for(workers: list[subprocess.Popen]) -> list[str]:
    """Wait until every worker exits; a line for each that failed (its own error is printed above)."""
    codes = [w.wait() for w in workers]
    return [f"worker {i} exited with code {code}" for i, code in enumerate(codes, start=1) if code != 0]


def without_workers_flag(argv: list[str]) -> list[str]:
    """``argv`` without ``--workers N`` / ``--workers=N`` (each copy is one worker)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--workers":
            skip = True
        elif not token.startswith("--workers="):
            out.append(token)
    return out
