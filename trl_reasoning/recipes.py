"""YAML recipes: one file per experiment, validated before any work starts.

A recipe names the model, the task, the stages to run and one section per stage whose keys are the
fields of that stage's config class (``sft``: TRL's ``SFTConfig``; ``ei``: ``ExpertIterationConfig``;
``orm`` / ``prm``: ``RewardModelConfig``; ``ppo``: ``PPOConfig``; ``rcrl``: ``ReturnConditionedConfig``;
``eval``: ``EvalSettings``; a registered stage: its ``Stage.config``, see ``stages``). Any key can be
overridden from the command line: ``--task gsm8k``, ``--ei.num_rounds 2``, ``--stages "[sft, eval]"``
(values are read as YAML). A recipe may start from another, ``base: quickstart.yaml``, and state only
what it changes.

Every problem (unknown or mistyped key, wrong type, missing model, unknown stage) is reported as one
line naming the key and what was expected.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from .errors import RecipeError
from .recipe_checks import check_section
from .stages import get_stage, stage_names
from .tasks import task_names_help
from .trackers import check_installed as check_trackers_installed

TINY_KEYS = ("arch", "vocab_size", "hidden_size", "num_layers", "num_heads", "max_positions",
             "tie_word_embeddings")
__all__ = ["Recipe", "RecipeError", "check_section", "load_recipe", "parse_overrides", "read_raw",
           "recipe_from_raw", "stage_names"]


@dataclass
class Recipe:
    """Top level of a recipe file."""

    model: str = field(metadata={"help": "Initial model: local folder, .gguf file, Hub id, or 'tiny' (built "
                                         "offline)."})
    task: str = field(default="gsm8k", metadata={"help": f"A registered task: {task_names_help()}."})
    stages: list[str] = field(default_factory=lambda: ["sft", "ei", "eval"], metadata={
        "help": "Stages to run, in run order whatever the listed order (sft, orm, prm, ei, ppo, rcrl, "
                "process_grpo, eval and any registered stage); the RL stages all start from the sft policy."})
    output_dir: str = field(default="runs/experiment", metadata={"help": "Run folder; rerunning resumes in "
                                                                         "it."})
    seed: int = field(default=0, metadata={"help": "Seed for data generation, sampling and training."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code shipped in a model's Hub "
                                                                     "repository (transformers' "
                                                                     "trust_remote_code). Off unless set."})
    train_data: str | None = field(default=None, metadata={"help": "Train questions: file or Hub id "
                                                                   "(default: the task's)."})
    eval_data: str | None = field(default=None, metadata={"help": "Held-out questions: file or Hub id "
                                                                  "(default: the task's test split)."})
    train_limit: int | None = field(default=None, metadata={"help": "Use only the first N train questions."})
    sft_train_limit: int | None = field(default=None, metadata={"help": "SFT on only the first N train "
                                                                        "questions' reference solutions."})
    ei_train_limit: int | None = field(default=None, metadata={"help": "EI, PPO and RCRL train on only the "
                                                                       "first N train questions."})
    rm_train_limit: int | None = field(default=None, metadata={"help": "Sample reward-model data on only "
                                                                       "the first N train questions."})
    reward_model: str | None = field(default=None, metadata={"help": "Reward model folder/Hub id the eval "
                                                                     "stage reranks with (rerank@k); "
                                                                     "default: the ORM (else PRM) this run "
                                                                     "trains."})
    eval_limit: int | None = field(default=None, metadata={"help": "Evaluate on only the first N held-out "
                                                                   "questions."})
    num_train_examples: int = field(default=2000, metadata={"help": "Arithmetic task only: train questions "
                                                                    "to generate."})
    num_eval_examples: int = field(default=200, metadata={"help": "Arithmetic task only: held-out questions "
                                                                  "to generate."})
    solution_format: Literal["as_given", "steps"] = field(default="as_given", metadata={
        "help": "The reference solutions' written form, which SFT trains on: as_given, or steps: one "
                "'a op b = c' line per operation, then '#### N' (SVAMP's one-line equation unrolled; "
                "GSM8K's and arithmetic's references are written so already)."})
    eval_split: Literal["test", "validation"] = field(default="test", metadata={
        "help": "Where the eval stage's questions come from: 'test' (the held-out split) or 'validation': "
                "questions carved from the train split and never trained on (arithmetic: num_eval_examples "
                "more generated train problems; a file: the fifth of its train rows picked by a hash of the "
                "reference solution), for choosing settings without looking at the test split."})
    prompt_style: str = field(default="zero_shot", metadata={"help": "zero_shot, few_shot or chat."})
    train_prompt_style: str | None = field(
        default=None,
        metadata={
            "help": "What the fine-tunes (sft, EI/RCRL rounds) see as the prompt: zero_shot, few_shot or "
            "chat; default: prompt_style. E.g. few-shot sampling from a pretrained model, trained on "
            "question -> solution without the exemplars (a 'training_prompt' column). Models the run "
            "fine-tunes are then sampled and evaluated with these prompts; the starting model keeps "
            "prompt_style."
        },
    )
    num_shots: int = field(default=4, metadata={"help": "Exemplars in few_shot prompts."})
    arithmetic: dict = field(default_factory=dict, metadata={"help": "Arithmetic task difficulty: "
                                                                     "ArithmeticConfig fields (min_steps, "
                                                                     "max_operand, operators, ...)."})
    tiny: dict = field(default_factory=dict, metadata={"help": "Tiny model size when model is 'tiny': "
                                                               f"{', '.join(TINY_KEYS)}."})
    peft: dict | None = field(default=None, metadata={"help": "LoRA: peft.LoraConfig fields (r, lora_alpha, "
                                                              "target_modules, ...)."})
    quantization: dict | None = field(
        default=None,
        metadata={
            "help": "QLoRA for the policy stages (sft, ei/rcrl round fine-tunes, ppo's policy and value "
            "model, grpo, process_grpo; not under DeepSpeed): transformers.BitsAndBytesConfig fields "
            "(load_in_4bit: true, bnb_4bit_quant_type: nf4, ...); the base trains in 4 bits under the "
            "recipe's peft adapters, which are merged into the full-precision policy when the stage (or "
            "round) ends. Needs peft and bitsandbytes (pip install 'trl-reasoning[quantization]')."
        },
    )
    accelerate: dict | None = field(
        default=None,
        metadata={
            "help": "Launch through accelerate: {config: NAME or PATH (single, multi_cpu, multi_gpu, zero1, "
            "zero2, zero3, fsdp), num_processes: N}; --accelerate_config / --num_processes override it."
        },
    )
    training_eval: dict | None = field(
        default=None,
        metadata={
            "help": "Held-out accuracy during training (ReasoningEvalCallback) in the sft, ppo, "
            "process_grpo, ei and rcrl stages: TrainingEvalSettings fields (eval_steps, limit, "
            "num_generations, temperature, max_new_tokens, ...); logged as reasoning/<metric> and written to "
            "<stage>/reasoning_eval/metrics.json."
        },
    )
    time_budget_seconds: float | None = field(
        default=None,
        metadata={
            "help": "Wall-clock budget of each RL stage (ei, rcrl, ppo, grpo, process_grpo), in seconds, for "
            "comparisons at equal wall time (a compare method may set it): a WallClockBudget callback stops "
            "a trainer after the optimizer step that spends it; EI and RCRL start a round only when the "
            "last round's time fits in what is left. A resumed stage counts the time recorded before."
        },
    )
    report_to: str | list[str] = field(
        default="none",
        metadata={
            "help": "Trackers every stage logs to (TrainingArguments.report_to: none, trackio, wandb, ...); "
            "EI/RCRL also log their per-round metrics there. A stage section may override it."
        },
    )
    compare: dict | None = field(
        default=None,
        metadata={
            "help": "For 'trl-reasoning compare': {methods: {NAME: {stage: STAGE, SECTION: {overrides}}}, "
            "budget: N, reference: NAME}; each method runs STAGE from every seed's SFT policy with its "
            "sections merged over the recipe's; budget: training samples every sampling method must draw; "
            "reference: the method every gap is measured to (default ei). 'train' ignores it."
        },
    )
    sections: dict[str, dict] = field(default_factory=dict, metadata={
        "help": "Stage sections by stage name (written in the recipe as top-level keys: 'ei: {...}')."})

    def section(self, name: str) -> dict:
        """The recipe's section for stage ``name`` (``{}`` when it has none)."""
        return self.sections.get(name, {})

    def with_section(self, name: str, values: dict, **changes) -> Recipe:
        """A copy with stage ``name``'s section replaced by ``values`` (and other fields changed)."""
        return dataclasses.replace(self, sections={**self.sections, name: values}, **changes)

    def __getattr__(self, name: str):
        if name != "sections" and name in stage_names():  # recipe.ei, recipe.ppo, ...
            return self.section(name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")


def _set_override(raw: dict, dotted: str, text: str) -> None:
    value = yaml.safe_load(text) if text != "" else None
    keys = dotted.split(".")
    target = raw
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise RecipeError(f"recipe: cannot override '{dotted}': '{key}' is not a section")
    target[keys[-1]] = value


def parse_overrides(argv: list[str]) -> list[tuple[str, str]]:
    """``["--ei.num_rounds", "2", "--task=gsm8k"]`` -> ``[("ei.num_rounds", "2"), ("task", "gsm8k")]``."""
    pairs, i = [], 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise RecipeError(f"recipe: expected --key value overrides, got {token!r}")
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        elif i + 1 < len(argv):
            key, value = token[2:], argv[i + 1]
            i += 2
        else:
            raise RecipeError(f"recipe: override {token} has no value")
        pairs.append((key.replace("-", "_"), value))
    return pairs


def read_raw(path: str | Path, overrides: list[tuple[str, str]] = (), _seen: tuple = ()) -> dict:
    """A recipe file's (or shipped recipe's, by name) mapping with the command-line ``overrides`` applied
    (one-line errors)."""
    from .recipe_catalog import resolve_recipe

    path = resolve_recipe(str(path))
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe: {path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe: {path} must be a mapping of keys to values")
    if "base" in raw:
        raw = _over_base(raw, path, _seen)
    for key, value in overrides:
        _set_override(raw, key, value)
    return raw


def _over_base(raw: dict, path: Path, seen: tuple) -> dict:
    """``base: OTHER.yaml`` (beside this file, or a shipped recipe's name): that recipe's mapping with
    this one's keys over it; a section (a mapping) is merged key by key, so a sweep or a variant states
    only what it changes."""
    base = raw.pop("base")
    if not isinstance(base, str):
        raise RecipeError(f"recipe: 'base' must be a recipe file or name, got {base!r}")
    beside = path.parent / base
    chain = (*seen, path.resolve())
    if beside.exists() and beside.resolve() in chain:
        raise RecipeError(f"recipe: 'base' of {path} leads back to {beside.resolve()} (a cycle of bases)")
    merged = read_raw(beside if beside.exists() else base, _seen=chain)
    for key, value in raw.items():
        below = merged.get(key)
        merged[key] = {**below, **value} if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


def load_recipe(path: str | Path, overrides: list[tuple[str, str]] = ()) -> Recipe:
    """Read, override and validate a recipe (a file, or a shipped recipe's name: ``quickstart``); raises
    ``RecipeError`` with one line on any problem."""
    from .recipe_catalog import resolve_recipe

    return recipe_from_raw(read_raw(path, overrides), resolve_recipe(str(path)))


def recipe_from_raw(raw: dict, path: str | Path) -> Recipe:
    """Validate a recipe's mapping (``read_raw``) into a ``Recipe``; ``path`` names it in errors."""
    from .tasks import ArithmeticConfig

    raw, path = copy.deepcopy(raw), Path(path)
    if "model" not in raw or not raw["model"]:
        raise RecipeError("recipe: missing key 'model' (a local folder, .gguf file, Hub id, or 'tiny')")
    recipe = _build(raw)
    check_section(recipe.arithmetic, ArithmeticConfig, "arithmetic.")
    bad_tiny = sorted(set(recipe.tiny) - set(TINY_KEYS))
    if bad_tiny:
        raise RecipeError(f"recipe: unknown key 'tiny.{bad_tiny[0]}'; valid keys: {', '.join(TINY_KEYS)}")
    try:
        _check_references(recipe)
    except RecipeError as err:
        raise RecipeError(str(err) + _made_by(recipe.model, path)) from None
    _check_dense_sources(recipe)
    _check_quantization(recipe)
    _check_servers(recipe)
    _check_eval_split(recipe)
    check_trackers_installed(recipe)  # report_to names only installed trackers
    _check_time_budget(recipe.time_budget_seconds)
    if recipe.training_eval is not None:
        from .eval_callback import TrainingEvalSettings

        if not isinstance(recipe.training_eval, dict):
            raise RecipeError("recipe: 'training_eval' must be a mapping of TrainingEvalSettings fields")
        check_section(recipe.training_eval, TrainingEvalSettings, "training_eval.")
    return recipe


def _check_time_budget(seconds) -> None:
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                                or seconds <= 0):
        raise RecipeError(f"recipe: 'time_budget_seconds' must be a positive number of seconds, got "
                          f"{seconds!r}")


def _check_eval_split(recipe: Recipe) -> None:
    """``eval_split: validation`` takes its questions from the train data: an ``eval_data`` of its own
    would go unused (one file holding both splits, as SVAMP's, is fine)."""
    if recipe.eval_split == "validation" and recipe.eval_data not in (None, recipe.train_data):
        raise RecipeError("recipe: 'eval_split: validation' carves its questions from train_data; "
                          f"'eval_data' ({recipe.eval_data}) would be unused: drop it or use "
                          "eval_split: test")


def _check_servers(recipe: Recipe) -> None:
    """A section sampling through ``vllm serve`` names its servers once: URLs or a launch."""
    for name in recipe.stages:
        values = recipe.section(name)
        if "vllm_server" not in (values.get("sampling_backend"), values.get("backend")):
            continue
        if bool(values.get("vllm_server_urls")) == bool(values.get("vllm_server_launch")):
            raise RecipeError(f"recipe: '{name}' samples with vllm_server: set exactly one of "
                              f"'{name}.vllm_server_urls' (running servers) and '{name}.vllm_server_launch' "
                              "(servers to start)")


def _check_quantization(recipe: Recipe) -> None:
    if recipe.quantization is None:
        return
    if not isinstance(recipe.quantization, dict) or not recipe.quantization:
        raise RecipeError("recipe: 'quantization' must be a mapping of BitsAndBytesConfig fields "
                          "(load_in_4bit: true, ...)")
    if not recipe.peft:
        raise RecipeError("recipe: 'quantization' (QLoRA) needs a 'peft' section: a quantized base trains "
                          "through LoRA adapters only")


def _build(raw: dict) -> Recipe:
    """A ``Recipe`` from the file's mapping: top-level keys checked against ``Recipe``'s fields, stage
    sections (keys naming a registered stage) against their stage's config class."""
    names = stage_names()
    if "sections" in raw:
        raise RecipeError("recipe: unknown key 'sections'; write each stage's section as a top-level key "
                          "('ei: {...}')")
    sections = {name: raw.pop(name) for name in list(raw) if name in names}
    top = {f.name for f in dataclasses.fields(Recipe)} - {"sections"}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise RecipeError(f"recipe: unknown key '{unknown[0]}'; valid keys: {', '.join(sorted(top))}; "
                          f"stage sections: {', '.join(names)}")
    check_section(raw, Recipe, "")
    recipe = Recipe(**raw, sections=sections)
    bad = [s for s in recipe.stages if s not in names]
    if bad or not recipe.stages:
        raise RecipeError(f"recipe: 'stages' has unknown stage(s) {bad}; expected a list of "
                          f"{', '.join(names)}")
    for name, values in sections.items():
        check_section(values, get_stage(name).config(), f"{name}.")
    return recipe


def _made_by(missing: str, recipe_path: Path) -> str:
    """``"; recipes/x.yaml makes it: run that first"`` when a sibling recipe's output holds ``missing``."""
    target = Path(missing).expanduser()
    for other in sorted(recipe_path.parent.glob("*.yaml")):
        if other.resolve() == recipe_path.resolve():
            continue
        try:
            output_dir = (yaml.safe_load(other.read_text()) or {}).get("output_dir")
        except (yaml.YAMLError, AttributeError, OSError):
            continue
        if output_dir and (target == Path(output_dir) or Path(output_dir) in target.parents):
            return f"; {other} makes it: run 'trl-reasoning train {other}' first"
    return ""


def _check_dense_sources(recipe: Recipe) -> None:
    """Dense rewards must name a provider this run will have."""
    ppo, rcrl = recipe.section("ppo"), recipe.section("rcrl")
    sources = [("ppo.dense_rewards", s) for s in ppo.get("dense_rewards") or []]
    if rcrl.get("tag_mode") == "dense":
        if not rcrl.get("step_reward"):
            raise RecipeError("recipe: 'rcrl.tag_mode: dense' needs 'rcrl.step_reward' (orm, prm, heuristic "
                              "or a reward-model path)")
        sources.append(("rcrl.step_reward", rcrl["step_reward"]))
    for key, source in sources:
        if source in ("orm", "prm") and source not in recipe.stages and not recipe.reward_model:
            raise RecipeError(f"recipe: '{key}' uses '{source}' but the recipe has no {source} stage and no "
                              "'reward_model'")
        if source not in ("orm", "prm", "heuristic"):
            _check_model_reference(source, f"recipe: '{key}': ")


def _check_model_reference(reference: str, prefix: str) -> None:
    """``reference`` is a model folder, .gguf file or Hub id, or one ``RecipeError`` line after ``prefix``."""
    from .loading import ModelLoadError, resolve

    try:
        resolve(reference)
    except ModelLoadError as err:
        raise RecipeError(f"{prefix}{err}") from None


def _check_references(recipe: Recipe) -> None:
    """Model and task must exist before hours of work start."""
    from .tasks import TASKS

    if recipe.task not in TASKS:
        raise RecipeError(f"recipe: 'task' must be one of {', '.join(TASKS)}, got {recipe.task!r}")
    if recipe.model != "tiny":
        _check_model_reference(recipe.model, "recipe: ")
    if recipe.reward_model:
        _check_model_reference(recipe.reward_model, "recipe: reward_model: ")
    for key in ("train_data", "eval_data"):
        value = getattr(recipe, key)
        if (
            value
            and value.endswith((".jsonl", ".json", ".parquet"))
            and not Path(value).expanduser().is_file()
        ):
            raise RecipeError(f"recipe: '{key}' file {value!r} does not exist")
