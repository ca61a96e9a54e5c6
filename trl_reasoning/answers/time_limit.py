"""Hard time limits around checks that can hang (sympy inside math-verify can loop in C code)."""

from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Callable


def call_with_time_limit(fn: Callable[..., bool], args: tuple, seconds: float) -> bool | None:
    """Run a boolean ``fn(*args)`` with a hard time limit; ``None`` on timeout, ``False`` on error.

    On POSIX the call runs in a forked child limited to ``seconds`` of CPU time (``RLIMIT_CPU``, whole
    seconds, rounded up): the kernel stops it there, also inside C code, and the verdict does not depend
    on how loaded the machine is (a wall-clock limit made equal expressions "not equal" on a busy
    machine). The parent also stops waiting after ``WALL_FACTOR`` times that in wall time. Elsewhere a
    daemon thread is used: the caller still gets its answer on time when the work releases the GIL.
    """
    if not hasattr(os, "fork"):
        return _call_in_thread(fn, args, seconds)
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
