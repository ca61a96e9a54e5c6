"""``--help`` texts of the command line, built from the argument and recipe dataclasses without
importing torch, transformers or TRL, so help answers at once."""

from __future__ import annotations

import argparse
import dataclasses

DESCRIPTIONS = {
    "train": "run a YAML recipe's stages (sft, orm, prm, ei, ppo, rcrl, process_grpo, eval, ...); "
             "rerunning resumes",
    "compare": "run a recipe's compare.methods from each seed's SFT policy; results over seeds with "
               "intervals; rerunning resumes",
    "recipes": "list the shipped recipes; 'recipes show NAME' prints one (train NAME runs it)",
    "eval": "sample a model on a task's questions, verify, report maj@1, maj@k, pass@k (and rerank@k)",
    "sample": "draw K labelled samples per question (reward-model data; Monte-Carlo step labels)",
}
RECIPE_REFERENCE = "README.md, section 'Recipes'"


def overview() -> str:
    """``trl-reasoning --help``: the commands and where to read more."""
    width = max(map(len, DESCRIPTIONS))
    lines = ["usage: trl-reasoning {train,compare,recipes,eval,sample} [--help] [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in DESCRIPTIONS.items()]
    lines += ["", "Run 'trl-reasoning COMMAND --help' for a command's options.",
              "Also: python -m trl_reasoning ..., accelerate launch [args] -m trl_reasoning train "
              "RECIPE.yaml"]
    return "\n".join(lines)


def _parser(name: str, arguments) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"trl-reasoning {name}", description=DESCRIPTIONS[name],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(arguments):
        default = f.default if f.default is not dataclasses.MISSING else None
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        text = f.metadata.get("help", "")
        suffix = " (required)" if required else "" if "(default" in text else f" (default: {default!r})"
        parser.add_argument(f"--{f.name}", metavar=f.name.upper(), help=text + suffix)
    return parser


def train_help() -> str:
    """``train --help``: usage, the recipe's top-level keys and its stage sections."""
    from .recipes import Recipe
    from .stages import get_stage, stage_names

    lines = [
        "usage: trl-reasoning train RECIPE.yaml [--accelerate_config NAME|PATH] [--num_processes N] "
        "[--key value ...]", "", DESCRIPTIONS["train"], "",
        "Any recipe key can be overridden: --task gsm8k, --ei.num_rounds 2, --stages '[sft, eval]'.",
        "--accelerate_config (single, multi_cpu, multi_gpu, zero1, zero2, zero3, fsdp, or a file) and",
        "--num_processes launch the recipe through accelerate (the recipe's 'accelerate:' section too).", "",
        "recipe keys:",
    ]
    for f in dataclasses.fields(Recipe):
        if f.name != "sections":
            lines.append(f"  {f.name:<20} {f.metadata.get('help', '')}")
    lines += ["", "stage sections (each key is a field of that stage's config class), in run order:"]
    lines += [f"  {name:<20} {get_stage(name).help}" for name in stage_names()]
    lines += ["", f"Full reference and example recipes: {RECIPE_REFERENCE}; recipes/*.yaml."]
    return "\n".join(lines)


def compare_help() -> str:
    """``compare --help``: usage and the recipe's ``compare`` section."""
    from .recipes import Recipe

    section = next(f for f in dataclasses.fields(Recipe) if f.name == "compare")
    return "\n".join([
        "usage: trl-reasoning compare RECIPE.yaml [--seeds 0 1 2] [--output DIR] [--only a,b] "
        "[--workers N] [--key value ...]",
        "", DESCRIPTIONS["compare"], "",
        "--seeds   seeds to run (default 0); each gets its own SFT policy, reward models and methods",
        "--output  folder (default: the recipe's output_dir) for results.json, results.md and the figures",
        "--only    run and report only these methods (finished ones are reused)",
        "--workers processes sharing the run (default 1), each on its share of the CPU cores or its own GPU;",
        "          pieces (a seed's shared stages, a method) are claimed by file locks, none runs twice",
        "Other --key value pairs override recipe keys, as for 'train'.", "",
        f"recipe key 'compare': {section.metadata['help']}",
        f"Full reference and example recipes: {RECIPE_REFERENCE}; recipes/compare_quickstart.yaml.",
    ])


def command_help(name: str) -> str:
    """The help text of one command."""
    if name == "train":
        return train_help()
    if name == "compare":
        return compare_help()
    if name == "recipes":
        return "usage: trl-reasoning recipes [show NAME]\n\n" + DESCRIPTIONS["recipes"]
    from .cli_arguments import EvalArguments, SampleArguments

    return _parser(name, {"eval": EvalArguments, "sample": SampleArguments}[name]).format_help()
