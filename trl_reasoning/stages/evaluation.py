"""The ``eval`` stage: every policy the run produced on the held-out questions (samples reranked by
the run's reward model when there is one), one comparison table with the paired maj@1 gains, written
to ``output_dir/results.md`` and ``results.json``. Models the run fine-tuned take the prompts they were
trained on (``train_prompt_style``); the starting model takes ``prompt_style``. Each model's report is
reused when a previous run finished it with the same settings and the same weight files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..reporting import machine_label, markdown_table, write_json_atomic, write_text_atomic
from .base import Stage, get_stage, register_stage


def _config():
    from ..evaluation import EvalSettings

    return EvalSettings


def evaluate_models(ctx, models: dict[str, str], reward_model: str | None = None,
                    conditioning: dict[str, dict] | None = None) -> dict:
    """Evaluate each model (``name -> folder``); ``conditioning[name]`` (``rl.rcrl_conditioning``) appends
    its ``suffix`` to the prompts and forces ``force_after_steps`` after every step."""
    from ..evaluation import EvalSettings

    recipe = ctx.recipe
    settings = EvalSettings(**{"seed": recipe.seed, **recipe.section("eval")})
    scorer = _scorer(reward_model, recipe.trust_remote_code)
    results = {}
    with SharedEngine(settings, recipe.task) as engine:
        for name, reference in models.items():
            condition = (conditioning or {}).get(name, {})
            results[name] = _evaluate_one(ctx, name, reference, settings, reward_model, scorer, condition,
                                          engine)
    return results


class SharedEngine:
    """One sampling engine for the models of one evaluation: a model whose weights have the shapes of
    the one the engine serves (and the same vocabulary) is reloaded into it, as EI rounds reload theirs,
    instead of starting an engine per model (a vLLM start costs more than a reload, the more so on
    GPUs); another shape (RCRL's added tags) starts a new one."""

    def __init__(self, settings, task: str):
        self.settings, self.task = settings, task
        self.sampler, self.signature = None, None
        self.started = 0  # engines (samplers) started; read by tests

    def for_model(self, model, tokenizer, reference: str):
        """A ``Sampler`` that samples ``model`` (the last one's engine when shapes and vocabulary match)."""
        from ..loading import resolve
        from ..sampling import Sampler, answer_pattern_for

        signature = _serving_signature(model, tokenizer)
        if self.sampler is not None and signature == self.signature:
            self.sampler.tokenizer = tokenizer
            self.sampler.load_weights(model)
            return self.sampler
        self.close()
        folder = resolve(reference)[0]
        self.sampler = Sampler(model, tokenizer, self.settings, answer_pattern_for(self.task),
                               model_path=folder if Path(folder).is_dir() else None)
        self.signature, self.started = signature, self.started + 1
        return self.sampler

    def release_model(self) -> None:
        """Drop the served model from memory (the engine keeps its own copy) before the next one loads."""
        if self.sampler is not None:
            self.sampler.model = None

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _serving_signature(model, tokenizer) -> tuple:
    """What must match for an engine to take another model's weights in place: weight shapes, dtype, the
    config (tied head, stop tokens, ...) and the vocabulary."""
    config = {k: v for k, v in model.config.to_diff_dict().items()
              if k not in ("_name_or_path", "transformers_version", "name_or_path")}
    generation = getattr(model, "generation_config", None)
    return ({name: tuple(v.shape) for name, v in model.state_dict().items()}, str(model.dtype),
            json.dumps(config, sort_keys=True, default=str), str(getattr(generation, "eos_token_id", None)),
            tokenizer.get_vocab(), tokenizer.eos_token_id)


def _scorer(reward_model: str | None, trust_remote_code: bool):
    if not reward_model:
        return None
    from ..reward_models import load_reward_model

    return load_reward_model(reward_model, trust_remote_code=trust_remote_code).rerank_scorer


def _evaluate_one(ctx, name: str, reference: str, settings, reward_model, scorer, condition: dict,
                  engine: SharedEngine) -> dict:
    from ..evaluation import evaluate, write_report
    from ..loading import load_model, load_tokenizer
    from ..metrics import EVALUATION_VERSION
    from ..tasks import prompted_as_trained

    recipe, state = ctx.recipe, ctx.state
    folder = eval_folder(recipe.output_dir, name)
    suffix, forced = condition.get("suffix", ""), condition.get("force_after_steps")
    held_out = ctx.held_out if name == "initial" else prompted_as_trained(ctx.held_out)
    config = {"evaluation_version": EVALUATION_VERSION, "model": reference,
              "weights": _weights_fingerprint(reference), "reward_model": reward_model,
              "prompt_suffix": suffix,
              "training_prompts": held_out is not ctx.held_out, **dataclasses.asdict(settings)}
    if forced:
        config["force_after_steps"] = forced
    config = json.loads(json.dumps(config))  # as metrics.json stores it (tuples become lists)
    previous = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
    if previous.get("config") == config:  # finished before a crash, with the same settings
        return previous
    engine.release_model()  # the last model is in the engine: one policy in memory at a time
    trust = recipe.trust_remote_code
    model = load_model(reference, device=str(state.device), trust_remote_code=trust)
    tokenizer = load_tokenizer(reference, trust_remote_code=trust)
    questions = held_out.map(lambda row: {"prompt": row["prompt"] + suffix}) if suffix else held_out
    report = evaluate(model, tokenizer, questions, recipe.task, settings, reward_scorer=scorer,
                      logits_processors=_forced_tag(tokenizer, forced),
                      sampler=engine.for_model(model, tokenizer, reference))
    if state.is_main_process:
        write_report(report, folder, config, title=f"{name} on {recipe.task}")
    state.wait_for_everyone()
    return {key: value for key, value in report.items() if key != "records"}


def _weights_fingerprint(reference: str) -> list | None:
    """Name, size and modification time of a local model folder's weight files: a stage rerun that
    retrains the model (an EI run extended by a round) writes the same folder anew, and its old report
    must not be reused."""
    folder = Path(reference)
    if not folder.is_dir():
        return None
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(folder.iterdir())
            if f.suffix in (".safetensors", ".bin", ".pt")]


