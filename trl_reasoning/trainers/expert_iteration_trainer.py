"""Expert Iteration (Havrilla et al., 2024, section 3.1; Anthony et al., 2017).

Each round:

1. sample K solutions per training question from the current policy;
2. score them with the verifier (or the given TRL ``reward_funcs``; optionally also requiring every
   written equation to hold, ``check_equations``) and keep the correct ones,
   deduplicated (exact, then whitespace-normalised; ``deduplicate=False`` keeps them as drawn),
   optionally capped per question and joined by the reference solutions;
3. fine-tune with TRL's ``SFTTrainer`` (loss on the solution only) on the union of everything kept
   so far (deduplicated across rounds, the per-question cap applying to that union), either
   continuing from the last policy or restarting from the initial checkpoint (``reinit_each_round``);
4. evaluate on ``eval_dataset`` (maj@1 greedy, maj@k, pass@k) and record cumulative sample counts.

Round 0 evaluates the initial policy. Every round writes ``round_NNN/{samples,kept}.jsonl``, a
``checkpoint/`` and ``metrics.json`` (written last: it marks the round complete) atomically, so a
rerun of the same command resumes after the last complete round and reuses a crashed round's samples.

Deviations from the paper: K defaults to 4 (paper: 96) so CPU runs stay short; which model each
round starts from is a documented option (``reinit_each_round``, see its help), not a claim about the
paper; with PEFT, each round's adapter is merged into the policy.
"""

from __future__ import annotations

from ..faults import FAULT_ENV
from .rounds import RoundsTrainer
from .selection import normalise_solution, select_solutions

__all__ = ["FAULT_ENV", "ExpertIterationTrainer", "normalise_solution", "select_solutions"]


class ExpertIterationTrainer(RoundsTrainer):
    """Expert Iteration with TRL's trainer interface: keeps the verified-correct samples of each round.

    Args: those of ``RoundsTrainer`` (``model``, ``args`` an ``ExpertIterationConfig``, ``train_dataset``,
    ``eval_dataset``, ``processing_class``, ``reward_funcs``, ``peft_config``, ``callbacks``).
    """

    algorithm_name = "Expert Iteration"
    algorithm_tag = "expert-iteration"
    algorithm_summary = "sample, keep verified-correct solutions, fine-tune, repeat"

    def training_rows(self, samples: list[dict]) -> list[dict]:
        """New correct solutions, deduplicated against every earlier round (unless ``deduplicate`` is
        off), within the per-question cap."""
        return self._select(samples, only_correct=True)
