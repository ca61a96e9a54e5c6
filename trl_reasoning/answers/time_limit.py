"""Hard time limits around checks that can hang (sympy inside math-verify can loop in C code)."""

from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Callable


def call_with_time_limit(fn: Callable[..., bool], args: tuple, seconds: float) -> bool | None:
    """Run a boolean ``fn(*args)`` with a hard time limit; ``None`` on timeout, ``False`` on error.

    On POSIX the call runs in a forked child that is killed at the limit, which also stops code stuck
    inside C. Elsewhere a daemon thread is used: the caller still gets its answer on time when the
    work releases the GIL.
    """
    if not hasattr(os, "fork"):
        return _call_in_thread(fn, args, seconds)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compute, write one byte, exit without running the parent's atexit hooks
        try:
            os.close(read_fd)
            os.write(write_fd, b"1" if fn(*args) else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], seconds)
        data = os.read(read_fd, 1) if ready else None
    finally:
        os.close(read_fd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return None if data is None else data == b"1"


def _call_in_thread(fn: Callable[..., bool], args: tuple, seconds: float) -> bool | None:
    box: list[bool] = []
    worker = threading.Thread(target=lambda: box.append(bool(fn(*args))), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        return None
    return box[0] if box else False
