"""Run a recipe's stages in order: sft -> orm -> prm -> ei / ppo / rcrl -> eval. The run boilerplate lives here once.

Each stage writes into ``output_dir/<stage>/`` and marks itself done with ``stage_complete.json``;
rerunning the same command skips finished stages (and Expert Iteration resumes inside its rounds).
The reward-model stages sample the SFT policy on train questions, label the samples with the verifier
(and Monte-Carlo rollouts for the PRM), train the model and measure it on labelled held-out samples.
The eval stage evaluates every policy the run produced on the held-out questions (reranking samples
with the run's reward model when there is one) and prints one comparison table, also written to
``output_dir/results.md`` and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .progress import DONE  # "stage_complete.json"
from .recipes import Recipe, RecipeError, stage_config
from .reporting import markdown_table, write_json_atomic, write_text_atomic


def _is_done(folder: Path) -> bool:
    return (folder / DONE).exists()


def _mark_done(folder: Path, info: dict, state, model_folder: Path | None = None, recipe: Recipe | None = None) -> None:
    """Mark a stage complete; ``model_folder`` (the policy it saved) gets the recipe's task card."""
    if state.is_main_process:
        if model_folder is not None and recipe is not None:
            from .task_card import write_task_card

            write_task_card(model_folder, recipe)
        write_json_atomic(folder / DONE, info)
    state.wait_for_everyone()


def initial_model(recipe: Recipe, state) -> str:
    """The recipe's model reference; ``tiny`` is built offline into the run folder (once)."""
    if recipe.model != "tiny":
        return recipe.model
    from .tiny import make_tiny_model

    folder = Path(recipe.output_dir) / "tiny_init"
    if state.is_main_process and not (folder / "config.json").exists():
        make_tiny_model(folder, task=recipe.task, seed=recipe.seed, **recipe.tiny)
    state.wait_for_everyone()
    return str(folder)


def load_datasets(recipe: Recipe):
    """(sft_train, ei_train, eval) datasets with a ``prompt`` column."""
    from .tasks import ArithmeticConfig, add_prompts, load_task

    difficulty = ArithmeticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recipe.arithmetic.items()})

    def load(data, split, limit, num_examples):
        return load_task(recipe.task, data=data, split=split, limit=limit, num_examples=num_examples,
                         seed=recipe.seed, arithmetic_config=difficulty)

    train = load(recipe.train_data, "train", recipe.train_limit, recipe.num_train_examples)
    held_out = load(recipe.eval_data, "test", recipe.eval_limit, recipe.num_eval_examples)
    exemplars = train.to_list() if recipe.prompt_style == "few_shot" else None
    train = add_prompts(train, recipe.prompt_style, exemplars, recipe.num_shots, recipe.seed)
    held_out = add_prompts(held_out, recipe.prompt_style, exemplars, recipe.num_shots, recipe.seed)
    return _first(train, recipe.sft_train_limit), _first(train, recipe.ei_train_limit), held_out


def _first(dataset, limit: int | None):
    return dataset.select(range(min(limit, len(dataset)))) if limit else dataset


def _peft_config(recipe: Recipe):
    if not recipe.peft:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **recipe.peft)


def run_sft_stage(recipe: Recipe, model_ref: str, train, state) -> str:
    from trl import SFTConfig

    from .loading import load_model, load_tokenizer
    from .trainers.sft import run_sft

    folder = Path(recipe.output_dir) / "sft"
    if not _is_done(folder):
        args = stage_config(SFTConfig, recipe.sft, folder, recipe.seed, save_strategy="no")
        model = load_model(model_ref, device=str(state.device))
        run_sft(model, load_tokenizer(model_ref), train, args, peft_config=_peft_config(recipe))
        _mark_done(folder, {"questions": len(train), "epochs": args.num_train_epochs}, state, folder, recipe)
    return str(folder)