def _forced_tag(tokenizer, token: str | None) -> list:
    if not token:
        return []
    from ..sampling.forcing import ForcedToken

    return [ForcedToken(tokenizer, tokenizer.convert_tokens_to_ids(token))]


def comparison_table(results: dict[str, dict], samples_used: dict[str, int]) -> str:
    """One row per evaluated model: maj@1, maj@K, rerank@K (with a reward model), pass@1, pass@K,
    exploration, solutions sampled for training."""
    k = max((int(n.split("@")[1]) for r in results.values() for n in r["metrics"] if n.startswith("pass@")),
            default=1)
    reranked = any(f"rerank@{k}" in r["metrics"] for r in results.values())
    names = ["maj@1", f"maj@{k}", *([f"rerank@{k}"] if reranked else []), "pass@1", f"pass@{k}"]
    rows = []
    for name, report in results.items():
        metrics = report["metrics"]
        rows.append([
            name, *(metrics.get(n, float("nan")) for n in names),
            report["exploration"].get("distinct_correct_solutions", float("nan")), samples_used.get(name, 0),
        ])
    headers = ["model", "maj@1 (greedy)", *names[1:], "distinct correct / question",
               "solutions sampled for training"]
    return markdown_table(headers, rows)


def eval_folder(output_dir: str | Path, name: str) -> Path:
    """Where the eval stage writes one evaluated model's reports (``rcrl unconditioned`` in
    ``eval/rcrl_unconditioned``)."""
    return Path(output_dir) / "eval" / name.replace(" ", "_")


def greedy_correct(output_dir: Path, name: str) -> dict[str, float]:
    """One evaluated model's greedy correctness (1.0 or 0.0) per question id, from the eval stage's
    ``samples.jsonl`` under ``output_dir``."""
    return question_scores(output_dir, name)["maj@1"]


def question_scores(output_dir: Path, name: str, k: int = 1) -> dict[str, dict[str, float]]:
    """One evaluated model's per-question held-out values from the eval stage's ``samples.jsonl``: maj@1
    (its greedy answer's correctness), pass@1 (the share of its sampled answers that are right) and, for
    ``k`` > 1, pass@k on the questions with at least k samples; a metric is empty without its rows."""
    from ..metrics import pass_at_k
    from ..reporting import read_jsonl

    records = read_jsonl(eval_folder(output_dir, name) / "samples.jsonl")
    values = {"maj@1": {r["id"]: float(r["correct"]) for r in records if r["kind"] == "greedy"}}
    sampled: dict[str, list[bool]] = {}
    for r in records:
        if r["kind"] != "greedy":
            sampled.setdefault(r["id"], []).append(bool(r["correct"]))
    values["pass@1"] = {i: sum(c) / len(c) for i, c in sampled.items()}
    if k > 1:
        values[f"pass@{k}"] = {i: pass_at_k(len(c), sum(c), k) for i, c in sampled.items() if len(c) >= k}
    return values


