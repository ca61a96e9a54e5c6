"""One run per output folder: a lock file taken atomically, released on exit, stale when its holder died.

``RunLock(folder)`` creates ``folder/.trl_reasoning.lock`` with ``O_CREAT | O_EXCL`` (atomic on local
file systems) holding the holder's pid, host and start time. A second run on the same folder stops at
once with one line naming the holder. A lock whose holder is gone (same host, pid no longer alive) is
stale and taken over, so a run killed by a crash or SIGKILL never blocks the rerun that resumes it.
Under ``accelerate launch`` only the main process takes the lock (the others share its folder).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".trl_reasoning.lock"


class RunLockError(RuntimeError):
    """Another live run holds the output folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """Context manager holding ``folder``'s lock for this process."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _stale(self, holder: dict) -> bool:
        if not holder:  # unreadable: a writer died between create and write
            return True
        return holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1)))

    def acquire(self) -> RunLock:
        """Take the lock (taking over a stale one), or raise ``RunLockError`` naming the live holder."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.parent.is_dir():
                raise NotADirectoryError(f"{self.path.parent} exists and is not a folder")
        except OSError as err:
            raise RunLockError(f"output_dir: cannot use {self.path.parent} as the run folder "
                               f"({err.strerror or err}); "
                               "choose a writable folder") from None
        record = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        )
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if not self._stale(holder):
                    raise RunLockError(
                        f"output_dir: {self.path.parent} is in use by another run (pid {holder.get('pid')} "
                        "on "
                        f"{holder.get('host')}, started {holder.get('started')}); wait for it to finish or "
                        f"choose another output_dir") from None
                self.path.unlink(missing_ok=True)  # stale: its holder is gone
                continue
            except OSError as err:
                raise RunLockError(f"output_dir: cannot write in {self.path.parent} ({err.strerror}); "
                                   "choose a "
                                   "writable folder") from None
            with os.fdopen(fd, "w") as handle:
                handle.write(record)
            self.held = True
            return self
        raise RunLockError(f"output_dir: could not take the lock {self.path}; another run took it first")

    def release(self) -> None:
        if self.held and self._holder().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
