"""``ReasoningEvalCallback``: held-out task accuracy (maj@1, maj@k, pass@k, rerank@k) while any
transformers or TRL trainer trains, not only its reward and loss.

Every ``eval_steps`` optimizer steps (else at the end of every epoch) it samples the held-out questions
with the project's ``Sampler``, scores them with the task's verifier (``evaluation.evaluate``, the code
behind ``trl-reasoning eval``, so the same checkpoint, settings and seed give the same figures), logs
the metrics through the trainer's ``report_to`` as ``reasoning/<metric>``, appends them to
``<output_dir>/reasoning_eval/metrics.json`` with the number of completions the trainer has sampled so
far, and redraws ``accuracy_vs_samples.png``. With TRL's colocated vLLM engine it samples through that
engine (after pushing the current weights into it) instead of starting another.

    trainer = GRPOTrainer(model, reward_funcs=correctness_reward, args=args, train_dataset=train)
    trainer.add_callback(ReasoningEvalCallback(trainer, held_out, task="svamp"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

from transformers import Trainer, TrainerCallback

from .evaluation import EvalSettings, RewardScorer, evaluate
from .reporting import plot_curves, write_json_atomic, write_jsonl_atomic
from .sampling import Sampler, answer_pattern_for
from .time_budget import budget_in

METRICS_FILE = "metrics.json"
PLOT_FILE = "accuracy_vs_samples.png"


@dataclasses.dataclass
class TrainingEvalSettings(EvalSettings):
    """A recipe's ``training_eval`` section: ``EvalSettings`` plus when and on how many questions."""

    eval_steps: int | None = dataclasses.field(default=None, metadata={
        "help": "Evaluate every this many optimizer steps; default: at the end of every epoch."})
    limit: int | None = dataclasses.field(default=None, metadata={
        "help": "Evaluate on only the first N held-out questions."})

    def eval_settings(self) -> EvalSettings:
        fields = {f.name for f in dataclasses.fields(EvalSettings)}
        return EvalSettings(**{k: v for k, v in dataclasses.asdict(self).items() if k in fields})


def bind_callbacks(trainer, callbacks) -> None:
    """Point the ``ReasoningEvalCallback``s built without a trainer (recipes) at ``trainer``."""
    for callback in callbacks or []:
        if isinstance(callback, ReasoningEvalCallback) and callback.trainer is None:
            callback.bind(trainer)


