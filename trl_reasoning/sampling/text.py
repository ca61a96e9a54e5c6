"""Prompt tokenisation and completion cutting, shared by every backend so their samples agree.

Prompts are tokenised exactly as TRL tokenises them for training (``encode_prompts``): plain text
with the tokenizer's special tokens (a Llama-family BOS), chat prompts through the chat template
without a second BOS. A completion ends after its answer line (``#### N``) or before a stop string
(``cut_point``), whichever comes first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..answers.numeric import ANSWER_LINE
from ..tasks import get_task
from .results import SamplingError

GSM8K_ANSWER_LINE = ANSWER_LINE  # the numeric tasks' stop pattern: a finished "#### N" line
DEFAULT_STOP_STRINGS = ("\nQuestion:",)


def answer_pattern_for(task: str) -> str | None:
    """The regex that ends a completion of ``task``: its answer kind's stop pattern (the ``#### N``
    line for numeric answers, none for LaTeX answers, which end at EOS)."""
    return get_task(task).answer.stop_pattern


def render_prompts(tokenizer, prompts: Sequence[str | list[dict]]) -> list[str]:
    """Prompt texts; chat-format prompts go through the tokenizer's chat template."""
    texts = []
    for prompt in prompts:
        if isinstance(prompt, str):
            texts.append(prompt)
            continue
        if not getattr(tokenizer, "chat_template", None):
            raise SamplingError(
                "prompt_style: chat prompts need a tokenizer with a chat template; this one has none "
                "(use prompt_style zero_shot or few_shot)"
            )
        texts.append(tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True))
    return texts


def encode_prompts(tokenizer, prompts: Sequence[str | list[dict]]) -> list[list[int]]:
    """Token ids of each prompt, as TRL's SFT and GRPO tokenise them (``trl.data_utils._tokenize``):
    ``tokenizer(text)`` with its special tokens for plain text, ``apply_chat_template(...,
    add_generation_prompt=True)`` for chat messages (the template already holds any BOS)."""
    ids = []
    for prompt, text in zip(prompts, render_prompts(tokenizer, prompts), strict=True):
        if isinstance(prompt, str):
            ids.append(list(tokenizer(prompt)["input_ids"]))
        else:
            ids.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return ids


def cut_point(text: str, answer_pattern: str | None, stop_strings: Sequence[str]) -> int | None:
    """Index where the completion ends: after the answer line, or before a stop string."""
    ends = [text.find(s) for s in stop_strings if s in text]
    if answer_pattern:
        match = re.search(answer_pattern, text)
        if match:
            ends.append(match.end() - 1)  # keep the answer line, drop its newline
    return min(ends) if ends else None


def truncate(text: str, answer_pattern: str | None, stop_strings: Sequence[str]) -> str:
    """The completion as kept: cut at ``cut_point``; a partial character left by the token limit
    (U+FFFD at the end) is dropped, as vLLM's detokenizer does."""
    text = text.rstrip("\ufffd")
    end = cut_point(text, answer_pattern, stop_strings)
    return text if end is None else text[:end]
