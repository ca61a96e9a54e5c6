"""Environment variables set for one block and restored after it (vLLM reads them at engine start,
accelerate's launcher copies them into the processes it starts)."""

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
