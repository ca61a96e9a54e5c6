"""Final-answer extraction and equivalence checks for math word problems.

One correctness check serves both rewards and evaluation (as nanochat does), so a trained policy is
scored exactly the way it was rewarded.

Numeric tasks (``gsm8k``, ``svamp``, ``arithmetic``)
    * strict mode reads the answer from an explicit final-answer statement: a ``#### N`` line,
      ``The (final) answer is N`` or ``\\boxed{N}``;
    * flexible mode falls back to the last number in the text when no statement exists (as
      lm-evaluation-harness's ``flexible-extract``).
    Numbers are normalised (thousands commas, currency signs, ``%``, trailing ``.``/``.00``, unit
    words after the number, negatives, decimals, simple fractions) and compared exactly as rationals,
    so ``0.30`` equals ``3/10`` and ``0.1 + 0.2`` style float error cannot occur.

MATH (``math``)
    The answer is the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces allowed). Equivalence is
    tried cheaply first (normalised strings, then rationals) and only then through math-verify, run in
    a forked child process with a hard time limit: sympy can hang in C code (``9^{9^{9^9}}``) where
    neither signals nor threads can interrupt it. Forking also works off the main thread and inside
    dataloader workers, where math-verify's own signal-based timeouts fail.

A completion that states two or more *different* final answers is ambiguous: ``extract_answer``
returns ``None`` and ``is_correct`` returns ``False`` (no reward for hedging or answer spam). Empty,
oversized (> ``MAX_COMPLETION_CHARS``) and binary completions are rejected before any parsing.
"""

from __future__ import annotations

import os
import re
import select
import signal
import threading
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Literal

NUMERIC_TASKS = ("gsm8k", "svamp", "arithmetic")
LATEX_TASKS = ("math",)
TASKS = NUMERIC_TASKS + LATEX_TASKS
MAX_COMPLETION_CHARS = 32_768
MATH_VERIFY_TIMEOUT_S = 1.0
# Huge exponents make exact rational arithmetic explode; beyond this we treat the number as unparseable.
_MAX_DIGITS = 200

Mode = Literal["strict", "flexible"]

_NUM_BODY = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_NUMBER_RE = re.compile(
    rf"(?P<sign>(?<![\w)\].])[-−](?=[$€£¥]?\.?\d))?[$€£¥]?\s?(?P<sign2>[-−])?(?P<num>{_NUM_BODY})(?:\s?/\s?(?P<den>\d+)(?![\d.]))?"
)
_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
# "The answer is N": the number must follow directly, so "the answer is not 5" states nothing.
_ANSWER_IS_RE = re.compile(r"\banswer\s+is\s*[:=]?\s*((?:[-−$€£¥]\s?)*\.?\d[^\n]*)", re.IGNORECASE)
_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")


class VerifierError(ValueError):
    """Raised for an unknown task or extraction mode."""


def _check_task(task: str) -> str:
    task = task.lower()
    if task not in TASKS:
        raise VerifierError(f"task: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task


def _is_garbage(text: Any) -> bool:
    """True for non-strings, empty, oversized or binary text: such input never earns reward."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_COMPLETION_CHARS:
        return True
    if "\x00" in text:
        return True
    head = text[:4096]
    unprintable = sum(1 for ch in head if not ch.isprintable() and ch not in "\n\r\t")
    return unprintable > 0.1 * len(head)


# --------------------------------------------------------------------------- numbers


def _fraction_from_match(m: re.Match) -> Fraction | None:
    body = m.group("num").replace(",", "")
    if len(body) > _MAX_DIGITS:
        return None
    value = Fraction(body)
    if m.group("den"):
        den = int(m.group("den"))
        if den == 0:
            return None
        value /= den
    if m.group("sign") or m.group("sign2"):
        value = -value
    return value


def canonical_number(value: Fraction) -> str:
    """Canonical text of a rational: ``"72"``, ``"-5"``, ``"3/4"``. Used as the vote key."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def parse_number(text: str) -> Fraction | None:
    """First number in ``text`` as an exact rational (``"$1,234.50"`` -> 2469/2), else ``None``."""
    m = _NUMBER_RE.search(text)
    return _fraction_from_match(m) if m else None


def _last_number(text: str) -> Fraction | None:
    last = None
    for last in _NUMBER_RE.finditer(text):  # noqa: B007 - we only want the final match
        pass
    return _fraction_from_match(last) if last else None


# --------------------------------------------------------------------------- boxed answers


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the ``{...}`` group opening at ``text[start]`` (nested braces), and its end index."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def find_boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}``/``\\fbox{...}`` (and ``\\boxed 5``) in order of appearance."""
    found = []
    for m in _BOX_RE.finditer(text):
        pos = m.end()
        if pos < len(text) and text[pos] == "{":
            group = _braced(text, pos)
            if group is not None:
                found.append(group[0].strip())
        elif m.group(0).endswith(" "):  # "\boxed 5": the argument is the next token
            token = re.match(r"[^\s$.,]+", text[pos:])
            if token:
                found.append(token.group(0))
    return found


def last_boxed(text: str) -> str | None:
    """The last boxed answer in ``text`` (the MATH reference convention), or ``None``."""
    boxed = find_boxed(text)
    return boxed[-1] if boxed else None


# --------------------------------------------------------------------------- extraction


# An answer phrase ends at its line's end, at a sentence end ("The answer is 7. Because ...") or where
# an explanation starts ("The answer is 7 because she had 3 and got 4").
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)|\b(?:because|since|as|so|which|given|from|after|using)\b", re.IGNORECASE)
_HEDGE = object()  # a statement naming two or more different values
# A final line that only lists numbers ("7, 8", "7 or 8", "either 7 or 8", "7 and/or 8").
_LIST_SEPARATORS_RE = re.compile(r"^(?:\s|,|;|/|\bor\b|\band\b|\beither\b|\bmaybe\b)*$", re.IGNORECASE)


