"""Environment variables set for one block and restored after it (vLLM reads them at engine start,
accelerate's launcher copies them into the processes it starts), and this process's CPU cores split
between the processes it starts (vLLM servers, comparison workers)."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def environment_set(values: dict[str, str]):
    """Set ``values`` in ``os.environ`` inside the block; restore the previous values (or absence) after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def split_cores(count: int) -> list[list[int]] | None:
    """This process's CPU cores (its affinity) split into ``count`` disjoint, equal, consecutive shares
    (the remainder unused); None where there are fewer cores than ``count``."""
    cores = sorted(os.sched_getaffinity(0))
    per = len(cores) // count
    if per < 1:
        return None
    return [cores[i * per:(i + 1) * per] for i in range(count)]
