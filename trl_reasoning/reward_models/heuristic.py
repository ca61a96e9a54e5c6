"""Dense step rewards without a learned model (Havrilla et al., 2024, section 3.2's heuristic).

A step earns reward 1 when the number it computes (what follows its last ``=``, or the ``#### N``
answer) equals one of the reference solution's intermediate results: GSM8K's calculator annotations
(``<<48/2=24>>``) when the reference still has them, else each reference step's own result (the
arithmetic task's ``7 + 5 = 12`` lines, GSM8K solutions with annotations stripped). Steps that
compute nothing, or something the reference never computes, earn 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from ..steps import DEFAULT_DELIMITER, split_steps
from ..tasks.gsm8k import calculator_results
from ..verifiers import completion_text, parse_number, reference_answer


def step_result(step_text: str) -> Fraction | None:
    """The number a step computes: the first number after its last ``=`` (or ``####``), else None."""
    marker = "####" if "####" in step_text else "=" if "=" in step_text else None
    if marker is None:
        return None
    return parse_number(step_text.rsplit(marker, 1)[-1])


def reference_intermediates(solution: str, delimiter: str = DEFAULT_DELIMITER) -> set[Fraction]:
    """Every intermediate result of a reference solution, and its final answer."""
    results = {parse_number(r) for r in calculator_results(solution)}
    results |= {step_result(step.text) for step in split_steps(solution, delimiter)}
    final = reference_answer(solution, "gsm8k") if "####" in solution else None
    if final is not None:
        results.add(parse_number(final))
    results.discard(None)
    return results


def heuristic_step_rewards(completion: str, solution: str, delimiter: str = DEFAULT_DELIMITER) -> list[float]:
    """1.0 for each step of ``completion`` whose result appears in ``solution``, else 0.0."""
    wanted = reference_intermediates(solution, delimiter)
    return [float(step_result(step.text) in wanted) for step in split_steps(completion, delimiter)]


class HeuristicStepReward:
    """The heuristic as a TRL reward function and as a dense per-step reward provider.

    Reads the reference from the dataset's ``solution`` column. As a TRL ``reward_funcs`` entry it
    returns the share of steps that earned reward (0.0 for an empty completion).
    """

    __name__ = "heuristic_step_reward"

    def __init__(self, step_delimiter: str = DEFAULT_DELIMITER):
        self.step_delimiter = step_delimiter

    def step_rewards(self, prompts: Sequence, completions: Sequence, solution: Sequence[str], **_) -> list[list[float]]:
        """One list per completion, one reward per step (``steps.split_steps`` order)."""
        return [
            heuristic_step_rewards(completion_text(c), s, self.step_delimiter)
            for c, s in zip(completions, solution, strict=True)
        ]

    def __call__(self, prompts: Sequence, completions: Sequence, solution: Sequence[str], **kwargs) -> list[float]:
        per_step = self.step_rewards(prompts, completions, solution)
        return [sum(r) / len(r) if r else 0.0 for r in per_step]
