"""Property-based fuzzing of the verifiers and reward functions: arbitrary text, answer-like text and
mutated solutions never raise, return quickly, and a completion that never states the reference's
value never earns a reward."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trl_reasoning.reward_models.heuristic import HeuristicStepReward
from trl_reasoning.rewards import make_correctness_reward
from trl_reasoning.verifiers import equations_hold, extract_answer, is_correct

# generous per-example bound: a regex blow-up would take minutes, a loaded machine adds seconds at most
FUZZ = settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
NUMERIC = ("gsm8k", "svamp", "arithmetic")
PIECES = ["#### ", "The answer is ", "\\boxed{", "}", " or ", " and ", ", ", "\n", " = ", " + ", " - ", " * ",
          "$", "%", ".", " apples", "either ", "-", "1,000", "3.5", "\\frac{1}{2}"]

answer_like = st.lists(
    st.one_of(st.sampled_from(PIECES), st.integers(-1000, 10**6).map(str), st.text(max_size=5)), max_size=30
).map("".join)


def _mutations(text: str):
    """Strategies for edits of a correct solution: insert, delete or replace one stretch."""
    return st.tuples(st.integers(0, len(text)), st.integers(0, 5), st.text(max_size=8)).map(
        lambda edit: text[:edit[0]] + edit[2] + text[edit[0] + edit[1]:])


SOLUTION = "Ann has 3 + 4 = 7 apples.\nShe gives 2 away: 7 - 2 = 5\n#### 5"


@FUZZ
@given(
    text=st.one_of(st.text(max_size=300), answer_like, _mutations(SOLUTION)),
    reference=st.sampled_from(["5", "7", "1000"]),
)
def test_verifiers_and_rewards_never_raise(text, reference):
    for task in NUMERIC:
        for mode in ("strict", "flexible"):
            assert extract_answer(text, task, mode) is None or isinstance(
                extract_answer(text, task, mode), str
            )
            assert isinstance(is_correct(text, reference, task, mode), bool)
    assert isinstance(equations_hold(text), bool)
    assert make_correctness_reward("gsm8k", "flexible")([text], answer=[reference]) in ([0.0], [1.0])
    dense = HeuristicStepReward()
    assert 0.0 <= dense(["q"], [text], solution=[SOLUTION])[0] <= 1.0


separators = st.sampled_from(
    [
        " ",
        " or ",
        " and ",
        "\n",
        "#### ",
        "The answer is ",
        ". ",
        " = ",
        " + ",
        " apples ",
        "\\boxed{",
        "} ",
        "either ",
    ]
)


def _near_misses(numbers: list[int]) -> list[int]:
    """Values a faulty reader could make out of ``numbers``: two neighbours joined ("4 5" -> 45), summed,
    or a number off by one; the property draws its reference among them."""
    pairs = list(zip(numbers, numbers[1:], strict=False))
    return [int(f"{a}{b}") for a, b in pairs] + [a + b for a, b in pairs] + [n + 1 for n in numbers]


@FUZZ
@given(parts=st.lists(st.tuples(st.integers(0, 99), separators), min_size=1, max_size=12), data=st.data())
def test_a_completion_that_never_states_the_reference_earns_nothing(parts, data):
    """The reference is one the text could be misread as (two of its numbers joined or summed, one off
    by one, or any number of the same range), and the text leaves it out, so no mode may reward it.
    (The same harness rewards it once stated: ``test_the_same_harness_rewards_the_stated_reference``.)"""
    reference = data.draw(st.one_of(st.sampled_from(_near_misses([n for n, _ in parts])), st.integers(0, 99)))
    text = "".join(f"{number}{separator}" for number, separator in parts if number != reference)
    for mode in ("strict", "flexible"):
        assert make_correctness_reward("gsm8k", mode)([text], answer=[str(reference)]) == [0.0]
        assert not is_correct(text, str(reference), "arithmetic", mode)


@FUZZ
@given(reference=st.integers(0, 99),
       parts=st.lists(st.tuples(st.integers(0, 99), separators), max_size=12))
def test_the_same_harness_rewards_the_stated_reference(reference, parts):
    """Working text of other numbers (no answer statement among it) then ``#### reference``: right in
    both modes, so the property above is not vacuous."""
    working = "".join(f"{n}{sep}" for n, sep in parts if n != reference and not _states(sep))
    text = working.replace("####", "").rstrip() + f"\n#### {reference}"
    for mode in ("strict", "flexible"):
        assert make_correctness_reward("gsm8k", mode)([text], answer=[str(reference)]) == [1.0], text


def _states(separator: str) -> bool:
    return any(marker in separator for marker in ("####", "answer is", "boxed"))