def _distinct_values(text: str) -> set[Fraction]:
    """The different numbers written in ``text``."""
    return {_fraction_from_match(m) for m in _NUMBER_RE.finditer(text)} - {None}


def _stated_value(statement: str):
    """The one value a statement states, ``None`` when it states none, ``_HEDGE`` when it states two or
    more different ones ("7, 8", "7 or 8", "7 and 8", "7 8"). An equation states its right-hand side."""
    statement = _SENTENCE_END_RE.split(statement, maxsplit=1)[0]
    values = _distinct_values(_LATEX_FRAC_RE.sub(r"\1/\2", statement).rsplit("=", 1)[-1])
    if len(values) > 1:
        return _HEDGE
    return values.pop() if values else None


def _numeric_statements(text: str) -> list:
    statements = [m.group(1) for m in _HASH_RE.finditer(text)]
    statements += [m.group(1) for m in _ANSWER_IS_RE.finditer(text)]
    statements += find_boxed(text)
    return [_stated_value(s) for s in statements]


def _lists_candidates(line: str) -> bool:
    """Whether ``line`` (after its last ``=``) is a bare list of two or more different numbers."""
    tail = line.rsplit("=", 1)[-1]
    if len(_distinct_values(tail)) < 2:
        return False
    matches = list(_NUMBER_RE.finditer(tail))
    gaps = [tail[a.end():b.start()] for a, b in zip(matches, matches[1:], strict=False)]
    return all(_LIST_SEPARATORS_RE.match(g) for g in gaps)


def _extract_numeric(text: str, mode: Mode) -> str | None:
    """One final value, or ``None``: a hedge (any answer statement naming several values, or several
    statements disagreeing) states nothing, in both modes."""
    statements = _numeric_statements(text)
    if any(v is _HEDGE for v in statements):
        return None
    stated = {v for v in statements if v is not None}
    if len(stated) > 1:
        return None  # hedging: two different final answers
    if stated:
        return canonical_number(stated.pop())
    if mode == "flexible":
        lines = [line for line in text.split("\n") if _NUMBER_RE.search(line)]
        if lines and _lists_candidates(lines[-1]):
            return None  # a final line listing candidates ("7 or 8") is a hedge, not "the last number"
        value = _last_number(text)
        return canonical_number(value) if value is not None else None
    return None


_LATEX_NOISE = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |\$|\s|\^\{?\\circ\}?|\\%|%")


def normalize_latex(answer: str) -> str:
    """Cheap textual normalisation of a LaTeX answer (spacing, sizing commands, ``dfrac``, ``\\text``)."""
    s = _LATEX_NOISE.sub("", answer)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", s)
    return s.rstrip(".")


_BARE_FRAC_RE = re.compile(r"\\frac(\d)(\d)")  # \frac12 -> \frac{1}{2}
_SIMPLE_FRAC_RE = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(\d+)\}$")


def answer_key(answer: str | None, task: str = "gsm8k") -> str | None:
    """The vote key of an extracted answer (maj@k, rerank's answer groups): equivalent answers share
    one key. Numeric tasks: the canonical number already is one. MATH: the normalised LaTeX, with
    plain numbers and simple fractions written as canonical rationals (``\\dfrac{1}{2}``,
    ``\\frac12`` and ``0.5`` all give ``1/2``); other expressions vote by normalised text only
    (math-verify equivalence is too slow to run pairwise inside a vote)."""
    if answer is None or _check_task(task) in NUMERIC_TASKS:
        return answer
    text = _BARE_FRAC_RE.sub(r"\\frac{\1}{\2}", normalize_latex(answer))
    fraction = _SIMPLE_FRAC_RE.match(text)
    if fraction:
        sign, num, den = fraction.groups()
        if int(den) != 0:
            value = Fraction(int(num), int(den))
            return canonical_number(-value if sign else value)
    if _is_plain_number(text):
        value = parse_number(text)
        return canonical_number(value) if value is not None else text
    return text


