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
    ``fn`` (one pickle can name) runs in one long-lived child (``_Worker``), forked once per process and
    again after a call it was stopped in, under a CPU-time timer of exactly ``seconds``: a fresh child per
    LaTeX comparison cost ten times the comparison in a warm one (benchmarks/latex_check_speed.py).
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


NOT_RUN = "not run"  # the child's answer to a request it could not unpickle


class _Worker:
    """The long-lived child of this process that runs time-limited calls one at a time.

    Each call runs under a CPU-time timer of exactly its limit (``ITIMER_PROF``, default action: the
    child dies), so a call that runs past it kills the child; the parent reads end-of-file, answers
    ``None`` and forks a new child at the next call. A call that waits past ``WALL_FACTOR`` times its
    limit is given up on and its child killed, and so is a call the caller interrupts (a signal, an
    exception), so no answer is ever read for another call. A request the child cannot unpickle, or
    arguments pickle cannot send, run in a child of their own instead.

    The child is forked from the process at its first call and sees the modules' state as it was then
    (math-verify warmed up; a later monkeypatch does not reach it). It shares the parent's memory
    copy-on-write: pages the parent rewrites later (weights a CPU run trains) are duplicated in it.
    One owner process per child: a process forked from the owner (a DataLoader worker) makes its own."""

    def __init__(self):
        self._lock = threading.Lock()
        self._owner = self._pid = self._conn = None

    def call(self, fn, args: tuple, seconds: float) -> bool | None:
        try:
            request = pickle.dumps((fn, args, seconds))
        except Exception:  # noqa: BLE001 - arguments pickle cannot send run in a child of their own
            return _call_in_fresh_child(fn, args, seconds)
        with self._lock:
            try:
                reply = self._exchange(request, seconds)
            except BaseException:  # interrupted: the child's answer must not reach the next call
                self._stop()
                raise
        return _call_in_fresh_child(fn, args, seconds) if reply == NOT_RUN else reply

    def _exchange(self, request: bytes, seconds: float):
        for _ in range(2):  # a child that died between calls (OOM killer, a signal) is replaced once
            if self._owner != os.getpid():
                self._start()
            try:
                self._conn.send_bytes(request)
            except OSError:
                self._stop()
                continue
            try:
                if self._conn.poll(seconds * WALL_FACTOR):
                    return self._conn.recv()
            except (EOFError, OSError):
                pass  # the child died at its CPU limit
            self._stop()
            return None
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
        if self._pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        self._conn.close()
        self._owner = self._pid = self._conn = None


def _serve(conn) -> None:
    """The long-lived child's loop: each request under a CPU-time timer of its own limit."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(signal.SIGPROF, signal.SIG_DFL)  # the timer's signal ends the child, whatever
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGPROF})  # the parent had set up
        keep = conn.fileno()  # descriptors the parent held (sockets, pipes) are not the child's to keep
        os.closerange(3, keep)
        os.closerange(keep + 1, 65536)
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                break  # the owner went away
            try:
                fn, args, seconds = pickle.loads(data)
            except Exception:  # noqa: BLE001 - e.g. a function defined after the fork
                conn.send(NOT_RUN)
                continue
            signal.setitimer(signal.ITIMER_PROF, max(seconds, 1e-3))
            try:
                verdict = bool(fn(*args))
            except Exception:  # noqa: BLE001 - an error is a "no", as in a fresh child
                verdict = False
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
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
