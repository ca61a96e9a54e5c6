"""Dense step rewards without a learned model (Havrilla et al., 2024, section 3.2's heuristic).

A step "matches" when it writes an equation that holds (``a op b = c``, every link of a chain checked,
``answers.equations``) and the number it computes (what follows its last ``=``) equals one of the
reference solution's intermediate results: GSM8K's calculator annotations (``<<48/2=24>>``) when the reference
still has them, else each reference step's own result (the arithmetic task's ``7 + 5 = 12`` lines,
GSM8K solutions with annotations stripped).

As a PPO reward it must not be farmable: each reference intermediate is credited once, on the first
step that computes it, with ``1 / (number of reference intermediates)``, so the whole dense return is
at most 1; repeated lines, extra steps and the ``#### N`` answer line earn nothing (the answer is the
sparse reward's job). ``heuristic_step_scores`` keeps the plain per-step match (0 or 1, the answer
line matching the reference answer) for return-conditioned RL's step tags.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from ..answers.equations import equation_chains, equations_hold
from ..rewards import completion_text
from ..steps import DEFAULT_DELIMITER, split_steps
from ..tasks.gsm8k import calculator_results
from ..verifiers import parse_number, reference_answer


def step_result(step_text: str) -> Fraction | None:
    """The number a step computes: the first number after its last ``=`` (or ``####``), else None."""
    marker = "####" if "####" in step_text else "=" if "=" in step_text else None
    if marker is None:
        return None
    return parse_number(step_text.rsplit(marker, 1)[-1])


def _is_answer_line(step_text: str) -> bool:
    return "####" in step_text


# Units and currency around numbers, so GSM8K's "$20/hour * 35 hours = $700" reads as "20 * 35 = 700"
# ("x" before a number stays: it is a multiplication sign there).
_UNIT_RE = re.compile(r"(?<=\d)(?:\s*/?\s*(?!x\s*[\d.(])[A-Za-z]+)+")
_TIMES_RE = re.compile(r"(?<=\d)\s*x\s*(?=[\d.(])")  # "10x6", "30 x .25": a multiplication
_CURRENCY_RE = re.compile(r"[$€£¥]")
_PERCENT_RE = re.compile(r"(\d)\s*%")
_DASHES_RE = re.compile(r"[−–]")  # Unicode minus and en dash, as GSM8K writes them


def as_arithmetic(step_text: str) -> str:
    """``step_text`` with currency signs and the unit words after numbers taken out, ``N%`` as ``N/100``
    and Unicode minus signs as ``-``: what the equation reader can check."""
    text = _PERCENT_RE.sub(r"\1/100", _DASHES_RE.sub("-", _CURRENCY_RE.sub("", step_text)))
    return _UNIT_RE.sub("", _TIMES_RE.sub(" * ", text))


def credited_result(step_text: str) -> Fraction | None:
    """A working step's result when the step earns credit: it writes at least one equation and every one
    it writes holds (a bare ``= 12``, ``x = 12`` or a false ``3 + 4 = 12`` computes nothing), else None."""
    arithmetic = as_arithmetic(step_text)
    if not equation_chains(arithmetic) or not equations_hold(arithmetic):
        return None
    return step_result(step_text)


def reference_intermediates(solution: str, delimiter: str = DEFAULT_DELIMITER) -> set[Fraction]:
    """Every intermediate result of a reference solution (its ``#### N`` line left out)."""
    results = {parse_number(r) for r in calculator_results(solution)}
    results |= {step_result(s.text) for s in split_steps(solution, delimiter) if not _is_answer_line(s.text)}
    results.discard(None)
    return results


def _reference_final(solution: str) -> Fraction | None:
    final = reference_answer(solution, "gsm8k") if "####" in solution else None
    return parse_number(final) if final is not None else None


def heuristic_step_scores(completion: str, solution: str, delimiter: str = DEFAULT_DELIMITER) -> list[float]:
    """1.0 for each step whose equations hold and whose result is a reference intermediate (the answer line:
    the reference's
    final answer), else 0.0: the per-step quality that RCRL's dense tags threshold."""
    wanted, final = reference_intermediates(solution, delimiter), _reference_final(solution)
    scores = []
    for step in split_steps(completion, delimiter):
        answer_line = _is_answer_line(step.text)
        result = step_result(step.text) if answer_line else credited_result(step.text)
        hit = result == final if answer_line else result in wanted
        scores.append(float(result is not None and hit))
    return scores


def heuristic_step_rewards(completion: str, solution: str, delimiter: str = DEFAULT_DELIMITER) -> list[float]:
    """Credit-once dense rewards: ``1 / len(intermediates)`` on the first step computing each reference
    intermediate, 0 elsewhere (answer line included); they sum to at most 1."""
    wanted = reference_intermediates(solution, delimiter)
    rewards, claimed = [], set()
    for step in split_steps(completion, delimiter):
        result = None if _is_answer_line(step.text) else credited_result(step.text)
        earned = result in wanted and result not in claimed
        if earned:
            claimed.add(result)
        rewards.append(1.0 / len(wanted) if earned else 0.0)
    return rewards


class HeuristicStepReward:
    """The heuristic as a TRL reward function and as a dense per-step reward provider.

    Reads the reference from the dataset's ``solution`` column. As a TRL ``reward_funcs`` entry it
    returns the completion's dense return (the sum of its credit-once step rewards, in [0, 1]).
    """

    __name__ = "heuristic_step_reward"

    def __init__(self, step_delimiter: str = DEFAULT_DELIMITER):
        self.step_delimiter = step_delimiter

    def step_rewards(
        self, prompts: Sequence, completions: Sequence, solution: Sequence[str], **_
    ) -> list[list[float]]:
        """PPO's dense rewards: one credit-once reward per step (``steps.split_steps`` order)."""
        return [
            heuristic_step_rewards(completion_text(c), s, self.step_delimiter)
            for c, s in zip(completions, solution, strict=True)
        ]

    def step_scores(
        self, prompts: Sequence, completions: Sequence, solution: Sequence[str], **_
    ) -> list[list[float]]:
        """Per-step match (0 or 1) for RCRL's dense tags."""
        return [
            heuristic_step_scores(completion_text(c), s, self.step_delimiter)
            for c, s in zip(completions, solution, strict=True)
        ]

    def __call__(
        self, prompts: Sequence, completions: Sequence, solution: Sequence[str], **kwargs
    ) -> list[float]:
        return [sum(r) for r in self.step_rewards(prompts, completions, solution)]