_LATEX_OR_RE = re.compile(r"\bor\b|\\lor\b|\\vee\b", re.IGNORECASE)


def _extract_latex(text: str) -> str | None:
    """The boxed answer; ``None`` for boxes that disagree or a box offering alternatives ("7 or 8").
    Commas stay allowed inside a box: MATH answers can be tuples, intervals or sets."""
    boxed = find_boxed(text)
    if not boxed or len({normalize_latex(b) for b in boxed}) > 1 or _LATEX_OR_RE.search(boxed[-1]):
        return None
    return boxed[-1]


def extract_answer(completion: str, task: str = "gsm8k", mode: Mode = "strict") -> str | None:
    """Extract the final answer of ``completion``.

    Returns the canonical number (``"72"``, ``"-3/4"``) for numeric tasks, the boxed LaTeX for ``math``,
    or ``None`` when there is no answer, two different answers, or the text is empty/huge/binary.
    """
    task = _check_task(task)
    if mode not in ("strict", "flexible"):
        raise VerifierError(f"mode: unknown extraction mode {mode!r}; expected 'strict' or 'flexible'")
    if _is_garbage(completion):
        return None
    if task in LATEX_TASKS:
        return _extract_latex(completion)
    return _extract_numeric(completion, mode)


def reference_answer(reference: str | float | int, task: str = "gsm8k") -> str | None:
    """Final answer of a reference: a bare answer (``"1,000"``, ``51.0``) or a full reference solution."""
    task = _check_task(task)
    if isinstance(reference, (int, float)):
        reference = repr(reference)
    if not isinstance(reference, str) or not reference.strip():
        return None
    if task in LATEX_TASKS:
        return last_boxed(reference) or reference.strip()
    stated = _extract_numeric(reference, "strict")
    if stated is not None:
        return stated
    value = parse_number(reference)
    return canonical_number(value) if value is not None else None


# --------------------------------------------------------------------------- equivalence


def _math_verify_equal(gold: str, pred: str) -> bool:
    from math_verify import parse, verify

    # math-verify's own timeouts use SIGALRM; ours is the process-level limit around this call.
    parsed_gold = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
    parsed_pred = parse(f"\\boxed{{{pred}}}", parsing_timeout=None)
    return bool(verify(parsed_gold, parsed_pred, timeout_seconds=None))  # order matters: gold first


_warmed = False


def _warm_math_verify() -> None:
    """Parse once in the parent so forked children inherit math-verify's compiled grammars."""
    global _warmed
    if not _warmed:
        import logging

        logging.getLogger("math_verify").setLevel(logging.ERROR)
        _math_verify_equal("1", "1")
        _warmed = True


