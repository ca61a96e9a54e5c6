"""Per-round figures of the rounds trainers (EI, RCRL) to the trackers of ``report_to``, beside each
round's ``metrics.json``: the trainer's own loss reaches them through transformers' callbacks, the
round's maj@1, pass@k, kept solutions and sample counts through here. Only trackio is wired (it is
local-first: a run folder's figures need no account); other trackers get the per-step loss only."""

from __future__ import annotations

from numbers import Number

SUPPORTED = ("trackio",)


def round_metrics(record: dict) -> dict[str, float]:
    """The scalars of a round record: ``eval/...``, ``train/...`` and the cumulative sample counts."""
    metrics = {
        "cumulative_samples": record["cumulative_samples"],
        "cumulative_tokens": record["cumulative_tokens"],
    }
    for section in ("eval", "train"):
        for name, value in record.get(section, {}).items():
            if isinstance(value, Number) and not isinstance(value, bool):
                metrics[f"{section}/{name}"] = float(value)
    return metrics


def log_round(args, record: dict, run_name: str) -> None:
    """Send one round's figures (step = round index) to each supported tracker in ``args.report_to``."""
    if "trackio" not in (args.report_to or []):
        return
    import trackio

    trackio.init(project=args.project, name=run_name, resume="allow",
                 space_id=args.trackio_space_id, embed=False)
    trackio.log(round_metrics(record), step=record["round"])
    trackio.finish()
