"""What every task shares: the normalised schema, local/Hub loading, validation and prompt formats.

Every task loads into a ``datasets.Dataset`` with the columns of ``SCHEMA``:

* ``id``: stable identifier of the question,
* ``question``: the problem text,
* ``solution``: the reference solution, ending in the final-answer line (``#### N`` or ``\\boxed{}``),
* ``answer``: the final answer alone (what the verifier compares against),
* ``task``: the task name, so TRL reward functions can pick the verifier per row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..answers import NUMERIC, AnswerKind

SCHEMA = ("id", "question", "solution", "answer", "task")
PROMPT_STYLES = ("zero_shot", "few_shot", "chat")
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
MAX_FIELD_CHARS = 100_000  # GSM8K's longest question is under 1,000 characters, MATH's solutions ~10,000


class DataError(ValueError):
    """A dataset that cannot be used: missing file, missing fields, empty, unknown task."""


@dataclass(frozen=True)
class TaskSpec:
    """How to load, present and verify one task.

    ``to_row(raw, index)`` maps a raw record (Hub or local file) to the schema; ``required_fields``
    are checked on the raw records first so a wrong file fails with a clear message. ``answer`` is the
    kind of final answer (``answers.NUMERIC`` or ``answers.LATEX``): it decides extraction, voting,
    equivalence and where sampling stops. ``generate(num_examples, split, seed, config)``, for synthetic
    tasks, makes raw records when no data file is given. ``local_split(records, split)`` picks a split
    from a local file that holds a whole unsplit data set (SVAMP's original ``SVAMP.json``);
    ``hub_split(records, split)``, given the rows of all the default Hub dataset's splits, re-makes the
    split when the Hub's own shares content across train and test. ``families(texts)`` labels
    questions that are variations of one problem (one label per family), so a validation split carved
    from train keeps each family on one side; None: a question's reference solution is its family.
    ``stepwise(solution)`` rewrites a reference solution as one line per operation (``a op b = c``),
    for ``solution_format: steps``; None: the references are written step by step already.
    """

    name: str
    hub_id: str | None
    hub_config: str | None
    required_fields: tuple[str, ...]
    to_row: Callable[[dict, int], dict]
    instruction: str
    hub_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "test": "test"})
    answer: AnswerKind = NUMERIC
    generate: Callable[..., list[dict]] | None = None
    local_split: Callable[[list[dict], str], list[dict]] | None = None
    hub_split: Callable[[list[dict], str], list[dict]] | None = None
    families: Callable[[Sequence[str]], list[int]] | None = None
    stepwise: Callable[[str], str] | None = None


def read_records(path: str) -> list[dict]:
    """Records of a local ``.jsonl``, ``.json`` (list of objects, or jsonl) or ``.parquet`` file."""
    if not os.path.isfile(path):
        raise DataError(f"data: file {path!r} does not exist")
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as err:
        raise DataError(f"data: {path!r} is not UTF-8 text (byte {err.start} is "
                        f"{err.object[err.start:err.start + 1]!r}); "
                        "re-encode it as UTF-8") from None
    try:
        records = json.loads(text) if path.endswith(".json") and text.lstrip().startswith("[") else None
        if records is None:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise DataError(f"data: {path!r} is not valid JSON/JSONL ({err.msg} at line {err.lineno})") from None
    if not all(isinstance(r, dict) for r in records):
        raise DataError(f"data: {path!r} must hold JSON objects, one per record")
    return records


def _looks_local(data: str) -> bool:
    """A path (existing, file-like suffix, or explicit ./ / ~ prefix) rather than a Hub id."""
    return (
        os.path.exists(os.path.expanduser(data))
        or data.endswith(LOCAL_SUFFIXES)
        or data.startswith((".", "/", "~"))
    )


def fetch_records(spec: TaskSpec, data: str | None, split: str) -> list[dict]:
    """Raw records from a local file, or from the Hub (``data`` a Hub id, or ``None`` for the default)."""
    if data is not None and _looks_local(data):
        records = read_records(os.path.expanduser(data))
        return spec.local_split(records, split) if spec.local_split else records
    hub_id = data or spec.hub_id
    if hub_id is None:
        raise DataError(f"data: task {spec.name!r} has no Hub dataset; pass a local file")
    if split not in spec.hub_splits:
        raise DataError(f"split: {split!r} is not a split of {spec.name}; expected {sorted(spec.hub_splits)}")
    from datasets import load_dataset

    config = spec.hub_config if data is None or data == spec.hub_id else None
    unreachable = _hub_unreachable(hub_id)
    if unreachable:
        raise DataError(f"data: cannot reach the Hub for dataset {hub_id!r} ({unreachable}); pass a local "
                        "file instead "
                        "(recipes: 'train_data: FILE' / 'eval_data: FILE'; eval: --data FILE), or set "
                        "HF_HUB_OFFLINE=1 "
                        "to use a cached copy")
    try:
        if spec.hub_split is not None and hub_id == spec.hub_id:
            every = [r for name in spec.hub_splits.values() for r in load_dataset(hub_id, config, split=name)]
            return spec.hub_split(every, split)
        return load_dataset(hub_id, config, split=spec.hub_splits[split]).to_list()
    except DataError:
        raise
    except (
        Exception
    ) as err:  # datasets/huggingface_hub raise many types (ConnectionError, DatasetNotFoundError, ...)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"data: cannot load the Hub dataset {hub_id!r} ({reason[:200]}); offline or no "
            "access? pass a "
            "local file instead (recipes: 'train_data: FILE' / 'eval_data: FILE'; eval: --data "
            "FILE)"
        ) from None


def _hub_unreachable(repo_id: str, tries: int = 2) -> str | None:
    """Why the Hub cannot be reached (no network, DNS), after one retry; ``None`` when it answers or in
    offline mode (then ``datasets`` reads its cache). ``datasets`` itself would retry for ~30 s first."""
    import time

    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return None
    reason = None
    for attempt in range(tries):
        try:
            HfApi().dataset_info(repo_id, timeout=10)
            return None
        except Exception as err:  # noqa: BLE001 - only connection failures count, see below
            if not _is_connection_error(err):
                return None  # the Hub answered (404, 401, ...): let datasets report it
            reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        if attempt + 1 < tries:
            time.sleep(1.0)
    return reason


_CONNECTION_ERRORS = {
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "TimeoutException",
    "NameResolutionError",
    "MaxRetryError",
    "gaierror",
}  # httpx / requests / socket names, without importing them


def _is_connection_error(err: BaseException) -> bool:
    chain = [e for e in (err, err.__cause__, err.__context__) if e is not None]
    return any(
        isinstance(e, (ConnectionError, TimeoutError)) or type(e).__name__ in _CONNECTION_ERRORS
        for e in chain
    )


def validate_records(spec: TaskSpec, records: Sequence[dict], source: str) -> None:
    """Fail with one line when records are empty or lack the fields the task needs."""
    if not records:
        raise DataError(f"data: {source} is empty; task {spec.name!r} needs at least one record")
    for index, record in enumerate(records):
        missing = [f for f in spec.required_fields if record.get(f) in (None, "")]
        if missing:
            raise DataError(
                f"data: record {index} of {source} lacks field(s) {missing} needed by task {spec.name!r} "
                f"(expected fields {list(spec.required_fields)}, found {sorted(record)})"
            )
        long = next((k for k, v in record.items() if isinstance(v, str) and len(v) > MAX_FIELD_CHARS), None)
        if long is not None:
            raise DataError(f"data: record {index} of {source} has a {len(record[long]):,}-character "
                            f"{long!r}; the "
                            f"limit is {MAX_FIELD_CHARS:,} characters (a corrupted or concatenated record?)")


def check_unique_ids(rows: Sequence[dict], source: str) -> None:
    """Ids key samples, dedup and resume: two records with one id would silently merge."""
    first: dict[str, int] = {}
    for index, row in enumerate(rows):
        if row["id"] in first:
            raise DataError(f"data: records {first[row['id']]} and {index} of {source} share the id "
                            f"{row['id']!r}; "
                            "ids must be unique")
        first[row["id"]] = index


# --------------------------------------------------------------------------- prompts


def question_block(question: str) -> str:
    return f"Question: {question.strip()}\nAnswer:"


def build_prompt(
    question: str,
    style: str = "zero_shot",
    exemplars: Sequence[dict] = (),
    instruction: str = "",
) -> str | list[dict[str, str]]:
    """The prompt for one question.

    ``zero_shot``: ``"Question: ...\\nAnswer:"`` (for models fine-tuned on this format);
    ``few_shot``: solved ``exemplars`` (schema rows) before it, for pretrained models as in the paper;
    ``chat``: TRL conversational format (a list of messages) with ``instruction`` as system message.
    """
    if style == "zero_shot":
        return question_block(question)
    if style == "few_shot":
        if not exemplars:
            raise DataError("prompt_style: few_shot needs exemplars (num_shots >= 1 and a train split)")
        shots = "".join(f"{question_block(e['question'])} {e['solution'].strip()}\n\n" for e in exemplars)
        return shots + question_block(question)
    if style == "chat":
        return [{"role": "system", "content": instruction}, {"role": "user", "content": question.strip()}]
    raise DataError(f"prompt_style: unknown style {style!r}; expected one of {', '.join(PROMPT_STYLES)}")


def completion_target(solution: str) -> str:
    """The SFT target that follows a zero/few-shot prompt: a space, then the solution."""
    return " " + solution.strip()


def to_schema(spec: TaskSpec, records: Sequence[dict[str, Any]], source: str = "the data") -> list[dict]:
    rows = [spec.to_row(record, index) for index, record in enumerate(records)]
    for row in rows:
        row["task"] = spec.name
    check_unique_ids(rows, source)
    return rows