def call_with_time_limit(fn: Callable[..., bool], args: tuple, seconds: float) -> bool | None:
    """Run a boolean ``fn(*args)`` with a hard time limit; ``None`` on timeout, ``False`` on error.

    On POSIX the call runs in a forked child that is killed at the limit, which also stops code stuck
    inside C. Elsewhere a daemon thread is used: the caller still gets its answer on time when the
    work releases the GIL.
    """
    if not hasattr(os, "fork"):
        return _call_in_thread(fn, args, seconds)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compute, write one byte, exit without running the parent's atexit hooks
        try:
            os.close(read_fd)
            os.write(write_fd, b"1" if fn(*args) else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], seconds)
        data = os.read(read_fd, 1) if ready else None
    finally:
        os.close(read_fd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return None if data is None else data == b"1"


def _call_in_thread(fn: Callable[..., bool], args: tuple, seconds: float) -> bool | None:
    box: list[bool] = []
    worker = threading.Thread(target=lambda: box.append(bool(fn(*args))), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        return None
    return box[0] if box else False


def answers_match(gold: str, pred: str, task: str = "gsm8k") -> bool:
    """Whether two *extracted* answers are equivalent for ``task``."""
    task = _check_task(task)
    if task in NUMERIC_TASKS:
        return gold == pred
    if normalize_latex(gold) == normalize_latex(pred):
        return True
    gold_num, pred_num = (parse_number(normalize_latex(x)) for x in (gold, pred))
    if gold_num is not None and pred_num is not None and _is_plain_number(gold) and _is_plain_number(pred):
        return gold_num == pred_num
    _warm_math_verify()
    return bool(call_with_time_limit(_math_verify_equal, (gold, pred), MATH_VERIFY_TIMEOUT_S))


_PLAIN_NUMBER_RE = re.compile(rf"^\s*-?\s*(?:{_NUM_BODY})\s*$")


def _is_plain_number(text: str) -> bool:
    return bool(_PLAIN_NUMBER_RE.match(normalize_latex(text)))


def is_correct(completion: str, reference: str | float, task: str = "gsm8k", mode: Mode = "strict") -> bool:
    """Whether ``completion`` states the reference's final answer (and no other)."""
    pred = extract_answer(completion, task, mode)
    gold = reference_answer(reference, task)
    return pred is not None and gold is not None and answers_match(gold, pred, task)


# --------------------------------------------------------------------------- written arithmetic

_OPERAND = r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
_OPERATOR = r"[-+*/×÷]|(?<=\s)x(?=\s)"
_EQUATION_RE = re.compile(
    rf"((?:{_OPERAND}\s*(?:{_OPERATOR})\s*)+{_OPERAND})\s*=\s*[$€£]?\s*({_OPERAND})(?![\d.]*\s*(?:{_OPERATOR})\s*\d)"
)
_TOKEN_RE = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+|[-+*/×÷x]")


def _operands_and_operators(expression: str) -> tuple[list[Fraction], list[str]] | None:
    """Alternating operands/operators, with a unary minus folded into its operand."""
    values, operators, sign, expect_operand = [], [], 1, True
    for token in _TOKEN_RE.findall(expression):
        if token[0].isdigit() or token[0] == ".":
            if not expect_operand:
                return None
            values.append(sign * Fraction(token.replace(",", "")))
            sign, expect_operand = 1, False
        elif expect_operand and token == "-":
            sign = -sign
        elif expect_operand:
            return None
        else:
            operators.append(token)
            expect_operand = True
    return (values, operators) if values and not expect_operand else None


def _evaluate(expression: str) -> Fraction | None:
    """Exact value of ``a op b op c ...`` with the usual precedence; no ``eval``."""
    parsed = _operands_and_operators(expression)
    if parsed is None:
        return None
    values, operators = parsed
    terms, signs = [values[0]], []
    for op, value in zip(operators, values[1:], strict=True):
        if op in "*×x":
            terms[-1] *= value
        elif op in "/÷":
            if value == 0:
                return None
            terms[-1] /= value
        else:
            signs.append(op)
            terms.append(value)
    total = terms[0]
    for op, value in zip(signs, terms[1:], strict=True):
        total = total + value if op == "+" else total - value
    return total


def equations_hold(text: str) -> bool:
    """Whether every written equation ``a op b ... = c`` in ``text`` is arithmetically true.

    Catches solutions that reach the right final answer through wrong steps (lucky guesses), which a
    final-answer check alone rewards. Text without equations passes.
    """
    if _is_garbage(text):
        return False
    for match in _EQUATION_RE.finditer(text):
        if any(len(t) > _MAX_DIGITS for t in match.groups()):
            return False
        if _evaluate(match.group(1)) != Fraction(match.group(2).replace(",", "")):
            return False
    return True


# --------------------------------------------------------------------------- TRL reward functions


def prompt_as_text(prompt) -> str:
    """A prompt as text, the one form reward models see in training and in reranking: strings as
    they are; chat prompts as their messages' contents joined by newlines."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt)


def completion_text(completion: str | Sequence[dict]) -> str:
    """Text of a TRL completion: plain string, or chat format (list of messages; last one is scored)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return ""


def make_correctness_reward(task: str = "gsm8k", mode: Mode = "strict") -> Callable[..., list[float]]:
    """A TRL ``reward_funcs`` callable scoring 1.0 for a correct final answer, else 0.0.

    The dataset must have an ``answer`` column; a ``task`` column, when present, overrides ``task``
    per row (mixed-task datasets).
    """
    _check_task(task)

    def correctness_reward(completions, answer, **kwargs) -> list[float]:
        tasks = kwargs.get("task") or [task] * len(completions)
        return [
            float(is_correct(completion_text(c), a, t, mode))
            for c, a, t in zip(completions, answer, tasks, strict=True)
        ]

    correctness_reward.__name__ = f"correctness_{task}"
    return correctness_reward


def correctness_reward(completions, answer, **kwargs) -> list[float]:
    """TRL reward function: 1.0 when a completion's final answer matches ``answer`` (GSM8K rules).

    Signature ``(completions, answer, **kwargs) -> list[float]``; a ``task`` dataset column selects
    the verifier per row.
    """
    return make_correctness_reward("gsm8k")(completions, answer, **kwargs)
