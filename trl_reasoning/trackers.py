"""Per-round figures of the rounds trainers (EI, RCRL) to the trackers of ``report_to``, beside each
round's ``metrics.json``: the trainer's own loss reaches them through transformers' callbacks, the
round's maj@1, pass@k, kept solutions and sample counts through here, to trackio (local-first) and wandb
(``WANDB_MODE=offline`` needs no account), as a run of its own named ``<run>-rounds`` with the round index
as its x-axis; other trackers get the per-step loss only."""

from __future__ import annotations

from numbers import Number

SUPPORTED = ("trackio", "wandb")


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
    trackers = args.report_to or []
    if "trackio" in trackers:
        import trackio

        trackio.init(project=args.project, name=run_name, resume="allow",
                     space_id=args.trackio_space_id, embed=False)
        trackio.log(round_metrics(record), step=record["round"])
        trackio.finish()
    if "wandb" in trackers:
        _wandb_round(args, record, run_name)


def wandb_run_id(run_name: str) -> str:
    """A stable wandb run id for ``run_name``: every round of a run, and its resumption, log to one run."""
    import hashlib

    return "rounds-" + hashlib.sha1(run_name.encode()).hexdigest()[:16]


def _wandb_round(args, record: dict, run_name: str) -> None:
    import os

    import wandb

    # a run of its own beside the trainer's (whose steps are optimizer steps): x-axis "round"
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", args.project), name=run_name,
                     id=wandb_run_id(run_name), resume="allow", reinit="create_new")
    run.define_metric("round")
    run.define_metric("*", step_metric="round")
    run.log({"round": record["round"], **round_metrics(record)})
    run.finish()


# tracker name in report_to -> (module it needs, how to install it)
TRACKER_PACKAGES = {
    "trackio": ("trackio", "pip install 'trl-reasoning[trackio]'"),
    "wandb": ("wandb", "pip install 'trl-reasoning[wandb]'"),
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "mlflow": ("mlflow", "pip install mlflow"),
    "comet_ml": ("comet_ml", "pip install comet_ml"),
}


def check_installed(recipe) -> None:
    """Every tracker ``report_to`` names (top level or a stage section) is installed, before hours of work."""
    import importlib.util

    from .errors import RecipeError

    named = [("report_to", recipe.report_to)] + [(f"{name}.report_to", section["report_to"])
                                                  for name, section in recipe.sections.items()
                                                  if isinstance(section, dict) and "report_to" in section]
    for key, value in named:
        for tracker in [value] if isinstance(value, str) else value or []:
            module, install = TRACKER_PACKAGES.get(tracker, (None, ""))
            if module and importlib.util.find_spec(module) is None:
                raise RecipeError(f"recipe: '{key}' names {tracker!r}, which is not installed: {install}")