def _cached_rows(path: Path, make, state) -> list[dict]:
    """Rows of ``path`` if a previous run wrote it, else ``make()`` written atomically (main process)."""
    from .reporting import read_jsonl, write_jsonl_atomic

    if path.exists():
        return read_jsonl(path)
    rows = make()
    if state.is_main_process:
        write_jsonl_atomic(path, rows)
    state.wait_for_everyone()
    return rows


def run_reward_model_stage(recipe: Recipe, kind: str, policy_ref: str, train, held_out, state) -> str:
    """Sample + label (resumable), train an ORM (``orm``) or PRM (``prm``), measure it on held-out samples."""
    from datasets import Dataset

    from .loading import load_model, load_tokenizer
    from .reward_models.data import LabelSettings, sample_and_label
    from .sampling import Sampler, answer_pattern_for
    from .trainers.reward_model_config import RewardModelConfig
    from .trainers.reward_model_trainer import RewardModelTrainer, reward_model_quality

    name = "orm" if kind == "outcome" else "prm"
    folder = Path(recipe.output_dir) / name
    if _is_done(folder):
        return str(folder / "model")
    section = {**getattr(recipe, name), "kind": kind}
    args = stage_config(RewardModelConfig, section, folder / "trainer", recipe.seed, task=recipe.task, save_strategy="no")
    settings = LabelSettings(
        task=recipe.task, num_samples=args.num_generations, temperature=args.temperature,
        max_new_tokens=args.max_new_tokens, batch_size=args.generation_batch_size, seed=recipe.seed,
        backend=args.sampling_backend, extraction=args.extraction,
        mc_rollouts=args.mc_rollouts if kind == "process" else 0, mc_estimate=args.mc_estimate,
        step_delimiter=args.step_delimiter,
    )
    policy, tokenizer = load_model(policy_ref, device=str(state.device)), load_tokenizer(policy_ref)
    train = _first(train, recipe.rm_train_limit)
    held_settings = dataclasses.replace(settings, seed=recipe.seed + 1)
    with Sampler(policy, tokenizer, settings, answer_pattern_for(recipe.task), model_path=policy_ref) as sampler:
        rows = _cached_rows(folder / "train_samples.jsonl",
                            lambda: sample_and_label(policy, tokenizer, train, settings, sampler), state)
        held_rows = _cached_rows(folder / "heldout_samples.jsonl",
                                 lambda: sample_and_label(policy, tokenizer, held_out, held_settings, sampler), state)
    trainer = RewardModelTrainer(policy_ref, args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    trainer.save_model(str(folder / "model"))
    quality = reward_model_quality(trainer.reward_model, held_rows)
    if state.is_main_process:
        write_json_atomic(folder / "metrics.json", {"heldout": quality, "train_samples": len(rows)})
        print(f"{name} on held-out samples: " + "  ".join(f"{k}={v}" for k, v in quality.items()))
    _mark_done(folder, {"train_samples": len(rows), **quality}, state)
    return str(folder / "model")


def run_ei_stage(recipe: Recipe, model_ref: str, ei_train, held_out, state) -> str:
    from .trainers.expert_iteration_config import ExpertIterationConfig
    from .trainers.expert_iteration_trainer import ExpertIterationTrainer

    folder = Path(recipe.output_dir) / "ei"
    final = folder / "final_model"
    if not _is_done(folder):
        args = stage_config(ExpertIterationConfig, recipe.ei, folder, recipe.seed, task=recipe.task, save_strategy="no")
        trainer = ExpertIterationTrainer(
            model=model_ref, args=args, train_dataset=ei_train, eval_dataset=held_out, peft_config=_peft_config(recipe)
        )
        history = trainer.train()
        trainer.save_model(str(final))
        if args.push_to_hub:
            trainer.push_to_hub()
        _mark_done(folder, {"rounds": len(history) - 1, "cumulative_samples": history[-1]["cumulative_samples"]}, state,
                   final, recipe)
    return str(final)


def step_reward_provider(source: str, reward_models: dict[str, str], recipe: Recipe):
    """A dense step-reward provider: ``heuristic``, the run's ``orm``/``prm`` (else the recipe's
    ``reward_model``), or a reward-model folder / Hub id."""
    from .reward_models import HeuristicStepReward, load_reward_model

    if source == "heuristic":
        return HeuristicStepReward()
    path = (reward_models.get(source) or recipe.reward_model) if source in ("orm", "prm") else source
    if not path:
        raise RecipeError(f"recipe: dense reward '{source}' needs an {source} stage or 'reward_model: PATH'")
    return load_reward_model(path)


def _rl_dataset(dataset):
    """The columns TRL's GRPOTrainer passes to reward functions (no nested extras)."""
    keep = [c for c in ("id", "prompt", "answer", "solution") if c in dataset.column_names]
    return dataset.select_columns(keep)


def run_ppo_stage(recipe: Recipe, policy_ref: str, train, held_out, reward_models: dict, state) -> str:
    """PPO from the policy on the train questions; resumes from the last TRL checkpoint after a crash."""
    from transformers.trainer_utils import get_last_checkpoint

    from .loading import load_tokenizer
    from .trainers.ppo_config import PPOConfig
    from .trainers.ppo_trainer import PPOTrainer
    from .verifiers import make_correctness_reward

    folder = Path(recipe.output_dir) / "ppo"
    final = folder / "final_model"
    if _is_done(folder):
        return str(final)
    from .loading import remote_code_kwargs

    section = {**recipe.ppo, "use_vllm": resolve_use_vllm(recipe.ppo.get("use_vllm", False), policy_ref)}
    args = stage_config(PPOConfig, section, folder, recipe.seed, save_strategy="steps", save_steps=50, save_total_limit=1)
    args.model_init_kwargs = {**remote_code_kwargs(), **(args.model_init_kwargs or {})}
    dense = [step_reward_provider(source, reward_models, recipe) for source in args.dense_rewards]
    trainer = PPOTrainer(
        model=policy_ref, reward_funcs=[make_correctness_reward(recipe.task)], args=args,
        train_dataset=_rl_dataset(train), processing_class=load_tokenizer(policy_ref, padding_side="left"),
        dense_reward_funcs=dense, peft_config=_peft_config(recipe),
    )
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(final))
    trainer.processing_class.save_pretrained(str(final))
    _mark_done(folder, {"cumulative_samples": trainer.samples_seen, "steps": trainer.state.global_step}, state,
               final, recipe)
    return str(final)