class ReasoningEvalCallback(TrainerCallback):
    """Evaluate the policy on held-out questions during training and log the paper's metrics.

    Args:
        trainer: the trainer whose model is evaluated (as TRL's ``LogCompletionsCallback`` takes it);
            ``None`` when a ``RoundsTrainer`` binds it to each round's fine-tune (``bind``).
        eval_dataset: rows with ``prompt`` (text or chat messages), ``answer`` and ``id`` (``load_task``
            then ``add_prompts`` give them).
        task: the task whose verifier scores the answers (``gsm8k``, ``svamp``, ``math``, ...).
        settings: K, temperature, lengths, seed, backend and answer extraction (``EvalSettings``).
        eval_steps: evaluate every this many optimizer steps; default the trainer's ``eval_steps`` when
            its ``eval_strategy`` is ``steps``, else once per epoch.
        reward_scorer: ``(prompts, completions) -> scores`` for rerank@k (a reward model's
            ``rerank_scorer``).
        output_dir: where ``metrics.json`` and the plot go; default ``<args.output_dir>/reasoning_eval``.
        save_samples: also write every evaluation's scored completions (``samples-step-N.jsonl``).
    """

    def __init__(self, trainer, eval_dataset, task: str, settings: EvalSettings | None = None,
                 eval_steps: int | None = None, reward_scorer: RewardScorer | None = None,
                 output_dir: str | Path | None = None, save_samples: bool = False):
        for column in ("prompt", "answer"):
            if column not in eval_dataset.column_names:
                raise ValueError(f"eval_dataset: needs a '{column}' column (load_task + add_prompts give it)")
        if "id" not in eval_dataset.column_names:
            eval_dataset = eval_dataset.add_column("id", [str(i) for i in range(len(eval_dataset))])
        if eval_steps is not None and eval_steps < 1:
            raise ValueError(f"eval_steps: need an integer >= 1, got {eval_steps}")
        self.eval_dataset, self.task = eval_dataset, task
        self.settings = settings or EvalSettings()
        self.eval_steps, self.reward_scorer = eval_steps, reward_scorer
        self.output_dir = Path(output_dir) if output_dir else None
        self.save_samples = save_samples
        self.history: list[dict] = []
        self.trainer = None
        self._sampler: Sampler | None = None
        self.samples_before, self.label = 0, None
        self._began: float | None = None  # when this process began training (the time of the points)
        if trainer is not None:
            self.bind(trainer)

    def bind(self, trainer, samples_before: int = 0, label: str | None = None) -> ReasoningEvalCallback:
        """Evaluate ``trainer``'s model from now on; ``samples_before`` completions were sampled before it
        started (earlier rounds), ``label`` names its evaluations (``round 2``)."""
        self.trainer, self.samples_before, self.label = trainer, samples_before, label
        if self.output_dir is None:
            self.output_dir = Path(trainer.args.output_dir) / "reasoning_eval"
        if self.eval_steps is None and str(trainer.args.eval_strategy).endswith("steps"):
            self.eval_steps = int(trainer.args.eval_steps) if trainer.args.eval_steps else None
        return self

    # ------------------------------------------------------------------ trainer events

    def on_train_begin(self, args, state, control, **kwargs):
        """A resumed run keeps the evaluations written before the checkpoint it resumes from."""
        if self.trainer is None:
            raise ValueError("ReasoningEvalCallback: no trainer to evaluate: pass it to the constructor "
                             "(ReasoningEvalCallback(trainer, ...)) or call bind(trainer)")
        path = self.output_dir / METRICS_FILE
        if path.exists() and not self.history:
            saved = json.loads(path.read_text()).get("evaluations", [])
            self.history = [e for e in saved
                            if e.get("label") != self.label or e["step"] <= state.global_step]
        if self._began is None:  # a resumed run's clock goes on from its last kept evaluation
            before = next((e.get("seconds") for e in reversed(self.history) if e.get("label") == self.label),
                          None)
            self._began = time.monotonic() - (before or 0.0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.eval_steps and state.global_step % self.eval_steps == 0:
            self.run(state)

    def on_epoch_end(self, args, state, control, **kwargs):
        if not self.eval_steps:
            self.run(state)

    def on_train_end(self, args, state, control, **kwargs):
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None

    # ------------------------------------------------------------------ one evaluation

    def run(self, state) -> dict:
        """Evaluate the current policy now; returns the logged metrics (on every process)."""
        trainer = self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        sampler = self._sampler_for(model)
        with _eval_mode(model):
            report = evaluate(model, trainer.processing_class, self.eval_dataset, self.task, self.settings,
                              reward_scorer=self.reward_scorer, sampler=sampler)
        drawn = self.samples_before + samples_drawn(trainer, state.global_step)
        entry = {
            "step": state.global_step, "epoch": state.epoch, "label": self.label, "samples_drawn": drawn,
            "seconds": self.training_seconds(), "metrics": report["metrics"],
            "confidence_intervals": report["confidence_intervals"], "exploration": report["exploration"],
            "throughput": report["throughput"],
        }
        self.history.append(entry)
        logs = {f"reasoning/{name}": value for name, value in report["metrics"].items()}
        logs["reasoning/samples_drawn"] = drawn
        Trainer.log(trainer, logs)  # transformers' log: report_to sees it; TRL's would flush its own metrics
        if trainer.is_world_process_zero():
            self._write()
            if self.save_samples:
                prefix = f"samples-{self.label.replace(' ', '-')}" if self.label else "samples"
                name = f"{prefix}-step-{state.global_step}.jsonl"
                write_jsonl_atomic(self.output_dir / name, report["records"])
        return logs

    def training_seconds(self) -> float:
        """Training seconds so far (this evaluation's included): the trainer's ``WallClockBudget`` clock
        when it has one (it survives a resume, and in EI and RCRL counts the rounds' sampling), else the
        time since training began, going on from the last evaluation kept by a resumed run."""
        budget = budget_in(self.trainer.callback_handler.callbacks)
        if budget is not None:
            return budget.elapsed()
        return time.monotonic() - self._began if self._began is not None else 0.0

    def _sampler_for(self, model) -> Sampler:
        """One sampler for the run: on TRL's colocated vLLM engine when the trainer has one."""
        engine = colocated_engine(self.trainer)
        if engine is not None:
            self.trainer.vllm_generation.sync_weights()  # the engine may hold the last rollout's weights
        if self._sampler is None:
            self._sampler = Sampler(model, self.trainer.processing_class, self.settings,
                                    answer_pattern_for(self.task), engine=engine)
        else:
            self._sampler.load_weights(model)  # its own engine (if any) follows the training
        return self._sampler

    def _write(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        settings = dataclasses.asdict(self.settings)
        write_json_atomic(self.output_dir / METRICS_FILE, {
            "task": self.task, "num_questions": len(self.eval_dataset), "settings": settings,
            "evaluations": self.history,
        })
        names = [n for n in self.history[-1]["metrics"] if n == "maj@1" or n.startswith(("pass@", "maj@"))]
        wanted = [n for n in names if n in ("maj@1", f"maj@{self.settings.num_generations}",
                                            f"pass@{self.settings.num_generations}")]
        by_samples = any(e["samples_drawn"] for e in self.history)
        xs = [e["samples_drawn"] if by_samples else e["step"] for e in self.history]
        curves = {n: (xs, [e["metrics"].get(n, float("nan")) for e in self.history]) for n in wanted}
        plot_curves(self.output_dir / PLOT_FILE, curves,
                    "completions sampled for training" if by_samples else "optimizer step",
                    "held-out accuracy", f"{self.task}: accuracy during training")


def colocated_engine(trainer):
    """The ``vllm.LLM`` of a TRL trainer that generates with a colocated engine, else None."""
    generation = getattr(trainer, "vllm_generation", None)
    if generation is None or getattr(generation, "mode", None) != "colocate":
        return None
    return getattr(generation, "llm", None)


def samples_drawn(trainer, global_step: int) -> int:
    """Completions the trainer has sampled for training so far, over all processes.

    The project's PPO counts them (``samples_seen``); for a TRL GRPO-style trainer each optimizer step
    trains on ``per_device_train_batch_size x gradient_accumulation_steps x world size`` completions, each
    reused for ``num_iterations`` steps; a trainer that samples nothing (SFT) has drawn 0."""
    from trl import GRPOTrainer

    if hasattr(trainer, "samples_seen"):
        return int(trainer.samples_seen)
    if not isinstance(trainer, GRPOTrainer):
        return 0
    args = trainer.args
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    return int(global_step * per_step / max(getattr(args, "num_iterations", 1), 1))


@contextlib.contextmanager
def _eval_mode(model):
    """Eval mode (no dropout) and the model's own forward: accelerate wraps it in the mixed-precision
    autocast for training, while a saved checkpoint, and so ``trl-reasoning eval``, runs without it."""
    was_training, wrapped = model.training, model.__dict__.get("forward")
    original = getattr(model, "_original_forward", None)
    model.eval()
    if wrapped is not None and original is not None:
        model.forward = original
    try:
        yield
    finally:
        model.train(was_training)
        if wrapped is not None and original is not None:
            model.forward = wrapped
