"""The one place that touches private TRL and transformers names. Each is marked with the version it
was checked against: trl 1.16 (pyproject caps trl < 1.17) and transformers 5.17-5.24.

``enable_vllm_colocate_on_cpu`` replaces TRL's colocated-vLLM weight sync on CPU, where it fails.
``CheckpointHooks`` turns transformers' private checkpoint methods into public-named hooks, and
``selective_log_softmax`` is TRL's memory-light helper from its internal ``trainer.utils``.
``zero3_init_disabled`` hides transformers' module-level DeepSpeed config so ``from_pretrained`` loads
whole models under ZeRO-3.

``GRPORolloutHooks`` is a mixin for ``trl.GRPOTrainer`` subclasses. TRL computes group-normalised
advantages inside its private ``_generate_and_score_completions``; upstream plans no public hook for
finer-grained advantages, so this mixin wraps that method (and ``_calculate_rewards``, to keep each
reward function's raw scores) and hands the result to a public-named ``after_rollout`` method.
TRL's ``_compute_loss`` accepts per-token advantages of shape (batch, completion_len).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from .faults import fault_point


def selective_log_softmax(logits, index):
    """``log_softmax(logits).gather(-1, index)`` row by row (TRL's, trl 1.16 ``trl.trainer.utils``)."""
    from trl.trainer.utils import selective_log_softmax as trl_selective_log_softmax

    return trl_selective_log_softmax(logits, index)


def repeat_sampler(ids, args):
    """The sampler ``GRPOTrainer._get_train_sampler`` builds from ``args`` over ``ids`` (TRL's
    ``RepeatSampler``, trl 1.16 ``trl.trainer.utils``, not exported): the order its rollouts draw prompts."""
    from trl.trainer.utils import RepeatSampler

    return RepeatSampler(ids, mini_repeat_count=args.num_generations,
                         batch_size=args.generation_batch_size // args.num_generations,
                         repeat_count=args.num_iterations * args.steps_per_generation,
                         shuffle=args.shuffle_dataset, seed=args.seed)


@contextlib.contextmanager
def zero3_init_disabled():
    """``from_pretrained`` inside loads whole models even when a ZeRO-3 config is live (transformers
    5.17-5.24 keep it in the private ``integrations.deepspeed._hf_deepspeed_config_weak_ref``)."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


EXTRAS_WRITTEN = "checkpoint_extras_written.json"


def last_complete_checkpoint(folder: str | Path, trainer_cls: type) -> str | None:
    """The newest ``checkpoint-N`` in ``folder`` that was written to the end, or None. transformers writes
    ``trainer_state.json`` after the weights, optimizer, scheduler and RNG states, and a ``CheckpointHooks``
    trainer marks its extras after those; a run killed while saving leaves a checkpoint without them,
    which ``get_last_checkpoint`` would resume from and fail on (or resume without the value model)."""
    folder = Path(folder)
    needed = ["trainer_state.json"] + ([EXTRAS_WRITTEN] if issubclass(trainer_cls, CheckpointHooks) else [])
    done = [p for p in folder.glob("checkpoint-*") if p.name.split("-", 1)[1].isdigit()
            and all((p / name).exists() for name in needed)] if folder.is_dir() else []
    return str(max(done, key=lambda p: int(p.name.split("-", 1)[1]))) if done else None


class CheckpointHooks:
    """Mixin for ``transformers.Trainer`` subclasses (TRL's included): public-named hooks around the
    trainer's private checkpoint methods (transformers 5.17-5.24 ``_save_checkpoint``, ``_get_output_dir``,
    ``_save``, ``_load_from_checkpoint``).

    ``save_checkpoint_extras(folder)`` runs after every checkpoint is written; ``save_weights(output_dir)``
    and ``load_weights(folder, model)`` may replace how the weights are saved and resumed (return True
    when they did)."""

    def _save_checkpoint(self, model, trial):  # transformers private
        self._in_checkpoint = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._in_checkpoint = False
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        if folder.is_dir():
            self.save_checkpoint_extras(folder)
            self.accelerator.wait_for_everyone()  # every process's part written before the marker
            if self.args.should_save:
                (folder / EXTRAS_WRITTEN).write_text("{}\n")  # after the extras: the checkpoint is whole
            fault_point(f"checkpoint_saved:{self.state.global_step}", self.accelerator)

    def _save(self, output_dir: str | None = None, state_dict=None):  # transformers private
        if not self.save_weights(output_dir or self.args.output_dir):
            super()._save(output_dir, state_dict)
        if getattr(self, "_in_checkpoint", False):  # a checkpoint's weights written, not yet its state
            fault_point(f"weights_saved:{self.state.global_step}")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None):  # transformers private
        if not self.load_weights(resume_from_checkpoint, model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def save_checkpoint_extras(self, folder: Path) -> None:
        """Write what the trainer's checkpoint leaves out (called on every process)."""

    def save_weights(self, output_dir: str) -> bool:
        """Save the model differently from the trainer; ``False``: the trainer saves it."""
        return False

    def load_weights(self, folder: str, model=None) -> bool:
        """Resume the weights differently from the trainer; ``False``: the trainer loads them."""
        return False


class GRPORolloutHooks:
    """Mixin: ``after_rollout(inputs, output, rewards_per_func)`` may replace ``output["advantages"]``."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # trl 1.16 private
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards  # gathered over processes: (all completions, reward funcs)
        return rewards

    def _generate_and_score_completions(self, inputs):  # trl 1.16 private
        output = super()._generate_and_score_completions(inputs)
        rewards = self._local_rows(self._last_rewards_per_func, len(inputs))
        output = self.after_rollout(inputs, output, rewards)
        # the same answer on every process (the log is a gather): a trainer that replaces the advantages
        if self.args.log_completions and type(self).after_rollout is not GRPORolloutHooks.after_rollout:
            self._log_advantages(output["advantages"], output["completion_mask"])
        return output

    def _log_advantages(self, advantages, mask) -> None:
        """TRL's completion logs (``log_completions``) took GRPO's group advantages before ``after_rollout``
        replaced them; log the ones trained on instead: per completion, the mean over its real tokens (on
        every process: a gather)."""
        if advantages.dim() == 2:
            mask = mask.to(advantages)
            advantages = (advantages * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        gathered = self.accelerator.gather(advantages.detach().float().contiguous()).tolist()
        logged = self._logs["advantages"]  # trl 1.16 private: a deque, this rollout's values last
        for _ in range(min(len(gathered), len(logged))):
            logged.pop()
        logged.extend(gathered)

    def _local_rows(self, gathered, count: int):
        start = self.accelerator.process_index * count
        return gathered[start:start + count]

    def after_rollout(self, inputs: list[dict], output: dict[str, Any], rewards_per_func) -> dict[str, Any]:
        return output

    def per_token_logps(
        self, model, input_ids, attention_mask, logits_to_keep: int, batch_size: int | None = None
    ):
        """Log-probabilities of ``input_ids``' last ``logits_to_keep`` tokens under ``model``."""
        logps, _, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, batch_size
        )
        return logps

    def record_metric(self, name: str, value: float) -> None:
        """Log a scalar with TRL's own metrics (averaged per logging step)."""
        mode = "train" if self.model.training else "eval"
        self._metrics[mode][name].append(float(value))


