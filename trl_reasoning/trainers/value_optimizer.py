"""How PPO's separate value model is stepped: the way the Trainer steps the policy.

Its micro-batch losses are divided by the number of accumulation steps and their gradients summed; once
per optimizer step of the policy (every ``gradient_accumulation_steps`` micro-batches) the gradients are
averaged over processes that no wrapper syncs, clipped to ``value_max_grad_norm``, and AdamW steps under
a learning-rate schedule of the policy's kind (``lr_scheduler_type``, warm-up) over the run's steps at
``value_learning_rate``. Before this, the value model stepped on every micro-batch, unclipped, at a
constant rate.
"""

from __future__ import annotations

import torch

from ..distributed import average_gradients


class ValueOptimizer:
    """AdamW + schedule + clipping + accumulation for the separate value model.

    Args:
        model: the (prepared) value model.
        args: the ``PPOConfig`` (value_learning_rate, value_max_grad_norm, lr_scheduler_type, warmup).
        num_processes: processes whose gradients are averaged when no DDP wrapper does it.
    """

    def __init__(self, model, args, num_processes: int = 1):
        self.model, self.args, self.num_processes = model, args, num_processes
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                           lr=args.value_learning_rate)
        self.scheduler, self._pending = None, None  # pending: a checkpoint's schedule, for start()
        self.micro_batches = 0  # since the last step
        self.steps, self.last_grad_norm = 0, None

    def start(self, num_training_steps: int) -> None:
        """Build the schedule once the run's number of optimizer steps is known (``state.max_steps``)."""
        from transformers import get_scheduler

        if self.scheduler is None:
            self.scheduler = get_scheduler(
                self.args.lr_scheduler_type, self.optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                scheduler_specific_kwargs=self.args.lr_scheduler_kwargs or {},
            )
            if self._pending is not None:  # a resumed run: the schedule where the checkpoint left it
                self.scheduler.load_state_dict(self._pending)
                rates = self.scheduler.get_last_lr()  # building the schedule reset the rate to step 0's
                for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
                    group["lr"] = rate
                self._pending = None

    def backward(self, loss: torch.Tensor, accumulation_steps: int) -> bool:
        """Add one micro-batch's gradient; step when ``accumulation_steps`` have been added. Returns
        whether it stepped."""
        (loss / accumulation_steps).backward()
        self.micro_batches += 1
        if self.micro_batches < accumulation_steps:
            return False
        if not isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            average_gradients(self.model, self.num_processes)  # DeepSpeed: a replica per process
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.args.value_max_grad_norm and params:
            self.last_grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.args.value_max_grad_norm))
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.micro_batches, self.steps = 0, self.steps + 1
        return True

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "steps": self.steps,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint's optimizer; its schedule is restored when ``start`` builds it."""
        if "param_groups" in state:  # a checkpoint from before the schedule: AdamW's state alone
            state = {"optimizer": state}
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps, self._pending = state.get("steps", 0), state.get("scheduler")