def resolve_use_vllm(value, policy_ref: str) -> bool:
    """A PPO (or GRPO) section's ``use_vllm``: true, false, or ``auto`` (TRL's colocated vLLM engine when
    vLLM is installed and can serve the policy)."""
    if value != "auto":
        return value
    from transformers import AutoConfig

    from .loading import remote_code_kwargs
    from .sampling import vllm_installed
    from .sampling.vllm_backend import unservable_reason

    return vllm_installed() and unservable_reason(AutoConfig.from_pretrained(policy_ref, **remote_code_kwargs())) is None


def run_rcrl_stage(recipe: Recipe, policy_ref: str, train, held_out, reward_models: dict, state) -> str:
    """Return-conditioned RL rounds from the policy (resumes inside its rounds, like EI)."""
    from .trainers.return_conditioned_config import ReturnConditionedConfig
    from .trainers.return_conditioned_trainer import ReturnConditionedTrainer

    folder = Path(recipe.output_dir) / "rcrl"
    final = folder / "final_model"
    if not _is_done(folder):
        args = stage_config(ReturnConditionedConfig, recipe.rcrl, folder, recipe.seed, task=recipe.task, save_strategy="no")
        step_reward = step_reward_provider(args.step_reward, reward_models, recipe) if args.tag_mode == "dense" else None
        trainer = ReturnConditionedTrainer(model=policy_ref, args=args, train_dataset=train, eval_dataset=held_out,
                                           peft_config=_peft_config(recipe), step_reward_func=step_reward)
        history = trainer.train()
        trainer.save_model(str(final))
        _mark_done(folder, {"rounds": len(history) - 1, "cumulative_samples": history[-1]["cumulative_samples"],
                            "good_token": args.good_token, "tag_mode": args.tag_mode}, state, final, recipe)
    return str(final)


