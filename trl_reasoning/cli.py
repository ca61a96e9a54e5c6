"""Command line (also ``python -m trl_reasoning`` and ``accelerate launch [args] -m trl_reasoning ...``):

* ``trl-reasoning train RECIPE.yaml [--key value ...]``: run a recipe's stages (sft, ei, eval);
* ``trl-reasoning compare RECIPE.yaml --seeds 0 1 2``: the recipe's ``compare.methods`` from each seed's SFT
  policy, with means, gains and gaps over seeds (``compare``);
* ``trl-reasoning recipes [show NAME]``: the shipped recipes (``train NAME`` runs one by name);
* ``trl-reasoning eval --model PATH_OR_ID --task TASK [--reward_model PATH] ...``: sample, verify,
  rerank and report;
* ``trl-reasoning sample --model PATH_OR_ID --task TASK [--mc_rollouts N] ...``: K labelled samples per
  question (reward-model data: ``label`` from the verifier, ``step_labels`` from Monte-Carlo rollouts).

Every failure the user can fix (bad path, bad argument, bad data, a full disk, a busy output folder) ends
with one line on stderr and exit status 1, not a traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import asdict

from .cli_arguments import EvalArguments, SampleArguments, SamplingArguments
from .errors import renamed_hint
from .tasks import DataError

# what the file system can refuse a run (disk full, quota, read-only, permissions): one line, not a traceback
_FS_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def _prepare_dataset(args: SamplingArguments, task_extras: dict | None = None):
    from .tasks import add_prompts, load_task

    dataset = load_task(args.task, data=args.data, split=args.split, limit=args.limit, seed=args.seed,
                        **(task_extras or {}))
    exemplars = None
    if args.prompt_style == "few_shot":
        exemplars = load_task(args.task, data=args.exemplar_data, split="train", seed=args.seed).to_list()
    return add_prompts(dataset, args.prompt_style, exemplars, args.num_shots, args.seed)


def run_eval(args: EvalArguments, task_extras: dict | None = None) -> dict:
    """Load, sample, score and write the report; returns the metrics (main process writes files).
    ``task_extras`` go to ``load_task`` (the arithmetic difficulty a model was trained on)."""
    from .evaluation import EvalSettings, evaluate, write_report
    from .loading import load_model, load_tokenizer, process_state

    trust = args.trust_remote_code
    settings = EvalSettings(
        num_generations=args.num_generations,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        extraction=args.extraction,
        **_backend(args),
    )
    tokenizer = load_tokenizer(args.model, trust_remote_code=trust)  # a bad model path fails before data work
    scorer = None
    if args.reward_model:
        from .reward_models.base import load_reward_model

        scorer = load_reward_model(args.reward_model, trust_remote_code=trust).rerank_scorer
    dataset = _prepare_dataset(args, task_extras)
    state = process_state()
    model = load_model(args.model, dtype=args.dtype, device=str(state.device), trust_remote_code=trust)
    with _sampler(model, tokenizer, settings, args) as sampler:
        report = evaluate(
            model, tokenizer, dataset, args.task, settings, reward_scorer=scorer, sampler=sampler
        )
    if state.is_main_process:
        write_report(report, args.output, asdict(args), title=f"{args.model} on {args.task}")
        print(_console_summary(report, args.output))
    return report["metrics"]


def run_sample(args: SampleArguments, task_extras: dict | None = None) -> list[dict]:
    """Sample K completions per question, label them, write ``output/samples.jsonl``."""
    from pathlib import Path

    from .loading import load_model, load_tokenizer, process_state
    from .reporting import write_jsonl_atomic
    from .reward_models.data import LabelSettings, sample_and_label

    trust = args.trust_remote_code
    settings = LabelSettings(
        task=args.task, num_generations=args.num_generations, temperature=args.temperature, top_p=args.top_p,
        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed, **_backend(args),
        extraction=args.extraction, mc_rollouts=args.mc_rollouts, mc_estimate=args.mc_estimate,
        step_delimiter=args.step_delimiter,
    )
    tokenizer = load_tokenizer(args.model, trust_remote_code=trust)
    dataset = _prepare_dataset(args, task_extras)
    state = process_state()
    model = load_model(args.model, dtype=args.dtype, device=str(state.device), trust_remote_code=trust)
    with _sampler(model, tokenizer, settings, args) as sampler:
        rows = sample_and_label(model, tokenizer, dataset, settings, sampler)
    if state.is_main_process:
        path = write_jsonl_atomic(Path(args.output) / "samples.jsonl", rows)
        correct = sum(r["label"] for r in rows)
        print(f"{len(rows)} samples of {len(dataset)} questions, {correct} correct "
              f"({correct / max(len(rows), 1):.3f}): {path}")
    return rows


def _sampler(model, tokenizer, settings, args: SamplingArguments):
    """The command's one ``Sampler``; a vLLM engine starts straight from the model's folder or Hub id."""
    from .loading import resolve
    from .sampling import Sampler, answer_pattern_for

    return Sampler(
        model, tokenizer, settings, answer_pattern_for(args.task), model_path=resolve(args.model)[0]
    )


def _console_summary(report: dict, output: str) -> str:
    metrics = "  ".join(f"{name}={value:.3f}" for name, value in report["metrics"].items())
    throughput = report["throughput"]
    if "reward_model" in report:
        metrics += f"  reward_model_auroc={report['reward_model']['auroc']:.3f}"
    return (
        f"{report['num_questions']} questions  {metrics}\n"
        f"{throughput['samples_per_second']:.1f} samples/s  {throughput['tokens_per_second']:.0f} tokens/s\n"
        f"report: {output}/summary.md"
    )


def _backend(args) -> dict:
    """The sampling backend of ``eval``/``sample``: ``--server URL ...`` samples through those servers."""
    if args.server:
        return {"backend": "vllm_server", "vllm_server_urls": list(args.server)}
    return {"backend": args.backend}


def _parse(dataclass_type, argv: list[str]):
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_type, prog=f"trl-reasoning {dataclass_type.__name__[:-9].lower()}")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        hints = "".join(renamed_hint(a.lstrip("-").split("=")[0]) for a in unknown if a.startswith("--"))
        raise DataError(f"unknown argument(s) {unknown}{hints}; see --help")
    return parser.parse_args_into_dataclasses(argv)[0]


def run_train(argv: list[str]) -> dict:
    """``train RECIPE.yaml [--accelerate_config NAME|PATH] [--num_processes N] [--key value ...]``: validate
    the whole recipe, then run its stages here (holding the output folder's lock: one run per folder) or
    in the processes accelerate launches (``launch``)."""
    import contextlib

    from .launch import launch, launch_options, split_launch_args
    from .loading import process_state
    from .pipeline import run_recipe
    from .recipes import load_recipe, parse_overrides
    from .run_lock import RunLock

    cli_launch, rest = split_launch_args(argv[1:])
    recipe = load_recipe(argv[0], parse_overrides(rest))
    options = launch_options(recipe.accelerate, cli_launch)
    if options:  # run in the processes accelerate starts (they find no launch options and run here)
        launch(argv[0], rest, options)
        return {}
    lock = RunLock(recipe.output_dir) if process_state().is_main_process else contextlib.nullcontext()
    with lock:
        return run_recipe(recipe)


COMPARE_FLAGS = ("--seeds", "--output", "--only", "--workers")  # the rest of compare's argv: recipe overrides


def _compare_args(argv: list[str]) -> tuple[list[int], dict, list[str]]:
    """``--seeds 0 1 2``, ``--output DIR``, ``--only a,b`` and ``--workers N`` out of ``argv``: (seeds,
    {output, only, workers}, the rest: recipe overrides)."""
    seeds, flags, rest, i = [0], {"output": None, "only": None, "workers": 1}, [], 0
    argv = [part for token in argv  # --flag=value as --flag value, for compare's own flags only
            for part in (token.split("=", 1) if token.partition("=")[0] in COMPARE_FLAGS else [token])]
    while i < len(argv):
        token = argv[i]
        if token == "--seeds":
            values = []
            while i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                values.append(argv[i := i + 1])
            try:
                seeds = [int(v) for value in values for v in value.split(",") if v]
            except ValueError:
                raise DataError(f"--seeds: expected integers, got {values}") from None
            if not seeds:
                raise DataError("--seeds: expected at least one integer")
        elif token in COMPARE_FLAGS[1:] and i + 1 < len(argv):
            flags[token[2:]] = argv[i := i + 1]
        else:
            rest.append(token)
        i += 1
    if flags["only"] is not None:
        flags["only"] = flags["only"].split(",")
    if not str(flags["workers"]).isdigit() or int(flags["workers"]) < 1:
        raise DataError(f"--workers: expected a positive integer, got {flags['workers']!r}")
    flags["workers"] = int(flags["workers"])
    return seeds, flags, rest


def run_compare(argv: list[str]) -> dict:
    """``compare RECIPE.yaml --seeds 0 1 2 [--output DIR] [--only a,b] [--workers N] [--key value ...]``:
    every method of the recipe's ``compare`` section from each seed's SFT policy, then the results over
    seeds. ``--workers N``: N processes share the pieces (``compare.workers``), then this one reports."""
    import contextlib

    from .compare import load_plan, run_comparison, select
    from .compare.workers import start_workers, this_worker, wait_for
    from .recipes import parse_overrides
    from .run_lock import RunLock

    seeds, flags, rest = _compare_args(argv[1:])
    overrides = parse_overrides(rest)
    plan = load_plan(argv[0], overrides)  # every method's recipe checked before any work
    select(plan, flags["only"])  # an unknown --only name: one line, before the lock
    folder = flags["output"] or plan.recipe.output_dir
    # One run per folder: a worker of --workers runs under its coordinator's lock, a launched rank
    # under rank 0's.
    owner = this_worker()[0] == 0 and int(os.environ.get("RANK", "0")) == 0
    with RunLock(folder) if owner else contextlib.nullcontext():
        if flags["workers"] > 1:
            for line in wait_for(start_workers(argv, flags["workers"])):
                print(f"compare: {line}; its unfinished pieces run here", flush=True)
        return run_comparison(argv[0], seeds, folder, flags["only"], overrides, plan=plan)


def _with_task_card(args, argv: list[str]) -> dict:
    """Settings from the model's task card for every flag not on the command line (printed)."""
    from .task_card import apply_task_card

    given = {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
    extras, lines = apply_task_card(args, given)
    for line in lines:
        print(line, file=sys.stderr)
    return extras


def _eval_command(argv: list[str]) -> dict:
    args = _parse(EvalArguments, argv)
    return run_eval(args, _with_task_card(args, argv))


def _sample_command(argv: list[str]) -> list[dict]:
    args = _parse(SampleArguments, argv)
    return run_sample(args, _with_task_card(args, argv))


def _recipes_command(argv: list[str]) -> str:
    from .recipe_catalog import recipes_command

    return recipes_command(argv)


COMMANDS = {"train": run_train, "compare": run_compare, "eval": _eval_command, "sample": _sample_command,
            "recipes": _recipes_command}


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors a user can fix; imported only when a command runs (``--help`` stays fast)."""
    from .compare.workers import WorkerError
    from .loading import ModelLoadError
    from .recipes import RecipeError
    from .reporting import ArtifactWriteError
    from .reward_models.base import RewardModelError
    from .run_lock import RunLockError
    from .sampling import SamplingError
    from .verifiers import VerifierError

    return (ArtifactWriteError, DataError, ModelLoadError, RecipeError, RewardModelError, RunLockError,
            SamplingError, VerifierError, WorkerError)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``trl-reasoning`` command."""
    from .cli_help import command_help, overview

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        return
    if argv[0] not in COMMANDS:
        sys.exit(f"trl-reasoning: error: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}")
    if any(a in ("-h", "--help") for a in argv[1:]) or (argv[0] in ("train", "compare") and len(argv) == 1):
        print(command_help(argv[0]))
        return
    import datasets

    datasets.disable_progress_bars()
    user_errors = _user_errors()
    from .reporting import ArtifactWriteError

    try:
        COMMANDS[argv[0]](argv[1:])
    except user_errors as err:
        sys.exit(f"trl-reasoning: error: {err.strerror if isinstance(err, ArtifactWriteError) else err}")
    except OSError as err:
        if err.errno not in _FS_ERRNOS:
            raise
        where = f" {err.filename}" if err.filename else ""
        sys.exit(f"trl-reasoning: error: cannot write{where} ({err.strerror}); fix that and rerun the same "
                 "command: "
                 "it resumes after the last complete step")
