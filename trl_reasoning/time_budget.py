"""A wall-clock budget for a training stage, as a ``transformers.TrainerCallback``: the way to compare
algorithms at equal wall time (Havrilla et al. compare at equal samples; on a fixed machine the cost
that matters is often time).

- In any ``Trainer`` (TRL's SFT, GRPO, our PPO and process GRPO) it stops training after the optimizer
  step that spends the budget, the way ``max_steps`` would. It is an ``ExportableState``: a run resumed
  from a checkpoint (with ``restore_callback_states_from_checkpoint``) counts the time spent before
  that checkpoint, and keeps the budget it started with, like transformers' ``EarlyStoppingCallback``.
- A rounds trainer (Expert Iteration, RCRL) starts a round only when the last round's time still fits
  in what is left (``round_fits``), so rounds stay whole (the time left over shows in the stage's wall
  time: small rounds waste less); a fine-tune that overruns all the same is stopped by the callback
  inside it. Round 0, the start's evaluation, is not counted.
- In a run of several processes every rank stops at the same step and round (``any_process``).

    trainer = GRPOTrainer(..., callbacks=[WallClockBudget(45 * 60)])
"""

from __future__ import annotations

import time

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


def _now() -> float:
    """The clock (a function of its own, so that tests replace it instead of waiting on it)."""
    return time.monotonic()


class WallClockBudget(TrainerCallback, ExportableState):
    """Stop training once ``seconds`` of wall time are spent.

    Args:
        seconds: the budget, in seconds of wall time from the first ``on_train_begin`` (or ``start()``).
        spent: seconds already spent before this process, by a run it resumes.
    """

    def __init__(self, seconds: float, spent: float = 0.0):
        if not seconds or seconds <= 0:
            raise ValueError(f"seconds: need a positive wall-clock budget, got {seconds!r}")
        self.seconds, self.spent = float(seconds), float(spent)
        self._started: float | None = None
        self.stopped = False  # whether the budget stopped a training loop

    def start(self) -> None:
        """Start the clock (once: inner trainers of a rounds loop do not restart it)."""
        if self._started is None:
            self._started = _now()

    def elapsed(self) -> float:
        """Seconds spent: before this process, then since ``start``."""
        return self.spent + (_now() - self._started if self._started is not None else 0.0)

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def fits(self, seconds: float) -> bool:
        """Whether ``seconds`` more still fit in the budget."""
        return seconds <= self.remaining()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start()
        # a checkpoint written without a budget has no entry for it, and transformers' next save looks
        # the entry up by name
        state.stateful_callbacks.setdefault(type(self).__name__, self.state())

    def on_step_end(self, args, state, control, **kwargs):
        if any_process(self.remaining() <= 0):  # every rank stops at the same step, or DDP/ZeRO hang
            control.should_training_stop = True
            self.stopped = True
        return control

    def state(self) -> dict:
        return {"args": {"seconds": self.seconds}, "attributes": {"spent": self.elapsed(),
                                                                   "stopped": self.stopped}}


def budget_in(callbacks) -> WallClockBudget | None:
    """The ``WallClockBudget`` among ``callbacks`` (None without one)."""
    return next((c for c in callbacks or [] if isinstance(c, WallClockBudget)), None)


def budget_record(callbacks) -> dict:
    """A stage record's entries for the budget among ``callbacks``: its seconds, the seconds its clock
    counted (``train_seconds``, resumes included) and whether it, rather than a count (rounds, epochs,
    steps), ended training; nothing without a budget."""
    budget = budget_in(callbacks)
    return {} if budget is None else {"time_budget_seconds": budget.seconds,
                                      "train_seconds": round(budget.elapsed(), 1),
                                      "stopped_by_time_budget": budget.stopped}


def round_seconds(record: dict) -> float:
    """A round record's recorded time (``seconds``: phase -> seconds, summed)."""
    return sum(record.get("seconds", {}).values())


def rounds_train_seconds(history: list[dict]) -> float:
    """The time a budget counts in a rounds run: its recorded rounds 1, 2, ... (round 0, the start's
    evaluation, trains nothing)."""
    return sum(round_seconds(r) for r in history[1:])


def any_process(flag: bool) -> bool:
    """``flag`` of any process of the run (a max over ranks; the flag itself in one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def round_fits(budget: WallClockBudget | None, history: list[dict]) -> bool:
    """Whether a rounds trainer starts its next round: always without a budget or before any round
    trained; else when the last round's recorded time still fits in what is left (on every process).
    ``history`` holds the round records (``seconds``: phase -> seconds). The clock starts at the first
    call, after round 0 (the start's evaluation, which trains nothing and is not counted, as an
    on-policy trainer's clock starts when its training begins); a resumed run counts the recorded time of its
    finished rounds 1, 2, ... as spent."""
    if budget is None:
        return True
    if budget._started is None:
        budget.spent += rounds_train_seconds(history)
        budget.start()
    last = round_seconds(history[-1]) if len(history) > 1 else 0.0
    if not any_process(not budget.fits(last)):
        return True
    budget.stopped = True
    return False
