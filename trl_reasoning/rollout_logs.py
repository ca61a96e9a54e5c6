"""The rollout reward measured against the start policy on the same questions.

An on-policy trainer's logged reward is the mean over one rollout batch, and a batch of 8 questions is
easy or hard by the draw: on SmolLM2/SVAMP that spread hides any change the policy makes in 45 minutes
(TRL's GRPO and process-supervised GRPO, which draw the same batches in the same order, logged rewards
that correlate 0.89 step by step). Scoring each completion against the start policy's pass rate on its
own question takes the draw out: what is left moves only when the policy does.

The rollouts come from TRL's own completion logs (``log_completions: true`` writes
``<output_dir>/completions/completions_<step>.parquet``, the last rollout batch at every logging step;
``rewards.CorrectnessReward`` adds each completion's question ``id``); the start's pass rates from any
scored samples of the start policy with that ``id`` (an EI or RCRL round's ``samples.jsonl`` from the
same start, as in ``trl-reasoning compare``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .metrics import MIN_POINTS_FOR_TREND_INTERVAL, aggregate, linear_trend, paired_difference
from .reporting import read_jsonl

NOT_REWARDS = ("step", "prompt", "completion", "advantage", "id")


@dataclass(frozen=True)
class Rollout:
    """One rollout batch: the optimizer step that logged it first, and per completion its question (the
    logged ``id``; the prompt's text in logs without one) and reward."""

    step: int
    questions: tuple[str, ...]
    rewards: tuple[float, ...]
    logged_mean: bool = False  # rewards are the rollout's logged mean, not each completion's

    @classmethod
    def of_mean(cls, step: int, questions: tuple[str, ...], reward: float) -> Rollout:
        """A rollout known by its logged mean reward only (a trainer's ``reward`` log): every completion
        gets that mean, which leaves its adjusted mean exact."""
        return cls(step, tuple(questions), (float(reward),) * len(questions), logged_mean=True)


def read_rollouts(folder: str | Path, reward_column: str | None = None) -> list[Rollout]:
    """The rollout batches in TRL's completion logs under ``folder`` (a trainer's ``output_dir`` or its
    ``completions/``), in step order. A step that reused the last batch (``num_iterations``,
    ``steps_per_generation``) logs the same rows again: kept once, at its first step. ``reward_column``:
    the reward function's column; None takes the only one (an error with several)."""
    import pandas as pd

    folder = Path(folder)
    files = sorted((folder / "completions" if (folder / "completions").is_dir() else folder)
                   .glob("completions_*.parquet"), key=lambda path: int(path.stem.split("_")[-1]))
    if not files:
        raise FileNotFoundError(f"{folder}: no completions_*.parquet (train with log_completions: true)")
    rollouts: list[Rollout] = []
    last = None  # the previous file's rows: a file repeating them logged the same rollout again
    for path in files:
        table = pd.read_parquet(path)
        column = reward_column or _only_reward_column(table.columns, path)
        questions = tuple(str(q) for q in table["id"]) if "id" in table.columns else tuple(
            _prompt_text(p) for p in table["prompt"])
        rewards = tuple(float(r) for r in table[column])
        rows = (questions, tuple(str(c) for c in table["completion"]), rewards)
        if rows == last:
            continue
        last = rows
        rollouts.append(Rollout(int(table["step"].iloc[0]), questions, rewards))
    return rollouts


def drawn_questions(ids: list[str], args, rollouts: int) -> list[tuple[str, ...]]:
    """The questions of a TRL on-policy trainer's first ``rollouts`` rollout batches, one entry per
    completion, rebuilt from its sampler (``_compat.repeat_sampler``: TRL's, set up from ``args`` as
    ``GRPOTrainer`` sets it) over the training rows' ``ids`` in dataset order: for runs that did not log
    their completions. A single-process run's. A run resumed inside its first epoch, at a step that
    began a rollout, draws these; one resumed later does not (transformers restarts the sampler's
    generator at the resumed epoch, which then repeats the first one's order): ``order_kept``."""
    from ._compat import repeat_sampler

    sampler = repeat_sampler(ids, args)
    size = args.generation_batch_size  # one rollout: its questions x num_generations completions
    chunk = size * args.num_iterations * args.steps_per_generation  # the sampler repeats it for each use
    drawn: list[tuple[str, ...]] = []
    while len(drawn) < rollouts:  # each pass over the sampler is one epoch; its generator goes on
        order = list(sampler)
        drawn += [tuple(ids[i] for i in order[start:start + size]) for start in range(0, len(order), chunk)]
    return drawn[:rollouts]


def order_kept(resumed_step: int, num_rows: int, args) -> bool:
    """Whether a run resumed from the checkpoint of optimizer step ``resumed_step`` goes on drawing the
    questions ``drawn_questions`` gives: inside the first epoch over ``num_rows`` training rows, at a step
    where a new rollout begins."""
    per = steps_per_rollout(args)
    rollouts_per_epoch = -(-num_rows // (args.generation_batch_size // args.num_generations))
    return resumed_step % per == 0 and resumed_step < rollouts_per_epoch * per


def steps_per_rollout(args) -> int:
    """Optimizer steps between two rollouts of a TRL on-policy trainer (``num_iterations`` x
    ``steps_per_generation`` micro-batches, ``gradient_accumulation_steps`` to a step); an error where a
    rollout does not span whole optimizer steps."""
    micro = args.num_iterations * args.steps_per_generation
    if micro % args.gradient_accumulation_steps:
        raise ValueError(f"steps_per_rollout: num_iterations x steps_per_generation ({micro}) is not a "
                         f"multiple of gradient_accumulation_steps ({args.gradient_accumulation_steps})")
    return micro // args.gradient_accumulation_steps


def logged_rollouts(logged: list[tuple[int, float]], ids: list[str], args) -> list[Rollout]:
    """A trainer's logged rewards (``metrics.logged_values``) as rollouts: TRL logs at each logging step
    the mean of the rollouts drawn since the last one (rollout k at optimizer step k x
    ``steps_per_rollout`` + 1), so each logged value is paired with all of their questions."""
    per = steps_per_rollout(args)
    drawn = drawn_questions(ids, args, max(step for step, _ in logged) // per + 1)
    rollouts, last = [], 0
    for step, reward in logged:
        since = [drawn[k] for k in range(len(drawn)) if last < k * per + 1 <= step]
        rollouts.append(Rollout.of_mean(step, tuple(q for batch in since for q in batch), reward))
        last = step
    return rollouts


def _only_reward_column(columns: Iterable[str], path: Path) -> str:
    rewards = [c for c in columns if c not in NOT_REWARDS]
    if len(rewards) != 1:
        raise ValueError(f"{path}: reward_column must name one of {rewards} (more than one reward function)")
    return rewards[0]


def _prompt_text(prompt) -> str:
    """A logged prompt as text: a conversation (a list of messages) becomes its last user message."""
    if isinstance(prompt, str):
        return prompt
    messages = [m for m in prompt if m.get("role") == "user"] or list(prompt)
    return str(messages[-1]["content"])


def start_pass_counts(sample_files: Iterable[str | Path]) -> dict[str, tuple[int, int]]:
    """Each question's (correct, drawn) samples (``id`` and ``correct`` per JSON line) over every file."""
    counts: dict[str, list[int]] = {}
    for path in sample_files:
        for row in read_jsonl(path):
            seen = counts.setdefault(row["id"], [0, 0])
            seen[0] += bool(row["correct"])
            seen[1] += 1
    return {key: (correct, total) for key, (correct, total) in counts.items()}


def start_pass_rates(sample_files: Iterable[str | Path]) -> dict[str, float]:
    """Each question's share of correct samples over every file (``start_pass_counts``)."""
    return {key: correct / total for key, (correct, total) in start_pass_counts(sample_files).items()}


def adjusted_reward_trend(rollouts: list[Rollout], baseline: Mapping[str, float],
                          baseline_samples: Mapping[str, int] | None = None, per: int = 100) -> dict:
    """Each rollout's mean of (reward - the start's pass rate on the completion's question), its slope per
    ``per`` optimizer steps with a 95% interval (``metrics.linear_trend``; none under
    ``MIN_POINTS_FOR_TREND_INTERVAL`` rollouts) and its mean over the rollouts, beside the raw reward's
    slope on the same rollouts. ``baseline``: pass rate per question, estimated from
    ``baseline_samples`` samples of it. The mean's 95% interval (normal) adds the spread of the rollouts'
    values to the baseline's own estimation error, which every rollout drawing a question shares (its
    binomial variance, with p smoothed to (correct + 1/2) / (samples + 1) so that 0 of 4 still counts);
    without ``baseline_samples`` the baseline is taken as exact and ``baseline_exact`` says so."""
    missing = {q for r in rollouts for q in r.questions if q not in baseline}
    if missing:
        raise KeyError(f"adjusted_reward_trend: no start pass rate for {len(missing)} question(s), such as "
                       f"{sorted(missing)[0][:80]!r}")
    if len({r.step for r in rollouts}) < 3:
        raise ValueError("adjusted_reward_trend: needs 3 rollouts at distinct steps")
    steps = [r.step for r in rollouts]
    raw = [sum(r.rewards) / len(r.rewards) for r in rollouts]
    adjusted = [sum(w - baseline[q] for q, w in zip(r.questions, r.rewards, strict=True)) / len(r.rewards)
                for r in rollouts]
    record = {"rollouts": len(rollouts), "steps": steps, "reward": raw, "adjusted": adjusted,
              "mean_adjusted": _mean_interval(rollouts, adjusted, baseline, baseline_samples),
              "baseline_exact": baseline_samples is None}
    for name, values in (("slope", adjusted), ("raw_slope", raw)):
        trend = linear_trend(steps, values)
        record[name] = {"per_steps": per, "mean": trend.mean * per,
                        "ci95": ([trend.ci_low * per, trend.ci_high * per]
                                 if trend.n >= MIN_POINTS_FOR_TREND_INTERVAL else None)}
    record["first_to_last_draw"] = first_to_last_draw(rollouts)
    return record


def _mean_interval(rollouts: list[Rollout], adjusted: list[float], baseline: Mapping[str, float],
                   baseline_samples: Mapping[str, int] | None) -> dict:
    """The mean of ``adjusted`` with a normal 95% interval: the rollouts' spread, plus the baseline's."""
    count = len(adjusted)
    mean = sum(adjusted) / count
    spread = sum((a - mean) ** 2 for a in adjusted) / (count - 1) / count
    weights: dict[str, float] = {}  # each question's share of the mean's baseline term
    for r in rollouts:
        for q in r.questions:
            weights[q] = weights.get(q, 0.0) + 1 / len(r.questions) / count
    shared = 0.0
    if baseline_samples is not None:
        for q, weight in weights.items():
            n = baseline_samples[q]
            p = (baseline[q] * n + 0.5) / (n + 1)
            shared += weight ** 2 * p * (1 - p) / n
    half = 1.96 * (spread + shared) ** 0.5
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def first_to_last_draw(rollouts: list[Rollout]) -> dict | None:
    """On the questions a run drew more than once (a small pool over several epochs), the mean reward of
    each question's last draw minus its first, paired by question, with a 95% bootstrap interval over
    them: the policy's change on the questions it trains on, no baseline needed; None where no question
    was drawn twice (completion rewards, not logged means, are needed: a rollout's means say nothing
    per question)."""
    gains = _draw_gains(rollouts)
    if not gains:
        return None
    estimate = aggregate([gain for gain, _ in gains.values()])
    return {"mean": estimate.mean, "ci95": [estimate.ci_low, estimate.ci_high], "questions": len(gains),
            "draws": sum(draws for _, draws in gains.values()) / len(gains)}


def first_to_last_against(rollouts: list[Rollout], control: list[Rollout]) -> dict | None:
    """``first_to_last_draw`` of ``rollouts`` minus that of ``control`` at equal rollouts (both in step
    order, cut to the first ones the shorter run has), paired by question over the questions both drew
    more than once, with a paired 95% bootstrap interval: two runs on one question pool, each given as
    many draws (same-size rollouts, else ValueError; the pairing is cleanest where both drew the questions
    in the same order, as TRL's sampler does under one seed); None where no question qualifies."""
    sizes = {len(r.questions) for r in [*rollouts, *control]}
    if len(sizes) > 1:
        raise ValueError(f"first_to_last_against: rollouts of {sorted(sizes)} completions: equal rollouts "
                         "would not be equal draws")
    rollouts, control = (sorted(runs, key=lambda r: r.step) for runs in (rollouts, control))
    n = min(len(rollouts), len(control))
    mine, theirs = _draw_gains(rollouts[:n]), _draw_gains(control[:n])
    shared = sorted(set(mine or {}) & set(theirs or {}))
    if not shared:
        return None
    estimate = paired_difference([mine[q][0] for q in shared], [theirs[q][0] for q in shared])
    return {"mean": estimate.mean, "ci95": [estimate.ci_low, estimate.ci_high], "questions": len(shared),
            "rollouts": n}


def _draw_gains(rollouts: list[Rollout]) -> dict[str, tuple[float, int]] | None:
    """Per question drawn more than once: its last draw's mean reward minus its first's, and how often it
    was drawn (None for logged means, which carry no per-question reward)."""
    if any(r.logged_mean for r in rollouts):
        return None
    draws: dict[str, list[list[float]]] = {}
    for r in rollouts:
        mine: dict[str, list[float]] = {}
        for q, w in zip(r.questions, r.rewards, strict=True):
            mine.setdefault(q, []).append(w)
        for q, values in mine.items():
            draws.setdefault(q, []).append(values)
    return {q: (sum(d[-1]) / len(d[-1]) - sum(d[0]) / len(d[0]), len(d))
            for q, d in draws.items() if len(d) > 1}
