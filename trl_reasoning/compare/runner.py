"""Run a comparison: for every seed, the shared stages (SFT, reward models), then every method from that
seed's SFT policy, each evaluated on the seed's held-out questions as soon as it has trained.

Every piece resumes on its own: a stage folder with ``stage_complete.json`` is skipped, and a method that
trained and was evaluated leaves ``methods/<name>.json``: its held-out metrics, per-question values and
training-time points, with the settings it ran under. That record is all the report reads, so a method
whose record matches its settings is never rerun, even where its checkpoints are gone (a folder of
records copied to another machine resumes there). A finished seed leaves ``seed_results.json``. Kill
the run anywhere and rerun the same command.

    OUTPUT/seed_0/sft/               the seed's SFT policy (and orm/, prm/)
    OUTPUT/seed_0/ei/ei/             a method's stage folder (method ei, stage ei)
    OUTPUT/seed_0/eval/NAME/         each model's held-out report and samples
    OUTPUT/seed_0/methods/NAME.json  a finished method's record (sft.json: the start)
    OUTPUT/seed_0/seed_results.json
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ..faults import fault_point
from ..metrics import EVALUATION_VERSION
from ..reporting import machine, write_json_atomic
from ..stages.evaluation import eval_folder, question_scores
from .plan import ComparisonPlan, Method
from .records import sampled_k, training_eval_questions, training_points
from .workers import SHARED_CLAIM, PieceHeld, claimed

SEED_RESULTS = "seed_results.json"
METHODS = "methods"


def seed_folder(output: Path, seed: int) -> Path:
    return Path(output) / f"seed_{seed}"


# What a record measures is the evaluation's: older records are not mixed with new ones in one table.
RECORD_VERSION = EVALUATION_VERSION


def settings_of(recipe, stage: str) -> dict:
    """What a method record must match to be reused: the recipe that ran stage ``stage``, but its output
    folder, its trackers, the comparison's own section (its other methods, budget and reference) and
    the sections of the other methods' stages (changing PPO's settings leaves EI's valid)."""
    from ..stages import get_stage

    sections = {name: values for name, values in recipe.sections.items()
                if name == stage or get_stage(name).role != "rl"}
    fields = dataclasses.asdict(dataclasses.replace(recipe, output_dir="", sections=sections, compare=None,
                                                    report_to="none"))
    return {"record_version": RECORD_VERSION, **json.loads(json.dumps(fields, sort_keys=True, default=str))}


def method_settings(plan: ComparisonPlan, method: Method | None, seed: int, folder: Path) -> dict:
    """A method's settings (``None``: the SFT start's), with the start's: a method from another start is
    another method."""
    start = settings_of(plan.for_seed(plan.recipe, seed, folder), "sft")
    if method is None:
        return {"start": start}
    return {"start": start, "method": settings_of(plan.for_seed(method.recipe, seed, folder), method.stage)}


def load_method(folder: Path, name: str, settings: dict) -> dict | None:
    """The record of method ``name`` in seed ``folder`` when it ran with ``settings``, else None."""
    path = folder / METHODS / f"{name}.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if same_settings(record.get("settings") or {}, settings) else None


def same_settings(stored: dict, current: dict) -> bool:
    """Whether a record's ``stored`` settings are ``current``'s: equal, where a recipe key the record
    lacks (it was written before the key existed) counts as equal when ``current`` holds its default,
    so a new recipe option does not rerun every finished method."""
    if stored.keys() != current.keys():
        return False
    defaults = _recipe_defaults()
    for part, now in current.items():
        before = stored[part]
        if not (isinstance(before, dict) and isinstance(now, dict)):
            if before != now:
                return False
            continue
        for key in before.keys() | now.keys():
            if key not in before and key in defaults and now[key] == defaults[key]:
                continue
            if before.get(key, _MISSING) != now.get(key, _MISSING):
                return False
    return True


_MISSING = object()


def _recipe_defaults() -> dict:
    """Each recipe field's default, as ``settings_of`` writes values (through JSON)."""
    from ..recipes import Recipe

    defaults = {}
    for f in dataclasses.fields(Recipe):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return json.loads(json.dumps(defaults, sort_keys=True, default=str))


