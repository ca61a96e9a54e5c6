"""Hard time limits around checks that can hang (sympy inside math-verify can loop in C code)."""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import threading
from collections.abc import Callable


def call_with_time_limit(fn: Callable[..., bool], args: tuple, seconds: float) -> bool | None:
    """Run a boolean ``fn(*args)`` with a hard time limit; ``None`` on timeout, ``False`` on error.

    On POSIX the call runs in a forked child limited to ``seconds`` of CPU time (``RLIMIT_CPU``, whole
    seconds, rounded up): the kernel stops it there, also inside C code, and the verdict does not depend
    on how loaded the machine is (a wall-clock limit made equal expressions "not equal" on a busy
    machine). The parent also stops waiting after ``WALL_FACTOR`` times that in wall time. A module-level
    ``fn`` (one pickle can name) runs in one long-lived child, forked once per process and again after
    a call it was stopped in: forking a process that holds a model costs ~40 ms, the check itself ~1 ms.
    Other callables get a child of their own per call. Elsewhere a daemon thread is used: the caller
    still gets its answer on time when the work releases the GIL.
    """
    if not hasattr(os, "fork"):
        return _call_in_thread(fn, args, seconds)
    if _by_reference(fn):
        return _WORKER.call(fn, args, seconds)
    return _call_in_fresh_child(fn, args, seconds)


def _call_in_fresh_child(fn: Callable[..., bool], args: tuple, seconds: float) -> bool | None:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compute, write one byte, exit without running the parent's atexit hooks
        try:
            os.close(read_fd)
            _limit_cpu(seconds)
            try:
                verdict = b"1" if fn(*args) else b"0"
            except Exception:  # noqa: BLE001 - an error is a "no", a kill at the limit is silence
                verdict = b"0"
            os.write(write_fd, verdict)
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], seconds * WALL_FACTOR)
        data = os.read(read_fd, 1) if ready else None
    finally:
        os.close(read_fd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return None if not data else data == b"1"  # nothing written: stopped at the CPU limit


WALL_FACTOR = 30  # a child that waits for the CPU longer than this is given up on all the same


def _by_reference(fn) -> bool:
    """Whether pickle sends ``fn`` by name (a module-level function), so the long-lived child can run it."""
    try:
        return pickle.loads(pickle.dumps(fn)) is fn
    except (pickle.PicklingError, AttributeError, TypeError):
        return False


class _Worker:
    """The long-lived child of this process that runs time-limited calls one at a time.

    Before each call it moves its own soft ``RLIMIT_CPU`` to the CPU time it has used plus the call's
    limit (rounded up to whole seconds, as for a fresh child), so a call that runs past its limit gets
    SIGXCPU and the child dies; the parent reads end-of-file, answers ``None`` and forks a new child at
    the next call. A call that waits past ``WALL_FACTOR`` times its limit is given up on and its child
    killed. One owner process per child: a process forked from the owner (a DataLoader worker) makes
    its own."""

    def __init__(self):
        self._lock = threading.Lock()
        self._owner = self._pid = self._conn = None

    def call(self, fn, args: tuple, seconds: float) -> bool | None:
        with self._lock:
            if self._owner != os.getpid():
                self._start()
            try:
                self._conn.send((fn, args, seconds))
                if self._conn.poll(seconds * WALL_FACTOR):
                    return self._conn.recv()
            except (EOFError, OSError):
                pass  # the child died at its CPU limit
            self._stop()
            return None

    def _start(self) -> None:
        from multiprocessing import Pipe

        parent, child = Pipe()
        pid = os.fork()
        if pid == 0:
            parent.close()
            _serve(child)  # never returns
        child.close()
        self._owner, self._pid, self._conn = os.getpid(), pid, parent

    def forget(self) -> None:
        """In a forked child: the owner's child, pipe and lock are not this process's (the lock may have
        been held by another thread at the fork)."""
        self._lock = threading.Lock()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()  # this copy only: the owner's child still sees its owner's end
        self._owner = self._pid = self._conn = None

    def _stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        self._conn.close()
        self._owner = self._pid = self._conn = None


def _serve(conn) -> None:
    """The long-lived child's loop: each request under a CPU limit counted from what it used so far."""
    import math
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]  # only the soft limit moves (lowering the
        while True:                                          # hard one could not be undone)
            try:
                fn, args, seconds = conn.recv()
            except (EOFError, OSError):
                break  # the owner went away
            usage = resource.getrusage(resource.RUSAGE_SELF)
            soft = math.ceil(usage.ru_utime + usage.ru_stime + max(seconds, 1e-3))
            resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else
                                                     min(soft, hard), hard))
            try:
                verdict = bool(fn(*args))
            except Exception:  # noqa: BLE001 - an error is a "no", as in a fresh child
                verdict = False
            conn.send(verdict)
    finally:
        os._exit(0)


_WORKER = _Worker()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WORKER.forget)


def _limit_cpu(seconds: float) -> None:
    import math
    import resource

    limit = max(1, math.ceil(seconds))  # a forked child's CPU time starts at 0
    resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU's default action would write a core file


def _call_in_thread(fn: Callable[..., bool], args: tuple, seconds: float) -> bool | None:
    box: list[bool] = []
    worker = threading.Thread(target=lambda: box.append(bool(fn(*args))), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        return None
    return box[0] if box else False