def rcrl_conditioning(folder: str | Path) -> dict:
    """How to evaluate a finished RCRL stage conditioned on its good tag: the prompt suffix and, for
    dense tags, the token forced after every step (``run_eval_stage``'s ``conditioning`` entry)."""
    done = json.loads((Path(folder) / DONE).read_text())
    return {"suffix": done["good_token"], "force_after_steps": done["good_token"] if done.get("tag_mode") == "dense" else None}


def run_eval_stage(recipe: Recipe, models: dict[str, str], held_out, state, reward_model: str | None = None,
                   conditioning: dict[str, dict] | None = None) -> dict:
    """Evaluate each model (``name -> folder``); ``conditioning[name]`` (``rcrl_conditioning``) appends
    its ``suffix`` to the prompts and forces ``force_after_steps`` after every step (a return-conditioned
    policy's good tag)."""
    from .evaluation import EvalSettings, evaluate, write_report
    from .loading import load_model, load_tokenizer

    settings = EvalSettings(**{"seed": recipe.seed, **recipe.eval})
    scorer = None
    if reward_model:
        from .reward_models.base import load_reward_model

        scorer = load_reward_model(reward_model).rerank_scorer
    results = {}
    for name, reference in models.items():
        folder = Path(recipe.output_dir) / "eval" / name.replace(" ", "_")
        condition = (conditioning or {}).get(name, {})
        suffix, forced = condition.get("suffix", ""), condition.get("force_after_steps")
        config = {"model": reference, "reward_model": reward_model, "prompt_suffix": suffix, **dataclasses.asdict(settings)}
        if forced:
            config["force_after_steps"] = forced
        previous = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
        if previous.get("config") == config:  # finished before a crash, with the same settings
            results[name] = previous
            continue
        model, tokenizer = load_model(reference, device=str(state.device)), load_tokenizer(reference)
        questions = held_out.map(lambda row, s=suffix: {"prompt": row["prompt"] + s}) if suffix else held_out
        report = evaluate(model, tokenizer, questions, recipe.task, settings, reward_scorer=scorer,
                          logits_processors=_forced_tag(tokenizer, forced))
        if state.is_main_process:
            write_report(report, folder, config, title=f"{name} on {recipe.task}")
        state.wait_for_everyone()
        results[name] = {key: value for key, value in report.items() if key != "records"}
    return results


def _forced_tag(tokenizer, token: str | None) -> list:
    if not token:
        return []
    from .trainers.return_conditioned_trainer import ForceTokenAfterDelimiter

    return [ForceTokenAfterDelimiter(tokenizer, tokenizer.convert_tokens_to_ids(token))]


def comparison_table(results: dict[str, dict], samples_used: dict[str, int]) -> str:
    """One row per evaluated model: maj@1, maj@K, rerank@K (with a reward model), pass@1, pass@K,
    exploration, solutions sampled for training."""
    k = max((int(n.split("@")[1]) for r in results.values() for n in r["metrics"] if n.startswith("pass@")), default=1)
    reranked = any(f"rerank@{k}" in r["metrics"] for r in results.values())
    names = ["maj@1", f"maj@{k}", *([f"rerank@{k}"] if reranked else []), "pass@1", f"pass@{k}"]
    rows = []
    for name, report in results.items():
        metrics = report["metrics"]
        rows.append([
            name, *(metrics.get(n, float("nan")) for n in names),
            report["exploration"].get("distinct_correct_solutions", float("nan")), samples_used.get(name, 0),
        ])
    headers = ["model", "maj@1 (greedy)", *names[1:], "distinct correct / question", "solutions sampled for training"]
    return markdown_table(headers, rows)