def run_seed(plan: ComparisonPlan, methods: list[Method], seed: int, output: Path,
             wait: bool = True) -> dict | None:
    """Run (or resume) one seed; returns its record (also written to ``seed_results.json``), or None when
    another process holds one of its methods (that process finishes it). Each piece is claimed first
    (``workers``): the seed's shared stages, waiting for another holder (``wait=False``: raise
    ``PieceHeld`` instead), then each method, skipped while another process runs it."""
    folder = seed_folder(output, seed)
    recipe = plan.for_seed(plan.recipe, seed, folder)
    records = _load_records(plan, methods, seed, folder)
    if _all_there(records, methods):  # every record there, from one start: nothing to train
        record = _seed_record(seed, recipe, [records[plan.baseline], *(records[m.name] for m in methods)])
        if int(os.environ.get("RANK", "0")) == 0:
            if not (folder / SEED_RESULTS).exists():  # a finished seed's files stay untouched
                write_json_atomic(folder / SEED_RESULTS, record)
            print(f"== seed {seed}: finished before ({folder / METHODS}), reused ==", flush=True)
        return record
    with claimed(folder / SHARED_CLAIM, wait) as held:
        if not held:
            raise PieceHeld(seed)
        ctx, records, scoring = _shared_stages(plan, methods, seed, recipe)
    total = len(plan.shared_stages) + len(methods) + 1
    for index, method in enumerate(methods, start=len(plan.shared_stages) + 1):
        if records[method.name] is not None:
            if ctx.state.is_main_process:
                print(f"== seed {seed}: method {method.name} finished before ({folder}/{METHODS}/"
                      f"{method.name}.json), reused ==", flush=True)
            continue
        with claimed(folder / METHODS / f".{method.name}.lock", wait=False) as held:
            if held:  # reread: another process may have finished it between the read above and the claim
                settings = method_settings(plan, method, seed, folder)
                records[method.name] = load_method(folder, method.name, settings)
                if records[method.name] is None:
                    records[method.name] = _run_method(ctx, plan, method, seed, scoring, (index, total))
    if not _all_there(records, methods):
        return None  # another process is running a method of this seed
    record = _seed_record(seed, recipe, [records[plan.baseline], *(records[m.name] for m in methods)])
    if ctx.state.is_main_process:
        write_json_atomic(folder / SEED_RESULTS, record)
    ctx.state.wait_for_everyone()
    fault_point(f"seed_done:{seed}")
    return record


def run_shared(plan: ComparisonPlan, methods: list[Method], seed: int, output: Path) -> None:
    """Run one seed's shared stages (SFT, reward models, the start's evaluation) unless they are done or
    another process holds them: a worker runs every seed's shared stages before any method, so that no
    worker ends the comparison waiting for the last seed's SFT while the other has nothing to share."""
    from ..progress import DONE

    folder = seed_folder(output, seed)
    records = _load_records(plan, methods, seed, folder)
    if _all_there(records, methods) or (records[plan.baseline] is not None and
                                        all((folder / name / DONE).exists() for name in plan.shared_stages)):
        return  # done: not even claimed, so no other worker sees it held and puts the seed off
    with claimed(folder / SHARED_CLAIM, wait=False) as held:
        if held:
            _shared_stages(plan, methods, seed, plan.for_seed(plan.recipe, seed, folder))


def _load_records(plan: ComparisonPlan, methods: list[Method], seed: int, folder: Path) -> dict:
    """Each method's record (None where missing or measured under other settings), the start's too."""
    records = {m.name: load_method(folder, m.name, method_settings(plan, m, seed, folder)) for m in methods}
    records[plan.baseline] = load_method(folder, plan.baseline, method_settings(plan, None, seed, folder))
    return records


def _all_there(records: dict, methods: list[Method]) -> bool:
    return all(records[m.name] is not None for m in methods) and _one_start(records)


