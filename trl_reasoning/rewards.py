"""TRL reward functions built on the verifiers, and the text views of prompts and completions that
every reward and reward model shares."""

from __future__ import annotations

from collections.abc import Sequence

from .verifiers import Mode, VerifierError, answer_kind, is_correct


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


class CorrectnessReward:
    """A TRL ``reward_funcs`` entry scoring 1.0 for a correct final answer, else 0.0.

    Called as ``reward(completions, answer, **columns)``: the dataset needs an ``answer`` column; a
    ``task`` column, when present, overrides ``task`` per row (mixed-task datasets). Instances are
    picklable (dataloader workers, multi-process launches) and named ``correctness_<task>`` in logs.
    With an ``id`` column, each completion's question id goes into TRL's completion logs (their ``id``
    column, through the trainer's ``log_extra``), which ``rollout_logs`` reads.
    """

    def __init__(self, task: str = "gsm8k", mode: Mode = "strict"):
        answer_kind(task)  # an unknown task fails here, not at the first batch
        if mode not in ("strict", "flexible"):
            raise VerifierError(f"mode: unknown extraction mode {mode!r}; expected 'strict' or 'flexible'")
        self.task, self.mode = task, mode
        self.__name__ = f"correctness_{task}"

    def __call__(self, completions, answer, **kwargs) -> list[float]:
        tasks = kwargs.get("task") or [self.task] * len(completions)
        if "id" in kwargs and callable(kwargs.get("log_extra")):
            kwargs["log_extra"]("id", [str(i) for i in kwargs["id"]])
        return [
            float(is_correct(completion_text(c), a, t, self.mode))
            for c, a, t in zip(completions, answer, tasks, strict=True)
        ]

    def __repr__(self) -> str:
        return f"CorrectnessReward(task={self.task!r}, mode={self.mode!r})"


def make_correctness_reward(task: str = "gsm8k", mode: Mode = "strict") -> CorrectnessReward:
    """``CorrectnessReward(task, mode)``: kept as the function most TRL scripts expect."""
    return CorrectnessReward(task, mode)


correctness_reward = CorrectnessReward("gsm8k")
correctness_reward.__doc__ = """TRL reward function: 1.0 when a completion's final answer matches ``answer``
(GSM8K rules); a ``task`` dataset column selects the verifier per row."""
