"""Fuzz the verifiers at scale: N generated completions per task kind, with answer-statement mutations,
checked against an oracle that does not use the library's number reader.

Each completion is built from working text and answer statements (``#### N``, ``The answer is N``,
``\\boxed{N}``), mutated the ways a policy farms or a reader slips: a statement duplicated, two
statements of different values in either order, hedged (``7 or 8``, ``either 7 or 8``, ``7, or perhaps
8``), digits spaced (``1 2``), Unicode digits (Arabic-Indic, fullwidth, Devanagari) and minus signs,
thousands separators, decimals and fractions that equal an integer. The reference is drawn among the
values a faulty reader could make of the text (neighbours joined or summed, off by one, sign flipped)
or at random.

For every completion the oracle decides whether it *states* the reference: it normalises digits and
minus signs itself and reads every number several ways (thousands commas dropped, commas as separators,
``a/b`` divided, each digit run alone); a completion stays "unstated" only if no reading gives the
reference's magnitude. Digits spaced apart (``1 2``) write two numbers, so a reader that joins them is
caught. Counted:

* crashes (any exception from ``extract_answer``, ``is_correct``, the correctness reward, the equation
  check or the heuristic step reward);
* time-limit hits: numeric, a check over ``--limit`` seconds of CPU time (waiting for a shared core does
  not count); LaTeX, a math-verify comparison stopped at the verifier's own CPU limit (it answers
  ``None``), its slowest check's wall time beside it;
* wrong rewards: an unstated completion that earns anything, in either mode, for any numeric task;
* hedges rewarded: a completion stating two different final answers, the reference one of them (n/4 of
  them), that earns anything;
* as a control, how many completions that state the reference once (and nothing else) earn 1;
* long repetitive completions near the size limit (n/500 of them): the slowest check's CPU seconds.

It exits with status 1 on any crash, wrong reward, rewarded hedge, missed control or LaTeX check stopped
at its time limit.

    python benchmarks/verifier_fuzz.py [--n 100000] [--math-n 100000] [--seed 0]

The last line is one JSON object with the counts and seconds per kind.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
import unicodedata
from fractions import Fraction

from trl_reasoning.reward_models.heuristic import HeuristicStepReward
from trl_reasoning.rewards import make_correctness_reward
from trl_reasoning.verifiers import equations_hold, extract_answer, is_correct

NUMERIC = ("gsm8k", "svamp", "arithmetic")
DIGIT_SETS = ("0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९")
MINUSES = ("-", "−", "–")
FILLER = ["Ann has", "apples", "so", "then", "She gives", "away.", "In total", "=", "+", "-", "*", "\n",
          ", ", ". ", "and", "or", "$", "%", "each", "Step 1:", "(", ")"]
STATEMENTS = ["#### {}", "The answer is {}", "The answer is {}.", "\\boxed{{{}}}", "the answer is: {}",
              "Answer: {}"]
HEDGES = ["{} or {}", "either {} or {}", "{}, or perhaps {}", "{} so maybe {}", "{} and {}"]


def written(value: int, rng: random.Random) -> str:
    """``value`` written one of the ways a completion may write a number."""
    digits = str(abs(value))
    style = rng.random()
    if style < 0.15 and abs(value) >= 1000:
        digits = f"{abs(value):,}"
    elif style < 0.25:
        digits = digits + "." + "0" * rng.randint(1, 2)
    elif style < 0.32 and value != 0:
        factor = rng.randint(2, 4)
        digits = f"{abs(value) * factor}/{factor}"
    elif style < 0.45:
        table = DIGIT_SETS[rng.randrange(1, len(DIGIT_SETS))]
        digits = "".join(table[int(c)] if c.isdigit() else c for c in digits)
    sign = rng.choice(MINUSES) if value < 0 else ""
    return sign + digits


def near_misses(values: list[int]) -> list[int]:
    pairs = list(zip(values, values[1:], strict=False))
    return ([int(f"{abs(a)}{abs(b)}") for a, b in pairs] + [a + b for a, b in pairs]
            + [v + d for v in values for d in (-1, 1)] + [-v for v in values])


def completion(rng: random.Random) -> tuple[str, int]:
    """A generated completion and a reference to check it against."""
    values = [rng.choice([rng.randint(0, 20), rng.randint(0, 9999), -rng.randint(1, 99)])
              for _ in range(rng.randint(1, 8))]
    parts, traps = [], []
    for value in values:
        kind = rng.random()
        if kind < 0.45:
            parts.append(rng.choice(FILLER))
            parts.append(written(value, rng))
        elif kind < 0.7:
            parts.append(rng.choice(STATEMENTS).format(written(value, rng)))
        elif kind < 0.85:
            other = rng.choice(values)
            parts.append(rng.choice(HEDGES).format(written(value, rng), written(other, rng)))
        elif kind < 0.93:  # a statement duplicated
            statement = rng.choice(STATEMENTS).format(written(value, rng))
            parts += [statement, "\n", statement]
        else:  # digits spaced apart: a reader that joins them would read the value itself
            spaced = " ".join(str(abs(value)))
            parts.append(rng.choice(["{}", *STATEMENTS]).format(spaced))
            traps.append(abs(value))
        parts.append(rng.choice([" ", "\n", ". ", ", "]))
    reference = rng.choice(near_misses(values) + traps * 4 + [rng.randint(-99, 9999)])
    return "".join(parts), reference


def hedged(rng: random.Random) -> tuple[str, int]:
    """A completion that states two different final answers, the reference among them: ambiguous."""
    a, b = rng.sample(range(0, 200), 2)
    first, second = rng.choice(STATEMENTS), rng.choice(STATEMENTS)
    text = rng.choice([
        first.format(written(a, rng)) + rng.choice([" ", ". ", "\n", " so "])
        + second.format(written(b, rng)),
        "The answer is " + rng.choice(HEDGES).format(written(a, rng), written(b, rng)),
        # a whole statement, then an alternative after it ("and 8" after a sentence end is not one:
        # "The answer is 7. And 3 + 4 = 7" is honest)
        f"{rng.choice(FILLER)} {a} {rng.choice(FILLER)}\n" + rng.choice(HEDGES[:-1]).format(
            first.format(written(a, rng)), written(b, rng)),
    ])
    return text, rng.choice([a, b])


def _normalised(text: str) -> str:
    out = []
    for ch in text:
        if ch.isdigit() and unicodedata.decimal(ch, None) is not None:
            out.append(str(unicodedata.decimal(ch)))
        elif ch in MINUSES:
            out.append("-")
        else:
            out.append(ch)
    return "".join(out)


def stated_magnitudes(text: str) -> set[Fraction]:
    """Every magnitude any reasonable reader could take ``text`` to write (a superset on purpose)."""
    text = _normalised(text)
    values = set()
    thousands = re.sub(r"\d{1,3}(?:,\d{3})+", lambda m: m.group().replace(",", ""), text)
    for reading in (text, thousands):  # digits spaced apart ("1 2") write two numbers, not 12
        for m in re.finditer(r"\d+(?:\.\d+)?(?:\s?/\s?\d+)?", reading):
            token = m.group().replace(" ", "")
            num, _, den = token.partition("/")
            values.add(abs(Fraction(num)))
            values.add(abs(Fraction(num) / int(den)) if den and int(den) else abs(Fraction(num)))
            values.update(abs(Fraction(d)) for d in re.findall(r"\d+", token))
    return values


def check_numeric(n: int, seed: int, limit: float) -> dict:
    rng, counts = random.Random(seed), {"inputs": n, "unstated": 0, "crashes": 0, "time_limit_hits": 0,
                                        "wrong_rewards": 0, "control": 0, "control_right": 0}
    rewards = {mode: make_correctness_reward("gsm8k", mode) for mode in ("strict", "flexible")}
    dense, examples = HeuristicStepReward(), []
    start = time.perf_counter()
    for _ in range(n):
        text, reference = completion(rng)
        begin = time.process_time()  # CPU seconds: the numeric checks run in this process
        try:
            unstated = abs(Fraction(reference)) not in stated_magnitudes(text)
            earned = [is_correct(text, str(reference), task, mode) for task in NUMERIC
                      for mode in ("strict", "flexible")]
            earned += [rewards[mode]([text], answer=[str(reference)])[0] > 0 for mode in rewards]
            extract_answer(text, "gsm8k", "flexible")
            equations_hold(text)
            dense(["q"], [text], solution=["3 + 4 = 7\n#### 7"])
        except Exception as err:  # noqa: BLE001 - counting every crash is the point
            counts["crashes"] += 1
            examples.append(f"crash {type(err).__name__}: {text!r}")
            continue
        counts["time_limit_hits"] += time.process_time() - begin > limit
        if unstated:
            counts["unstated"] += 1
            if any(earned):
                counts["wrong_rewards"] += 1
                examples.append(f"rewarded without stating {reference}: {text!r}")
            control = re.sub(r"####|answer|boxed|Answer", "", text) + f"\n#### {reference}"
            counts["control"] += 1
            counts["control_right"] += all(is_correct(control, str(reference), task, mode)
                                           for task in NUMERIC for mode in ("strict", "flexible"))
    _check_hedges(rng, n, counts, examples)
    _check_long(rng, max(n // 500, 1), limit, counts, examples)
    counts["seconds"] = round(time.perf_counter() - start, 1)
    counts["examples"] = examples[:5]
    return counts


def _check_hedges(rng: random.Random, n: int, counts: dict, examples: list) -> None:
    """Two disagreeing final answers, one of them the reference: nothing may be earned."""
    counts["hedged"], counts["hedged_rewarded"] = n // 4, 0
    for _ in range(n // 4):
        text, reference = hedged(rng)
        if any(is_correct(text, str(reference), task, mode) for task in NUMERIC
               for mode in ("strict", "flexible")):
            counts["hedged_rewarded"] += 1
            examples.append(f"rewarded a hedge with {reference}: {text!r}")


def _check_long(rng: random.Random, n: int, limit: float, counts: dict, examples: list) -> None:
    """Long repetitive completions near the size limit (a regex that backtracks or rescans the rest of
    the text per statement shows here): each check must stay under ``limit`` seconds."""
    units = ["#### 1 ", "The answer is 1 ", "\\boxed{1} or ", "answer is ", " ", "\n", "1 ", "- ", "1,",
             "Answer: ", "3 + 4 = 7 ", "(", "{"]
    counts["long"], slowest = n, 0.0
    for _ in range(n):
        unit = "".join(rng.sample(units, rng.randint(1, 3)))
        text = (unit * (30_000 // len(unit) + 1))[:rng.randint(20_000, 32_000)]
        begin = time.process_time()
        for mode in ("strict", "flexible"):
            is_correct(text, "1", "gsm8k", mode)
        spent = time.process_time() - begin
        slowest = max(slowest, spent)
        if spent > limit:
            counts["time_limit_hits"] += 1
            examples.append(f"{spent:.1f} s on {len(text)} characters of {unit!r}")
    counts["long_slowest_s"] = round(slowest, 3)


def check_math(n: int, seed: int) -> dict:
    """LaTeX answers: no crash, bounded time, and a boxed integer other than the reference earns 0.

    A time-limit hit is a math-verify comparison the limited call stopped (it answers ``None``: its CPU
    limit, its wall guard of 30 times that, or a dead worker), counted by wrapping the call the LaTeX
    module makes; wall time is reported apart (the slowest check), since a check that waits for a shared
    core is not one the limit stopped."""
    from trl_reasoning.answers import latex

    rng, stopped = random.Random(seed), []
    counts = {"inputs": n, "crashes": 0, "time_limit_hits": 0, "unstated": 0, "wrong_rewards": 0}
    limited = latex.call_with_time_limit

    def counting(fn, args, seconds):
        verdict = limited(fn, args, seconds)
        if verdict is None:
            stopped.append(args)
        return verdict

    latex.call_with_time_limit = counting
    try:
        pieces = ["\\frac{1}{2}", "x^2", "\\sqrt{2}", "\\pi", "(x+1)^2", "\\{", "}", "{", "^", "_", "\\left(",
                  "\\right)", "2x", "\\infty", "\\cdot", "3", "-"]
        start, examples, slowest = time.perf_counter(), [], 0.0
        for _ in range(n):
            reference = rng.randint(0, 50)
            boxed = rng.choice([r for r in range(0, 60) if r != reference])
            body = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
            text = body + (f" so \\boxed{{{boxed}}}" if rng.random() < 0.5 else f"\\boxed{{{body}}}")
            begin = time.perf_counter()
            try:
                earned = is_correct(text, str(reference), "math", rng.choice(["strict", "flexible"]))
            except Exception as err:  # noqa: BLE001
                counts["crashes"] += 1
                examples.append(f"crash {type(err).__name__}: {text!r}")
                continue
            slowest = max(slowest, time.perf_counter() - begin)
            if "so \\boxed" in text:
                counts["unstated"] += 1
                counts["wrong_rewards"] += bool(earned)
    finally:
        latex.call_with_time_limit = limited
    counts["time_limit_hits"] = len(stopped)
    examples += [f"stopped (limit {latex.MATH_VERIFY_TIMEOUT_S} s of CPU): gold {gold!r}, answer {pred!r}"
                 for gold, pred in stopped]
    counts["slowest_check_s"] = round(slowest, 3)
    counts["seconds"] = round(time.perf_counter() - start, 1)
    counts["examples"] = examples[:5]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="numeric completions")
    parser.add_argument("--math-n", type=int, default=100_000, help="LaTeX completions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=float, default=1.0,
                        help="seconds a numeric check may take (LaTeX: the verifier's own CPU limit)")
    args = parser.parse_args()
    results = {"numeric": check_numeric(args.n, args.seed, args.limit),
               "math": check_math(args.math_n, args.seed)}
    for kind, counts in results.items():
        print(f"{kind}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "examples"))
        for example in counts["examples"]:
            print(f"  {example}")
    print(json.dumps(results))
    numeric = results["numeric"]
    failed = (numeric["crashes"] + numeric["wrong_rewards"] + numeric["hedged_rewarded"]
              + numeric["control"] - numeric["control_right"] + results["math"]["crashes"]
              + results["math"]["wrong_rewards"] + results["math"]["time_limit_hits"])
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