def _shared_stages(plan: ComparisonPlan, methods: list[Method], seed: int, recipe):
    """The seed's shared stages and the start's evaluation (run here, or loaded where done); returns the
    context, the records (read now: another process may have written some meanwhile) and the scoring
    (reranker, start weights) of every method."""
    from .. import pipeline
    from ..progress import stage_banner
    from ..stages import get_stage, run_stage
    from ..stages.base import DONE

    folder = Path(recipe.output_dir)
    records = _load_records(plan, methods, seed, folder)
    ctx = pipeline.run_context(recipe)
    total = len(plan.shared_stages) + len(methods) + 1
    for index, name in enumerate(plan.shared_stages, start=1):
        title = f"seed {seed}: {get_stage(name).title or name}"
        if (ctx.folder(name) / DONE).exists():  # finished by an earlier run or another worker: loaded
            run_stage(ctx, name)
            if ctx.state.is_main_process:
                print(f"== seed {seed}: {name} finished before ({ctx.folder(name)}), reused ==", flush=True)
            continue
        with stage_banner(recipe, name, title, index, total, ctx.state):
            run_stage(ctx, name)
    weights = start_weights(ctx)
    _drop_other_starts(records, weights, seed, ctx, baseline=plan.baseline)
    reranker = recipe.reward_model or ctx.reward_models.get("orm") or ctx.reward_models.get("prm")
    if records[plan.baseline] is None:
        with stage_banner(recipe, "eval", f"seed {seed}: the SFT start, held out", total, total, ctx.state):
            start = {"models": {plan.baseline: ctx.policy}, "samples": {plan.baseline: 0},
                     "methods": {plan.baseline: {"stage": "sft", "entry": plan.baseline}},
                     "wall_seconds": {plan.baseline: ctx.stage_records.get("sft", {}).get("wall_seconds")}}
            settings = method_settings(plan, None, seed, folder)
            records[plan.baseline] = _finish(ctx, plan.baseline, settings, start, {}, reranker, weights)
    return ctx, records, (reranker, weights)


def start_weights(ctx) -> str:
    """A digest of the weights every method of a seed starts from or is scored with: the SFT policy and
    the reward models. The same recipe and seed train other weights on another CPU (its kernels sum in
    another order), so records are reused only with the weights they were measured from."""
    import hashlib

    digest = hashlib.sha256()
    for model in [ctx.policy, *(ctx.reward_models[k] for k in sorted(ctx.reward_models))]:
        files = sorted(p for p in Path(model).glob("*") if p.suffix == ".safetensors"
                       or p.name.startswith(("pytorch_model", "adapter_model")))  # not training_args.bin
        for path in files:
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def _one_start(records: dict) -> bool:
    """Every record there, all measured from the same start weights (a known digest)."""
    starts = {record.get("start_weights") if record else None for record in records.values()}
    return None not in starts and len(starts) == 1


def _drop_other_starts(records: dict, weights: str, seed: int, ctx, baseline: str) -> None:
    """Forget the records measured from other start weights (or from unknown ones), and the folders their
    methods trained and were evaluated in (a finished stage folder would be skipped, its evaluation
    reused): they are rerun from these weights."""
    import shutil

    folder, main = Path(ctx.recipe.output_dir), ctx.state.is_main_process
    for name, record in records.items():
        if record is None or record.get("start_weights") == weights:
            continue
        records[name] = None
        if main:
            print(f"== seed {seed}: method {name} was measured from other start weights "
                  f"({record.get('start_weights')} != {weights}): rerun ==", flush=True)
            stale = [eval_folder(folder, model) for model in record.get("results", {})]
            for path in stale + ([folder / name] if name != baseline else []):
                shutil.rmtree(path, ignore_errors=True)
            (folder / METHODS / f"{name}.json").unlink(missing_ok=True)  # what other processes read
    ctx.state.wait_for_everyone()


