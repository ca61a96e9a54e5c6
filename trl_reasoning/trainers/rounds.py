"""The rounds loop of Expert Iteration and return-conditioned RL (Havrilla et al., 2024, sections 3.1, 3.3).

Each round samples K solutions per training question from the current policy (one ``Sampler``, one
vLLM engine for the whole run, weights reloaded in place), scores them with the verifier or the given
TRL ``reward_funcs``, selects the rows to train on (the subclass decides which: ``training_rows``),
fine-tunes with TRL's ``SFTTrainer`` on everything selected so far, and evaluates on
``eval_dataset``. Round 0 evaluates the initial policy. Every round writes
``round_NNN/{samples,kept}.jsonl``, a ``checkpoint/`` and ``metrics.json`` (written last: it marks the
round complete) atomically, so a rerun of the same command resumes after the last complete round and
reuses a crashed round's samples.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..distributed import whole_copy, zero3_enabled
from ..evaluation import EvalSettings, evaluate
from ..faults import fault_point
from ..reporting import read_jsonl, write_jsonl_atomic
from ..rewards import CorrectnessReward
from ..sampling import Sampler, SamplingSettings, answer_pattern_for
from ..tasks import TRAINING_PROMPT, completion_target, prompted_as_trained
from ..time_budget import budget_in, round_fits
from ..verifiers import equations_hold
from .expert_iteration_config import ExpertIterationConfig
from .round_checkpoints import RoundCheckpoints
from .round_reports import INTERVAL_PREFIX, RoundReports
from .round_sampling import sample_in_pieces
from .selection import select_solutions, sft_pair
from .sft import merged_into_full_precision


class RoundsTrainer(RoundCheckpoints, RoundReports):
    """The rounds loop shared by Expert Iteration and return-conditioned RL, with TRL's trainer interface.

    Subclasses set ``algorithm_name``/``algorithm_tag``/``algorithm_summary`` and decide what a round
    trains on (``training_rows``), and may condition sampling (``sampling_prompts``,
    ``sampling_logits_processors``) or the training text (``training_pair``).

    Args:
        model: policy to improve: a model id/folder (``str``) or a ``PreTrainedModel``.
        args: an ``ExpertIterationConfig``.
        train_dataset: questions to sample on; needs ``prompt`` (string or chat messages), ``id`` and
            the columns the reward functions read (``answer`` for the built-in verifier).
        eval_dataset: evaluated after every round (same columns); optional.
        processing_class: the tokenizer (loaded from ``model`` when it is a string and this is None).
        reward_funcs: TRL reward functions ``(prompts, completions, **columns) -> list[float]``; their
            sum is compared with ``args.reward_threshold``. Defaults to the task's verifier.
        peft_config: a PEFT config; each round trains an adapter, merged into the policy afterwards.
        quantization_config: a ``BitsAndBytesConfig`` (QLoRA; needs ``peft_config``): each round's adapter
            trains on a quantized copy of the policy, loaded from its last checkpoint, and is merged into
            the full-precision policy, which is what samples and is saved.
        callbacks: ``transformers.TrainerCallback``s passed to every round's ``SFTTrainer``.
    """

    algorithm_name = "rounds of sampling and fine-tuning"  # model card and plot titles name the subclass's
    algorithm_tag = "rounds"
    algorithm_summary = "sample, score, select, fine-tune, repeat"

    def __init__(
        self,
        model,
        args: ExpertIterationConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        reward_funcs: Callable | Sequence[Callable] | None = None,
        peft_config=None,
        callbacks=None,
        quantization_config=None,
    ):
        from ..loading import load_model, load_tokenizer, process_state, trusts_remote_code

        self.args = args or ExpertIterationConfig(output_dir="runs/expert_iteration")
        _check_dataset(train_dataset, "train_dataset", True, self.algorithm_name)
        _check_dataset(eval_dataset, "eval_dataset", False, self.algorithm_name)
        self.state = process_state()
        trust = trusts_remote_code(self.args)  # TRL's model_init_kwargs, for a model given by name
        self.model = load_model(model, device=str(self.state.device), trust_remote_code=trust) \
            if isinstance(model, str) else model
        self.model_reference = model if isinstance(model, str) else None
        self.processing_class = processing_class or load_tokenizer(model, trust_remote_code=trust)
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        if reward_funcs is None:
            reward_funcs = [CorrectnessReward(self.args.task, self.args.extraction)]
        self.reward_funcs = list(reward_funcs) if isinstance(reward_funcs, Sequence) else [reward_funcs]
        if peft_config is not None and zero3_enabled():
            raise ValueError(f"peft_config: {self.algorithm_name} merges each round's adapter, which ZeRO-3 "
                             "shards cannot do; use zero2 (or no peft_config)")
        if quantization_config is not None and peft_config is None:
            raise ValueError("quantization_config: a quantized policy trains adapters only; pass a "
                             "peft_config (QLoRA)")
        self.peft_config, self.callbacks = peft_config, callbacks
        self.quantization_config = quantization_config
        self.run_dir = Path(self.args.output_dir)
        self.history: list[dict] = []
        self.seen: set[tuple[str, str]] = set()
        self.kept_union: list[dict] = []
        self.solved: set[str] = set()
        self._sampler: Sampler | None = None
        self.policy_fine_tuned = False  # then it is prompted as trained (``prompted_as_trained``)

    # ------------------------------------------------------------------ run

    def train(self) -> list[dict]:
        """Run (or resume) all rounds; returns the per-round metrics."""
        initial = self._initial_model_path()
        start = self._resume()
        try:
            if start == 0:
                began = time.perf_counter()
                metrics = self._evaluate()
                seconds = {"evaluation": time.perf_counter() - began}
                self._finish_round(0, metrics, train_stats={}, seconds=seconds)
                start = 1
            for round_index in range(start, self.args.num_rounds + 1):
                if self._over_budget():
                    break
                added = self._run_round(round_index, initial)
                if added == 0 and self.args.stop_when_no_new_solutions:
                    break
        finally:
            self.close_sampler()
        self._write_run_report()
        return self.history

    def _run_round(self, round_index: int, initial: Path | str) -> int:
        from ..progress import round_header

        round_header(self.algorithm_name, round_index, self.args.num_rounds, len(self.train_dataset),
                     self.args.num_generations, self.state)
        round_dir = self._round_dir(round_index)
        t0 = time.perf_counter()
        samples = self._samples_for_round(round_index, round_dir)
        t1 = time.perf_counter()
        kept = self._kept_for_round(samples, round_dir)
        if self.args.reinit_each_round:
            self._set_policy(self._reload(initial))
        if self.kept_union and (kept or self.args.reinit_each_round):
            self._fine_tune(self.kept_union, round_dir, samples_drawn=len(samples))
        t2 = time.perf_counter()
        metrics = self._evaluate()
        stats = self._train_stats(samples, kept)
        seconds = {"sampling": t1 - t0, "fine_tuning": t2 - t1, "evaluation": time.perf_counter() - t2}
        self._finish_round(round_index, metrics, stats, seconds)
        return len(kept)

    # ------------------------------------------------------------------ sampling and filtering

    def sampling_prompts(self, round_index: int) -> list:
        """Prompts sampled in ``round_index`` (subclasses condition them)."""
        return self.prompted(self.train_dataset)["prompt"]

    def prompted(self, dataset):
        """``dataset`` with the prompts the current policy takes: its training prompts once fine-tuned."""
        return prompted_as_trained(dataset) if self.policy_fine_tuned else dataset

    def sampling_logits_processors(self, round_index: int) -> list:
        """transformers ``LogitsProcessor``s for the round's sampling (subclasses force tokens)."""
        return []

    def training_pair(self, prompt, row: dict) -> dict:
        """The SFT example for a kept sample (subclasses tag it)."""
        return sft_pair(prompt, row["completion"])

    def _samples_for_round(self, round_index: int, round_dir: Path) -> list[dict]:
        """Sample and score, or reuse the samples a crashed run already wrote for this round."""
        path = round_dir / "samples.jsonl"
        if path.exists():
            return read_jsonl(path)
        completions = sample_in_pieces(
            self.sampler(), list(self.sampling_prompts(round_index)), self.args.seed * 1000 + round_index,
            self.sampling_logits_processors(round_index), round_dir, self.args.sampling_piece_size,
            self.state,
        )
        samples = self._score(completions)
        if self.state.is_main_process:
            write_jsonl_atomic(path, samples)
        self.state.wait_for_everyone()
        fault_point(f"samples_written:{round_index}")
        return samples

    def sampler(self) -> Sampler:
        """The run's one ``Sampler`` (one vLLM engine for all rounds), started at first use."""
        if self._sampler is None:
            a = self.args
            settings = SamplingSettings(
                num_generations=a.num_generations, temperature=a.temperature, top_p=a.top_p,
                max_new_tokens=a.max_new_tokens, batch_size=a.generation_batch_size, seed=a.seed,
                **a.backend_settings(),
            )
            self._sampler = Sampler(self.model, self.processing_class, settings, answer_pattern_for(a.task),
                                    model_path=self.sampler_start_path())
        return self._sampler

    def sampler_start_path(self) -> str | None:
        """A folder or Hub id holding the current policy's architecture and vocabulary, from which a
        vLLM engine may start (its weights are then replaced by the policy's); None: save one."""
        from ..loading import resolve

        latest = self._latest_checkpoint()
        if latest is not None:
            return str(latest)
        return (
            resolve(self.model_reference)[0] if self.model_reference is not None else None
        )  # .gguf: its folder

    def _set_policy(self, model) -> None:
        self.model = model
        if self._sampler is not None:
            self._sampler.load_weights(model)

    def close_sampler(self) -> None:
        """Stop the run's sampling engine (``train`` does this when it ends)."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None

    def _score(self, completions: list[list]) -> list[dict]:
        rows = self.train_dataset.to_list()
        flat = [(row, c) for row, group in zip(rows, completions, strict=True) for c in group]
        columns = {key: [row[key] for row, _ in flat] for key in rows[0] if key != "prompt"}
        prompts = [row["prompt"] for row, _ in flat]
        texts = [c.text for _, c in flat]
        totals = [0.0] * len(flat)
        for func in self.reward_funcs:
            rewards = func(prompts=prompts, completions=texts, completion_ids=None, **columns)
            totals = [t + (r or 0.0) for t, r in zip(totals, rewards, strict=True)]
        samples = []
        for (row, c), total in zip(flat, totals, strict=True):
            holds = equations_hold(c.text) if self.args.check_equations else True
            answered = total >= self.args.reward_threshold
            samples.append({"id": row["id"], "completion": c.text, "num_tokens": c.num_tokens,
                            "reward": total, "correct": answered and holds, "lucky": answered and not holds})
        return samples

    def training_rows(self, samples: list[dict]) -> list[dict]:
        """The rows this round adds to the training set (``_select`` deduplicates and caps them)."""
        raise NotImplementedError(f"{type(self).__name__} must define training_rows(samples)")

    def _select(self, samples: list[dict], only_correct: bool) -> list[dict]:
        counts: dict[str, int] = {}
        for row in self.kept_union:
            if not row.get("reference"):
                counts[row["id"]] = counts.get(row["id"], 0) + 1
        cap = self.args.max_solutions_per_question
        kept = select_solutions(samples, self.seen, cap, counts, only_correct, self.args.deduplicate)
        if self.args.include_reference_solutions:
            references = [
                {
                    "id": row["id"],
                    "completion": completion_target(row["solution"]),
                    "correct": True,
                    "reference": True,
                }
                for row in self.train_dataset
            ]
            kept += select_solutions(references, self.seen, None)
        return kept

    def _kept_for_round(self, samples: list[dict], round_dir: Path) -> list[dict]:
        kept = self.training_rows(samples)
        if self.state.is_main_process:
            write_jsonl_atomic(round_dir / "kept.jsonl", kept)
        self.kept_union.extend(kept)
        self.solved.update(s["id"] for s in samples if s["correct"])
        return kept

    # ------------------------------------------------------------------ fine-tuning

    def round_trainer(self, rows: list[dict], round_dir: Path):
        """The TRL ``SFTTrainer`` that fine-tunes the policy on ``rows`` in the round ``round_dir``."""
        from datasets import Dataset
        from trl import SFTTrainer

        column = TRAINING_PROMPT if TRAINING_PROMPT in self.train_dataset.column_names else "prompt"
        prompts = dict(zip(self.train_dataset["id"], self.train_dataset[column], strict=True))
        pairs = [self.training_pair(prompts[row["id"]], row) for row in rows]
        # completion_only_loss explicitly: TRL infers it only for prompt/completion columns, and would put
        # the loss on the prompt (and RCRL's dense tags) of pre-tokenised rows that carry a completion_mask
        args = dataclasses.replace(
            self.args, output_dir=str(round_dir / "trainer"), save_strategy="no", push_to_hub=False,
            seed=self.args.seed + len(self.history), completion_only_loss=True,
        )
        return SFTTrainer(
            model=self._quantized_base() if self.quantization_config is not None else self.model,
            args=args,
            train_dataset=Dataset.from_list(pairs),
            processing_class=self.processing_class,
            peft_config=self.peft_config,
            callbacks=self.callbacks,
        )

    def _fine_tune(self, rows: list[dict], round_dir: Path, samples_drawn: int = 0) -> None:
        trainer = self.round_trainer(rows, round_dir)
        self._bind_eval_callbacks(trainer, samples_drawn)
        trainer.train()
        if self.quantization_config is not None:  # QLoRA: the adapters go into the full-precision policy
            model = merged_into_full_precision(trainer, self.model, round_dir / "adapter")
        else:
            model = whole_copy(trainer.model)  # ZeRO-3 leaves shards: sampling and saving need the whole
            if self.peft_config is not None:
                model = model.merge_and_unload()
        self._set_policy(model.eval())
        self.policy_fine_tuned = True
        self._save_checkpoint(round_dir / "checkpoint")

    def _bind_eval_callbacks(self, trainer, this_round: int) -> None:
        """``ReasoningEvalCallback``s evaluate this round's fine-tune; ``this_round`` samples were drawn
        in the round, on top of the earlier rounds'."""
        from ..eval_callback import ReasoningEvalCallback

        spent = self.history[-1]["cumulative_samples"] if self.history else 0
        for callback in self.callbacks or []:
            if isinstance(callback, ReasoningEvalCallback):
                callback.bind(trainer, samples_before=spent + this_round, label=f"round {len(self.history)}")

    def _evaluate(self, dataset=None, greedy_only: bool = False, logits_processors=()) -> dict:
        dataset = dataset if dataset is not None else self.prompted(self.eval_dataset)
        if dataset is None:
            return {}
        settings = EvalSettings(
            num_generations=1 if greedy_only else self.args.eval_num_generations,
            temperature=0.0 if greedy_only else self.args.eval_temperature,
            max_new_tokens=self.args.max_new_tokens,
            batch_size=self.args.generation_batch_size,
            seed=self.args.seed,
            extraction=self.args.extraction,
            **self.args.backend_settings(),
        )
        report = evaluate(self.model, self.processing_class, dataset, self.args.task, settings,
                          logits_processors=logits_processors, sampler=self.sampler())
        return {**report["metrics"], **{f"exploration/{k}": v for k, v in report["exploration"].items()},
                **{f"{INTERVAL_PREFIX}{k}": v for k, v in report["confidence_intervals"].items()}}

    def _train_stats(self, samples: list[dict], kept: list[dict]) -> dict[str, Any]:
        questions = len(self.train_dataset)
        solved_now = {s["id"] for s in samples if s["correct"]}
        return {
            "samples": len(samples),
            "tokens": sum(s["num_tokens"] for s in samples),
            "sample_accuracy": sum(s["correct"] for s in samples) / max(len(samples), 1),
            # the right answer after a false written step (check_equations)
            "dropped_by_equation_check": sum(s.get("lucky", False) for s in samples),
            "questions_solved": len(solved_now) / questions,
            "questions_solved_cumulative": len(self.solved) / questions,
            "kept": len(kept),
            "kept_total": len(self.kept_union),
        }

    def _over_budget(self) -> bool:
        """The next round would pass ``sample_budget``, or not fit the callbacks' ``WallClockBudget``."""
        if not round_fits(budget := budget_in(self.callbacks), self.history):
            if self.state.is_main_process:
                print(f"-- time budget: {budget.elapsed():.0f} of {budget.seconds:.0f} s spent, the last "
                      "round does not fit in the rest: no new round --", flush=True)
            return True
        spent = self.history[-1]["cumulative_samples"] if self.history else 0
        return self.args.sample_budget is not None and \
            spent + len(self.train_dataset) * self.args.num_generations > self.args.sample_budget

    def _round_dir(self, round_index: int) -> Path:
        return self.run_dir / f"round_{round_index:03d}"


def _check_dataset(dataset, name: str, required: bool, algorithm: str) -> None:
    if dataset is None:
        if required:
            raise ValueError(f"{name}: {algorithm} needs a dataset of questions with a 'prompt' column")
        return
    missing = [c for c in ("id", "prompt") if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {missing}; found {dataset.column_names} "
            "(load it with trl_reasoning.tasks.load_task and add_prompts)"
        )
    if len(dataset) == 0:
        raise ValueError(f"{name}: the dataset is empty")
