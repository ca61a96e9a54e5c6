"""What a rounds run leaves for people: ``metrics.json``, accuracy-vs-samples and exploration plots, and
a model card (method, configuration, per-round metrics) saved with the model and pushed to the Hub.
Titles and cards name the running subclass's algorithm (``algorithm_name``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..distributed import world
from ..reporting import markdown_table, plot_curves, write_json_atomic, write_text_atomic
from ..trackers import log_round

INTERVAL_PREFIX = "ci95/"  # eval entries holding a metric's bootstrap interval [low, high]


def _metric_names(metrics: dict) -> list[str]:
    """The accuracy metrics of an eval record (not exploration statistics or intervals)."""
    return [n for n in metrics if not n.startswith(("exploration/", INTERVAL_PREFIX))]


def _config_fields(args) -> dict:
    """The algorithm's own settings (fields its config adds to ``SFTConfig``) plus the main training ones."""
    from trl import SFTConfig

    inherited = {f.name for f in dataclasses.fields(SFTConfig)}
    keep = {"learning_rate", "num_train_epochs", "per_device_train_batch_size", "seed"}
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(args)
        if f.name not in inherited or f.name in keep
    }


class RoundReports:
    """Reports of a ``RoundsTrainer`` (a mixin: needs ``args``, ``state``, ``history``, ``model``,
    ``processing_class``, ``run_dir``, ``_round_dir`` and the ``algorithm_*`` names)."""

    def _finish_round(self, round_index: int, metrics: dict, train_stats: dict, seconds: dict) -> None:
        """Record a finished round: ``round_NNN/metrics.json`` (written last: it marks the round whole),
        the trackers and the round's summary line."""
        previous = self.history[-1] if self.history else {"cumulative_samples": 0, "cumulative_tokens": 0}
        record = {
            "round": round_index,
            "cumulative_samples": previous["cumulative_samples"] + train_stats.get("samples", 0),
            "cumulative_tokens": previous["cumulative_tokens"] + train_stats.get("tokens", 0),
            "eval": metrics,
            "train": train_stats,
            "seconds": seconds,
            **world(self.state),
        }
        self.history.append(record)
        if self.state.is_main_process:
            write_json_atomic(self._round_dir(round_index) / "metrics.json", record)
            log_round(self.args, record, f"{self.args.run_name or self.run_dir.name}-rounds")
        self.state.wait_for_everyone()
        from ..progress import round_summary

        round_summary(record, self.state)

    def _write_run_report(self) -> None:
        if not self.state.is_main_process:
            return
        write_json_atomic(self.run_dir / "metrics.json", {"rounds": self.history})
        xs = [r["cumulative_samples"] for r in self.history]
        names = _metric_names(self.history[0]["eval"])
        if names:
            curves = {n: (xs, [r["eval"].get(n, float("nan")) for r in self.history]) for n in names}
            bands = {
                n: tuple(
                    zip(
                        *(r["eval"].get(INTERVAL_PREFIX + n, [float("nan")] * 2) for r in self.history),
                        strict=True,
                    )
                )
                for n in names
            }
            plot_curves(self.run_dir / "accuracy_vs_samples.png", curves, "cumulative sampled solutions",
                        "accuracy on eval set (95% bootstrap band)", f"{self.algorithm_name}: accuracy vs "
                                                                     "samples",
                        bands=bands)
        trained = [r for r in self.history if r["train"]]
        if trained:
            keys = ("sample_accuracy", "questions_solved", "questions_solved_cumulative")
            curves = {k: ([r["round"] for r in trained], [r["train"][k] for r in trained]) for k in keys}
            plot_curves(self.run_dir / "exploration.png", curves, "round", "share",
                        f"{self.algorithm_name}: exploration", integer_x=True)
        write_text_atomic(self.run_dir / "README.md", self.model_card())

    def model_card(self) -> str:
        """A Hub model card: the method, the configuration and the per-round metrics table."""
        names = _metric_names(self.history[0]["eval"] if self.history else {})
        rows = [[r["round"], r["cumulative_samples"], *(r["eval"].get(n, float("nan")) for n in names)]
                for r in self.history]
        config = _config_fields(self.args)
        return "\n".join(
            [
                "---",
                "library_name: transformers",
                f"tags: [trl, trl-reasoning, {self.algorithm_tag}]",
                "---",
                "",
                f"# {self.algorithm_name} policy",
                "",
                f"Trained with trl-reasoning's {self.algorithm_name} (Havrilla et al., 2024): "
                f"{self.algorithm_summary}.",
                "",
                "## Metrics per round",
                "",
                markdown_table(["round", "cumulative samples", *names], rows),
                "",
                f"## {self.algorithm_name} configuration",
                "",
                markdown_table(["field", "value"], [[k, v] for k, v in config.items()]),
                "",
            ]
        )

    def save_model(self, output_dir: str | None = None) -> None:
        """Save the current policy and tokenizer (``output_dir`` defaults to ``args.output_dir``)."""
        folder = Path(output_dir or self.args.output_dir)
        if self.state.is_main_process:
            self.model.save_pretrained(folder)
            self.processing_class.save_pretrained(folder)
            if self.history:
                write_text_atomic(folder / "README.md", self.model_card())
        self.state.wait_for_everyone()

    def push_to_hub(self, repo_id: str | None = None, **kwargs) -> str:
        """Push the policy with its model card (metrics table and configuration) to the Hub."""
        from huggingface_hub import upload_folder

        folder = Path(self.args.output_dir) / "final_model"
        self.save_model(str(folder))
        repo_id = repo_id or self.args.hub_model_id or folder.parent.name
        if self.state.is_main_process:
            from huggingface_hub import create_repo

            create_repo(repo_id, exist_ok=True, private=self.args.hub_private_repo)
            upload_folder(repo_id=repo_id, folder_path=str(folder), **kwargs)
        return repo_id
