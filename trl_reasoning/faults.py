"""Test-only crash points: resume tests kill a run at a named point instead of racing it with a timer.

``TRL_REASONING_FAULT=samples_written:2`` exits right after round 2's samples are written (EI, RCRL);
``checkpoint_saved:1`` right after PPO's step-1 checkpoint; ``weights_saved:4`` in the middle of writing a
checkpoint (its weights written, its trainer state not). Every process exits, with status 75.
"""

from __future__ import annotations

import os

FAULT_ENV = "TRL_REASONING_FAULT"


def fault_point(name: str, state=None) -> None:
    """Exit when ``TRL_REASONING_FAULT`` names this point; with an accelerate ``state``, after every
    process has reached it (so what they wrote before is complete)."""
    if os.environ.get(FAULT_ENV) == name:
        if state is not None:
            state.wait_for_everyone()
        os._exit(75)
