"""Where a rounds run keeps its policies and how it resumes: each round's ``checkpoint/`` (written to a
temporary folder, then renamed), the initial policy (reloaded by ``reinit_each_round``), and the state
rebuilt from the completed rounds' files after a crash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..reporting import read_jsonl
from .selection import normalise_solution


class RoundCheckpoints:
    """Checkpoint and resume methods of a ``RoundsTrainer`` (a mixin: needs ``args``, ``state``,
    ``model``, ``processing_class``, ``run_dir``, ``history``, ``kept_union``, ``seen``, ``solved``,
    ``model_reference``, ``_round_dir`` and ``_set_policy``)."""

    def _save_checkpoint(self, folder: Path) -> None:
        if self.state.is_main_process:
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self.model.save_pretrained(tmp)
            self.processing_class.save_pretrained(tmp)
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        self.state.wait_for_everyone()

    def _initial_model_path(self) -> Path | str:
        """Where the initial policy can be reloaded from (restarts, vLLM and QLoRA's quantized base need
        it): the model reference when one was given, else a copy saved into the run folder."""
        if self.model_reference is not None:
            return self.model_reference
        folder = self.run_dir / "initial_model"
        reloaded = self.args.reinit_each_round or getattr(self, "quantization_config", None) is not None
        if reloaded:
            exists = (folder / "config.json").exists()
            self.state.wait_for_everyone()  # every process has looked before the main one writes: all agree
            if not exists:
                self._save_checkpoint(folder)
        return folder

    def _reload(self, folder: Path | str):
        from ..loading import load_model, trusts_remote_code

        return load_model(str(folder), device=str(self.state.device),
                          trust_remote_code=trusts_remote_code(self.args))

    def _quantized_base(self):
        """The current policy, quantized, from where it was last saved (the initial policy when every
        round restarts from it)."""
        from ..loading import load_model, trusts_remote_code

        folder = self._initial_model_path() if self.args.reinit_each_round else self._current_checkpoint()
        base = load_model(str(folder), device=str(self.state.device),
                          quantization_config=self.quantization_config,
                          trust_remote_code=trusts_remote_code(self.args))
        return self.prepared_base(base)

    def prepared_base(self, model):
        """A freshly loaded base before a round trains on it (subclasses add what their policy has)."""
        return model

    def _latest_checkpoint(self) -> Path | None:
        for record in reversed(self.history):
            folder = self._round_dir(record["round"]) / "checkpoint"
            if folder.exists():
                return folder
        return None

    def _current_checkpoint(self) -> Path | str:
        return self._latest_checkpoint() or self._initial_model_path()

    # ------------------------------------------------------------------ evaluation and records

    def _resume(self) -> int:
        """Load completed rounds from the run folder; returns the first round still to run."""
        next_round = 0
        while (self._round_dir(next_round) / "metrics.json").exists():
            round_dir = self._round_dir(next_round)
            self.history.append(json.loads((round_dir / "metrics.json").read_text()))
            if (round_dir / "kept.jsonl").exists():
                kept = read_jsonl(round_dir / "kept.jsonl")
                self.kept_union.extend(kept)
                self.seen.update((k["id"], normalise_solution(k["completion"])) for k in kept)
            if (round_dir / "samples.jsonl").exists():
                self.solved.update(s["id"] for s in read_jsonl(round_dir / "samples.jsonl") if s["correct"])
            next_round += 1
        if next_round > 1:
            self._set_policy(self._reload(self._current_checkpoint()))
            self.policy_fine_tuned = self.policy_fine_tuned or self._latest_checkpoint() is not None
        return next_round
