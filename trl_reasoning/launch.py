"""``trl-reasoning train RECIPE.yaml --accelerate_config NAME|PATH --num_processes N``: launch the recipe
through accelerate, the way ``trl sft --accelerate_config zero2`` does.

``NAME`` is a config shipped in ``trl_reasoning/accelerate_configs/`` (``single``, ``multi_cpu``,
``multi_gpu``, ``zero1``, ``zero2``, ``zero3``, ``fsdp``) or a path to an accelerate config file. The
recipe may carry the same keys (``accelerate: {config: zero2, num_processes: 2}``); the command line
wins. Without either, ``train`` runs in this process, as ``accelerate launch -m trl_reasoning train``
children do. What a CPU machine needs is set here, not by the user: DeepSpeed's CPU accelerator, no
mixed precision, and a clear refusal of FSDP (accelerate only enables it on accelerators).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import yaml

from .environment import environment_set
from .errors import RecipeError

LAUNCH_FLAGS = ("accelerate_config", "num_processes")
LAUNCHED_ENV = "TRL_REASONING_LAUNCHED"  # set for the launched processes: they run the recipe themselves


def split_launch_args(argv: list[str]) -> tuple[dict, list[str]]:
    """``(launch options, the other arguments)`` from ``train``'s arguments after the recipe path."""
    options, rest, i = {}, [], 0
    while i < len(argv):
        key = argv[i][2:].split("=", 1)[0].replace("-", "_") if argv[i].startswith("--") else None
        if key in LAUNCH_FLAGS:
            if "=" in argv[i]:
                options[key], i = argv[i].split("=", 1)[1], i + 1
            elif i + 1 < len(argv):
                options[key], i = argv[i + 1], i + 2
            else:
                raise RecipeError(f"recipe: --{key} needs a value")
        else:
            rest.append(argv[i])
            i += 1
    return options, rest


def launch_options(recipe_section: dict | None, cli: dict) -> dict:
    """The launch to do (``{}``: run here): the recipe's ``accelerate`` section, overridden by the
    command line; nothing inside an already launched process."""
    if os.environ.get(LAUNCHED_ENV) == "1":
        return {}
    section = dict(recipe_section or {})
    unknown = sorted(set(section) - {"config", "num_processes"})
    if unknown:
        raise RecipeError(f"recipe: unknown key 'accelerate.{unknown[0]}'; valid keys: config, num_processes")
    options = {"config": section.get("config"), "num_processes": section.get("num_processes")}
    options["config"] = cli.get("accelerate_config", options["config"])
    options["num_processes"] = cli.get("num_processes", options["num_processes"])
    if options["num_processes"] is not None:
        try:
            options["num_processes"] = int(options["num_processes"])
        except ValueError:
            raise RecipeError(
                f"recipe: num_processes must be an integer, got {options['num_processes']!r}"
            ) from None
        if options["num_processes"] < 1:
            raise RecipeError(f"recipe: num_processes must be >= 1, got {options['num_processes']}")
    return {k: v for k, v in options.items() if v is not None}


def config_names() -> list[str]:
    """The accelerate configs shipped with the package."""
    folder = resources.files("trl_reasoning") / "accelerate_configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def config_path(reference: str) -> Path:
    """A shipped config's file (by name) or ``reference`` itself when it is a file."""
    if Path(reference).expanduser().is_file():
        return Path(reference).expanduser()
    candidate = Path(str(resources.files("trl_reasoning") / "accelerate_configs" / f"{reference}.yaml"))
    if not candidate.is_file():
        raise RecipeError(f"recipe: accelerate config {reference!r} is neither a file nor one of "
                          f"{', '.join(config_names())}")
    return candidate


def launch_arguments(options: dict, cuda: bool) -> tuple[list[str], dict[str, str]]:
    """``accelerate launch`` arguments and the environment the launched processes need."""
    name = options.get("config") or ("multi_gpu" if cuda else "multi_cpu")
    path = config_path(name)
    config = yaml.safe_load(path.read_text()) or {}
    kind = str(config.get("distributed_type", "NO")).upper()
    if kind == "FSDP" and not cuda:
        raise RecipeError(
            f"recipe: accelerate config {name!r}: FSDP needs GPUs: accelerate does not enable it on CPU; "
            "use zero2 or zero3 here"
        )
    args, env = ["--config_file", str(path)], {LAUNCHED_ENV: "1"}
    if "num_processes" in options:
        args += ["--num_processes", str(options["num_processes"])]
    if int(config.get("num_machines", 1)) == 1 and "main_process_port" not in config:
        # one machine, no port chosen: a free one (accelerate's port 0), so two runs on one machine (or
        # two tests at once) do not both wait on 29500; a multi-machine config names its own port
        args += ["--main_process_port", "0"]
    if not cuda:
        args += ["--mixed_precision", "no"]  # the GPU configs ask for bf16
        if kind == "DEEPSPEED":
            env["DS_ACCELERATOR"] = os.environ.get(
                "DS_ACCELERATOR", "cpu"
            )  # stock deepspeed on CPU, over gloo
    return args, env


def launch(recipe_path: str, rest: list[str], options: dict) -> None:
    """Run ``trl-reasoning train recipe_path *rest`` in the processes ``options`` ask for."""
    import torch
    from accelerate.commands.launch import launch_command, launch_command_parser

    args, env = launch_arguments(options, torch.cuda.is_available())
    parsed = launch_command_parser().parse_args([*args, "-m", "trl_reasoning", "train", recipe_path, *rest])
    try:
        with environment_set(env):  # for the launched processes only: a later train here may launch again
            launch_command(parsed)
    except Exception as err:  # accelerate raises CalledProcessError / torch's ChildFailedError
        raise RecipeError(
            f"launch: a launched process failed ({type(err).__name__}); its output is above"
        ) from None