def _seed_record(seed: int, recipe, method_records: list[dict]) -> dict:
    """One seed's record: every method record's entries side by side."""
    record = {"seed": seed, "eval_split": recipe.eval_split, "machine": machine(),
              "reranker": method_records[0]["reranker"], "num_questions": method_records[0]["num_questions"]}
    for key in ("results", "samples", "wall_seconds", "train_seconds", "methods", "per_question",
                "training_points", "training_eval_questions"):  # keys absent from older records: {}
        record[key] = {name: value for m in method_records for name, value in m.get(key, {}).items()}
    return record


def _run_method(ctx, plan: ComparisonPlan, method: Method, seed: int, scoring: tuple[str | None, str],
                position: tuple[int, int]) -> dict:
    """Run ``method`` from the seed's SFT policy into ``folder/<method>/``, evaluate its models and write
    its record."""
    from ..progress import stage_banner
    from ..stages import run_stage

    folder, (index, total) = Path(ctx.recipe.output_dir), position
    recipe = plan.for_seed(method.recipe, seed, folder / method.name)
    run = dataclasses.replace(ctx, recipe=recipe, models={}, conditioning={}, samples_used={},
                              stage_records={})
    found = {"models": {}, "samples": {}, "methods": {}, "wall_seconds": {}, "train_seconds": {}}
    conditioning = {}
    with stage_banner(recipe, method.stage, f"seed {seed}: method {method.name}", index, total, ctx.state):
        done = run_stage(run, method.stage)
    for entry, model in run.models.items():
        if not entry.startswith(method.stage):
            continue
        name = method.name + entry[len(method.stage):]  # 'rcrl unconditioned' -> 'rcrl_dense unconditioned'
        found["models"][name] = model
        found["samples"][name] = run.samples_used.get(entry, 0)
        found["methods"][name] = {"stage": method.stage, "entry": entry, "method": method.name}
        found["wall_seconds"][name] = done.get("wall_seconds")
        found["train_seconds"][name] = done.get("train_seconds")  # the clock of its training points
        if entry in run.conditioning:
            conditioning[name] = run.conditioning[entry]
    drawn = found["samples"].get(method.name, 0)
    if plan.budget and drawn and drawn != plan.budget and ctx.state.is_main_process:
        print(f"compare: warning: method {method.name} drew {drawn} training samples, the budget is "
              f"{plan.budget}", flush=True)
    with stage_banner(recipe, "eval", f"seed {seed}: method {method.name}, held out", index, total,
                      ctx.state):
        settings = method_settings(plan, method, seed, folder)
        return _finish(ctx, method.name, settings, found, conditioning, *scoring,
                       stage_folder=folder / method.name / method.stage)


def _finish(ctx, name: str, settings: dict, found: dict, conditioning: dict, reranker: str | None,
            weights: str, stage_folder: Path | None = None) -> dict:
    """Evaluate ``found``'s models on the seed's held-out questions (into the seed's ``eval/``) and write
    the method's record: what the report needs, so that the record alone resumes the method (from the
    same ``weights``, the digest of its start)."""
    from ..stages import evaluate_models

    folder = Path(ctx.recipe.output_dir)
    results = evaluate_models(ctx, found["models"], reranker, conditioning)

    def own(n: str) -> bool:  # the stage's own model, not an extra entry such as 'rcrl unconditioned'
        return stage_folder is not None and found["methods"][n]["entry"] == found["methods"][n]["stage"]

    k = sampled_k(results)
    record = {**{key: found.get(key, {}) for key in ("samples", "methods", "wall_seconds", "train_seconds")},
              "results": results,
              "reranker": reranker, "num_questions": len(ctx.held_out), "settings": settings,
              "start_weights": weights,
              "per_question": {n: question_scores(folder, n, k) for n in found["models"]},
              "training_points": {n: training_points(stage_folder) if own(n) else []
                                  for n in found["models"]},
              "training_eval_questions": {n: size for n in found["models"] if own(n) and
                                          (size := training_eval_questions(stage_folder, len(ctx.held_out)))}}
    if ctx.state.is_main_process:
        write_json_atomic(folder / METHODS / f"{name}.json", record)
    ctx.state.wait_for_everyone()
    fault_point(f"method_done:{name}")
    return record
