"""``\\boxed{...}`` answers (nested braces allowed): MATH's convention, also accepted on numeric tasks."""

from __future__ import annotations

import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")


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
    return [content for content, _, _ in boxed_spans(text)]


def boxed_spans(text: str) -> list[tuple[str, int, int]]:
    """``find_boxed``'s contents, each with the index where its box starts and the one just past it."""
    found = []
    for m in _BOX_RE.finditer(text):
        pos = m.end()
        if pos < len(text) and text[pos] == "{":
            group = _braced(text, pos)
            if group is not None:
                found.append((group[0].strip(), m.start(), group[1]))
        elif m.group(0).endswith(" "):  # "\boxed 5": the argument is the next token
            token = re.match(r"[^\s$.,]+", text[pos:])
            if token:
                found.append((token.group(0), m.start(), pos + token.end()))
    return found


def last_boxed(text: str) -> str | None:
    """The last boxed answer in ``text`` (the MATH reference convention), or ``None``."""
    boxed = find_boxed(text)
    return boxed[-1] if boxed else None
