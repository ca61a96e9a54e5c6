"""What a long run prints between progress bars: the plan at start, one header per stage, one closing
line per stage with its key figures and wall time (Expert Iteration adds one line per round)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

DONE = "stage_complete.json"


def _say(state, text: str) -> None:
    if state is None or state.is_main_process:
        print(text, flush=True)


def _status(output_dir: Path, stage: str) -> str:
    folder = output_dir / stage
    if (folder / DONE).exists():
        return "done, skipped"
    rounds = sorted(folder.glob("round_*/metrics.json"))
    if rounds:
        return f"resumes after round {int(rounds[-1].parent.name.split('_')[1])}"
    return "to run"


def announce_plan(recipe, titles: dict[str, str], state) -> None:
    """The block printed at start: stages (``name -> title``, in run order), which are skipped or
    resumed, and where results go."""
    out = Path(recipe.output_dir)
    lines = [f"trl-reasoning: {len(titles)} stage(s) of {recipe.task} with {recipe.model} -> {out}/"]
    for index, (stage, title) in enumerate(titles.items(), 1):
        status = "always reruns (cached per model)" if stage == "eval" else _status(out, stage)
        lines.append(f"  {index}. {stage:<5} {title:<24} {status}")
    lines.append(f"  results: {out}/results.md (table), {out}/<stage>/ (samples, metrics, plots, models)")
    _say(state, "\n".join(lines))


def _figures(folder: Path) -> str:
    if not (folder / DONE).exists():
        return ""
    info = json.loads((folder / DONE).read_text())
    shown = [f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()
             if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    return ", ".join(shown[:6])


@contextlib.contextmanager
def stage_banner(recipe, stage: str, title: str, index: int, total: int, state):
    """``== [i/n] stage: title ==`` before, ``== stage finished in N s: figures ==`` after."""
    _say(state, f"\n== [{index}/{total}] {stage}: {title} ==")
    start = time.perf_counter()
    yield
    figures = _figures(Path(recipe.output_dir) / stage)
    _say(state, f"== {stage} finished in {time.perf_counter() - start:.0f} "
                f"s{': ' + figures if figures else ''} ==")


def round_header(algorithm: str, round_index: int, num_rounds: int, questions: int, k: int, state) -> None:
    _say(state, f"-- {algorithm} round {round_index}/{num_rounds}: sampling {questions} questions x {k} --")


def round_summary(record: dict, state) -> None:
    """One line closing a round: sampling accuracy, kept rows, held-out maj@1, wall time."""
    train, evaluation = record.get("train", {}), record.get("eval", {})
    parts = [f"round {record['round']} done in {sum(record.get('seconds', {}).values()):.0f} s"]
    if train:
        parts.append(f"sample accuracy {train['sample_accuracy']:.3f}, kept {train['kept']} (total "
                     f"{train['kept_total']})")
        if train.get("dropped_by_equation_check"):
            parts.append(f"{train['dropped_by_equation_check']} right answers dropped for a false equation")
    if "maj@1" in evaluation:
        parts.append(f"held-out maj@1 {evaluation['maj@1']:.3f}")
    _say(state, "-- " + "; ".join(parts) + " --")