# --------------------------------------------------------------------- vLLM colocate on CPU

# TRL 1.16's colocated engine (``VLLMGeneration.__init__``) sets these for vLLM and never unsets them.
COLOCATE_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def distributed_env() -> dict[str, str | None]:
    """The launch variables TRL's colocated vLLM overwrites, as they are now (``restore_distributed_env``)."""
    return {key: os.environ.get(key) for key in COLOCATE_ENV}


def restore_distributed_env(saved: dict[str, str | None]) -> None:
    """Put back the launch variables of ``distributed_env()``. Left set in a single process, they make
    the next ``TrainingArguments`` rebuild accelerate's state as a distributed one (world size 1) whose
    barriers fail once a vLLM engine has torn its process group down (seen after PPO, at RCRL's
    ``save_model``)."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

def enable_vllm_colocate_on_cpu() -> bool:
    """Make TRL's colocated vLLM engine (``use_vllm=True, vllm_mode="colocate"``) follow the policy on CPU.

    TRL 1.16's ``VLLMGeneration.sync_weights`` calls the vLLM model's per-tensor ``load_weights``,
    which fails on CPU (vLLM prepacks CPU linear weights and drops their loaders: "'Parameter' object
    has no attribute 'weight_loader'"). On CPU the weights are pushed with vLLM's ``reload_weights``
    instead, the tied output embedding included (leaving it out corrupts a tied head). Returns whether
    the replacement is in place (only on CPU, with the TRL and vLLM versions it was checked on).
    """
    import torch

    if torch.cuda.is_available():
        return False
    try:
        from trl.generation.vllm_generation import VLLMGeneration
    except ImportError:
        return False
    if not _checked_versions():
        return False
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; else vLLM reserves a share of all memory
    if getattr(VLLMGeneration.sync_weights, "_trl_reasoning_cpu", False):
        return True
    original = VLLMGeneration.sync_weights

    def sync_weights(self):
        if self.mode != "colocate":
            return original(self)
        weights = [(name, tensor.detach().clone()) for name, tensor in self._iter_named_params()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(_with_tied_head(weights))})
        self.llm.reset_prefix_cache()

    sync_weights._trl_reasoning_cpu = True
    sync_weights.trl_original = original  # what a test puts back to check that a stage installs this
    VLLMGeneration.sync_weights = sync_weights
    return True


def _with_tied_head(weights: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Add ``lm_head.weight`` from the input embedding when the model ties them (it is not a parameter)."""
    names = {name for name, _ in weights}
    if any(name.endswith("lm_head.weight") for name in names):
        return weights
    embedding = [(name, tensor) for name, tensor in weights if name.endswith("embed_tokens.weight")]
    if len(embedding) == 1:
        prefix = embedding[0][0][: -len("model.embed_tokens.weight")]
        return [*weights, (prefix + "lm_head.weight", embedding[0][1])]
    return weights


def _checked_versions() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        trl_version, vllm_version = version("trl"), _vllm_version()
    except PackageNotFoundError:
        return False
    from packaging.version import Version

    return (Version("1.16") <= Version(trl_version) < Version("1.17") and vllm_version is not None
            and Version("0.22") <= Version(vllm_version) < Version("0.33"))


def _vllm_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for name in ("vllm-cpu", "vllm"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None