def run_recipe(recipe: Recipe) -> dict:
    """Run every stage of ``recipe``; returns the eval stage's results (empty without one)."""
    from .loading import allow_remote_code, process_state
    from .progress import announce_plan, stage_banner
    from .recipes import STAGES

    state = process_state()
    allow_remote_code(recipe.trust_remote_code)
    stages = [s for s in STAGES if s in recipe.stages]
    announce_plan(recipe, stages, state)

    def banner(stage: str):
        return stage_banner(recipe, stage, stages.index(stage) + 1, len(stages), state)

    model_ref = initial_model(recipe, state)
    sft_train, ei_train, held_out = load_datasets(recipe)
    models: dict[str, str] = {}
    current = model_ref
    if "sft" in stages:
        with banner("sft"):
            current = models["sft"] = run_sft_stage(recipe, current, sft_train, state)
    reward_models = {}
    for stage, kind in (("orm", "outcome"), ("prm", "process")):
        if stage in stages:
            with banner(stage):
                reward_models[stage] = run_reward_model_stage(recipe, kind, current, sft_train, held_out, state)
    # every RL method starts from the same policy, so the eval table compares them like for like
    if "ei" in stages:
        with banner("ei"):
            models["ei"] = run_ei_stage(recipe, current, ei_train, held_out, state)
    if "ppo" in stages:
        with banner("ppo"):
            models["ppo"] = run_ppo_stage(recipe, current, ei_train, held_out, reward_models, state)
    conditioning = {}
    if "rcrl" in stages:
        with banner("rcrl"):
            models["rcrl"] = models["rcrl unconditioned"] = run_rcrl_stage(recipe, current, ei_train, held_out,
                                                                           reward_models, state)
        conditioning["rcrl"] = rcrl_conditioning(Path(recipe.output_dir) / "rcrl")
    if "eval" not in stages:
        return {}
    models = models or {"initial": model_ref}
    reranker = recipe.reward_model or reward_models.get("orm") or reward_models.get("prm")
    with banner("eval"):
        results = run_eval_stage(recipe, models, held_out, state, reranker, conditioning)
    samples_used = {}
    for stage in ("ei", "ppo", "rcrl"):
        done = Path(recipe.output_dir) / stage / DONE
        if done.exists():
            samples_used[stage] = json.loads(done.read_text())["cumulative_samples"]
    if "rcrl" in samples_used:
        samples_used["rcrl unconditioned"] = samples_used["rcrl"]
    table = comparison_table(results, samples_used)
    gains = gains_table(Path(recipe.output_dir), results, baseline=next(iter(results)))
    body = table + (f"\n\n{gains}" if gains else "")
    if state.is_main_process:
        write_json_atomic(Path(recipe.output_dir) / "results.json", results)
        write_text_atomic(Path(recipe.output_dir) / "results.md", f"# {recipe.task}: held-out results\n\n{body}\n")
        print(body)
    return results


def paired_gains(output_dir: Path, results: dict, baseline: str = "sft") -> dict[str, dict]:
    """Greedy maj@1 gain of each evaluated model over ``baseline`` on the same held-out questions, with
    a paired bootstrap 95% interval (from the eval stage's ``samples.jsonl``)."""
    from .metrics import paired_difference
    from .reporting import read_jsonl

    def greedy(name: str) -> dict[str, float]:
        records = read_jsonl(output_dir / "eval" / name.replace(" ", "_") / "samples.jsonl")
        return {r["id"]: float(r["correct"]) for r in records if r["kind"] == "greedy"}

    base, gains = greedy(baseline), {}
    for name in results:
        if name != baseline:
            mine = greedy(name)
            gain = paired_difference([mine[i] for i in base], list(base.values()))
            gains[name] = {"gain": gain.mean, "ci95": [gain.ci_low, gain.ci_high]}
    return gains


def gains_table(output_dir: Path, results: dict, baseline: str) -> str:
    """``paired_gains`` as a markdown table ('' with a single model)."""
    if len(results) < 2:
        return ""
    rows = [[name, f"{g['gain']:+.3f}", f"[{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]"]
            for name, g in paired_gains(output_dir, results, baseline).items()]
    return markdown_table(["model", f"maj@1 (greedy) gain over {baseline}", "paired bootstrap 95% interval"], rows)