# the paired gains the eval stage reports, each read per question by question_scores
GAIN_METRICS = ("maj@1", "pass@1")


def paired_gains(output_dir: Path, results: dict, baseline: str = "sft") -> dict[str, dict[str, dict]]:
    """Per metric of ``GAIN_METRICS``, the gain of each evaluated model over ``baseline`` on the same
    held-out questions, with a paired bootstrap 95% interval (from the eval stage's ``samples.jsonl``, each
    model's read once); a model without rows of a metric's kind is left out of it (a copy that kept the
    greedy rows only has no pass@1), one scored on other questions than the baseline is an error."""
    from ..metrics import paired_difference

    scores = {name: question_scores(output_dir, name) for name in dict.fromkeys([baseline, *results])}
    gains: dict[str, dict[str, dict]] = {metric: {} for metric in GAIN_METRICS}
    for metric, found in gains.items():
        base = scores[baseline][metric]
        for name in results if base else ():
            mine = scores[name][metric] if name != baseline else {}
            if not mine:
                continue
            if missing := base.keys() - mine.keys():
                raise ValueError(f"paired_gains: {name} has no {metric} on {len(missing)} of {baseline}'s "
                                 f"questions (e.g. {sorted(missing)[0]!r}): not the same held-out questions")
            gain = paired_difference([mine[i] for i in base], list(base.values()))
            found[name] = {"gain": gain.mean, "ci95": [gain.ci_low, gain.ci_high]}
    return gains


def gains_table(output_dir: Path, results: dict, baseline: str) -> str:
    """``paired_gains`` of greedy maj@1 and, with sampled answers, of pass@1 as a markdown table ('' with a
    single model)."""
    if len(results) < 2:
        return ""
    gains = paired_gains(output_dir, results, baseline)
    metrics = [metric for metric in GAIN_METRICS if gains[metric]]

    def cell(gain: dict | None) -> str:
        return f"{gain['gain']:+.3f} [{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]" if gain else ""

    rows = [[name, *(cell(gains[m].get(name)) for m in metrics)] for name in results if name != baseline]
    return markdown_table(
        ["model", *(f"{m}{' (greedy)' if m == 'maj@1' else ''} gain over {baseline}, paired bootstrap 95%"
                    for m in metrics)], rows)


def stages_table(records: dict[str, dict]) -> str:
    """Wall time, peak memory, samples drawn and the CPU per finished stage."""
    rows = [[name, r.get("wall_seconds", float("nan")), r.get("peak_memory_gib", float("nan")),
             r.get("cumulative_samples", r.get("train_samples", 0)), r.get("num_processes", 1),
             machine_label(r.get("machine")) or "?"]
            for name, r in records.items()]
    return markdown_table(["stage", "wall s (last attempt)", "peak memory GiB", "samples drawn", "processes",
                           "machine"], rows)


def write_results(ctx, results: dict) -> str:
    """The comparison and gains tables, printed and written to ``results.md`` / ``results.json``."""
    out = Path(ctx.recipe.output_dir)
    body = comparison_table(results, ctx.samples_used)
    gains = gains_table(out, results, baseline=next(iter(results)))
    body += f"\n\n{gains}" if gains else ""
    body += f"\n\n{stages_table(ctx.stage_records)}" if ctx.stage_records else ""
    if ctx.state.is_main_process:
        write_json_atomic(out / "results.json", results)
        write_text_atomic(out / "results.md", f"# {ctx.recipe.task}: held-out results\n\n{body}\n")
        print(body)
    return body


def run_eval(ctx, folder: Path) -> dict:
    """Evaluate every policy of the run (the initial model when there is none), reranking with the
    recipe's ``reward_model``, else the run's ORM, else its PRM; writes the comparison."""
    models = ctx.models or {"initial": ctx.initial}
    if ctx.models and not any(get_stage(s).role == "policy" for s in ctx.recipe.stages):
        models = {"initial": ctx.initial, **ctx.models}  # no SFT: gains are over the starting model
    reranker = ctx.recipe.reward_model or ctx.reward_models.get("orm") or ctx.reward_models.get("prm")
    results = evaluate_models(ctx, models, reranker, ctx.conditioning)
    write_results(ctx, results)
    return results


EVAL = register_stage(Stage("eval", _config, run_eval, order=90, role="eval", output="",
                            help="EvalSettings fields for the eval stage.", title="evaluation"))
