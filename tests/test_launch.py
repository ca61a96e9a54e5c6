"""`trl-reasoning train RECIPE --accelerate_config NAME --num_processes N`: launch options, CPU rules and
per-round metrics reaching trackio and wandb (the launched runs themselves: tests/test_distributed.py)."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from test_expert_iteration import SHORT_RECIPE

from trl_reasoning.errors import RecipeError
from trl_reasoning.launch import LAUNCHED_ENV, launch_arguments, launch_options, split_launch_args

# the EI tests' short recipe, with a round count to fill in and the HF sampler (no vLLM here)
SHORT = SHORT_RECIPE.replace("num_rounds: 3", "num_rounds: {rounds}") + "  sampling_backend: hf\n"


def test_launch_flags_are_taken_out_of_the_overrides():
    options, rest = split_launch_args(
        ["--accelerate_config", "zero2", "--ei.num_rounds", "1", "--num_processes=2"]
    )
    assert options == {"accelerate_config": "zero2", "num_processes": "2"} and rest == [
        "--ei.num_rounds",
        "1",
    ]


def test_command_line_overrides_the_recipe_section(monkeypatch):
    monkeypatch.delenv(LAUNCHED_ENV, raising=False)
    section = {"config": "zero3", "num_processes": 4}
    assert launch_options(section, {"num_processes": "2"}) == {"config": "zero3", "num_processes": 2}
    assert launch_options(None, {}) == {}
    with pytest.raises(RecipeError, match="unknown key 'accelerate.procs'"):
        launch_options({"procs": 2}, {})
    with pytest.raises(RecipeError, match="num_processes must be an integer, got 'two'"):
        launch_options(None, {"num_processes": "two"})
    monkeypatch.setenv(LAUNCHED_ENV, "1")  # a launched process runs the recipe itself
    assert launch_options(section, {"num_processes": "2"}) == {}


def test_cpu_rules_are_set_by_the_launcher():
    args, env = launch_arguments({"config": "zero2", "num_processes": 2}, cuda=False)
    assert args[1].endswith("zero2.yaml")
    assert args[2:] == ["--num_processes", "2", "--main_process_port", "0", "--mixed_precision", "no"]
    assert env["DS_ACCELERATOR"] == "cpu" and env[LAUNCHED_ENV] == "1"
    args, _ = launch_arguments({"num_processes": 2}, cuda=False)  # no config: the multi-process CPU one
    assert args[1].endswith("multi_cpu.yaml")
    args, env = launch_arguments({"config": "zero2"}, cuda=True)
    assert "--mixed_precision" not in args and "DS_ACCELERATOR" not in env
    with pytest.raises(RecipeError, match="FSDP needs GPUs: accelerate does not enable it on CPU; use zero2"):
        launch_arguments({"config": "fsdp"}, cuda=False)


def test_a_one_machine_launch_takes_a_free_port_and_a_config_port_is_kept(tmp_path):
    """Port 0 (accelerate picks a free one) on one machine, so two runs at once do not collide on 29500;
    a config that names its port, or spans machines, keeps what it says."""
    args, _ = launch_arguments({"config": "multi_cpu"}, cuda=False)
    assert args[args.index("--main_process_port") + 1] == "0"
    for extra in ("main_process_port: 29511", "num_machines: 2"):
        config = tmp_path / "two.yaml"
        config.write_text(f"distributed_type: MULTI_GPU\nnum_processes: 2\n{extra}\n")
        assert "--main_process_port" not in launch_arguments({"config": str(config)}, cuda=True)[0]
    with pytest.raises(RecipeError, match="'zero9' is neither a file nor one of fsdp, multi_cpu, multi_gpu"):
        launch_arguments({"config": "zero9"}, cuda=False)


def test_launch_variables_reach_the_launched_processes_only(monkeypatch):
    import accelerate.commands.launch as accelerate_launch

    from trl_reasoning import launch as launcher

    seen = {}
    monkeypatch.delenv(LAUNCHED_ENV, raising=False)
    monkeypatch.setattr(accelerate_launch, "launch_command", lambda args: seen.update(os.environ))
    launcher.launch("recipe.yaml", [], {"config": "zero2", "num_processes": 2})
    assert seen[LAUNCHED_ENV] == "1" and seen["DS_ACCELERATOR"] == "cpu"
    assert LAUNCHED_ENV not in os.environ  # a second `train` in this process may launch again


def _wandb_history(folder, run_id: str) -> list[dict]:
    """The logged rows of every offline wandb run file of ``run_id`` under ``folder``, read from the
    files themselves (a LevelDB-style log of ``Record`` protobufs: 32 KiB blocks, 7-byte headers)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    rows = []
    for path in sorted(folder.rglob(f"run-{run_id}.wandb")):
        data, position, pending = path.read_bytes(), 7, b""
        while position + 7 <= len(data):
            left = 32768 - position % 32768
            if left < 7:
                position += left
                continue
            _, length, kind = struct.unpack("<IHB", data[position:position + 7])
            position += 7
            if kind == 0 and length == 0:  # block padding
                position += left - 7
                continue
            pending, position = pending + data[position:position + length], position + length
            if kind in (1, 4):  # a full record, or the last piece of one
                record = wandb_internal_pb2.Record()
                record.ParseFromString(pending)
                pending = b""
                if record.WhichOneof("record_type") == "history":
                    rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                 for item in record.history.item})
    return rows


def _tracker(name: str) -> None:
    """Skip on a developer machine without the tracker; fail in CI, which installs it (make setup)."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (CI installs its extra)")
        pytest.skip(f"{name} is not installed (pip install -e '.[{name}]')")


def test_per_round_metrics_reach_trackio_and_wandb(tmp_path, monkeypatch):
    """``report_to: [trackio, wandb]`` at the recipe's top level reaches the EI stage; its per-round
    maj@1, pass@k and kept counts are read back from trackio's local store and from wandb's offline run
    files (``WANDB_MODE=offline``), one row per round with the round as the x-axis."""
    _tracker("trackio")
    _tracker("wandb")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))  # read when trackio is imported
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()
    from trackio.sqlite_storage import SQLiteStorage

    from trl_reasoning.pipeline import run_recipe
    from trl_reasoning.recipes import load_recipe
    from trl_reasoning.trackers import wandb_run_id

    # a run name of its own: trackio may have been imported (its folder fixed) before TRACKIO_DIR was set
    out = tmp_path / f"run{uuid.uuid4().hex[:8]}"
    recipe = tmp_path / "short.yaml"
    recipe.write_text(SHORT.format(out=out, rounds=2) + "report_to: [trackio, wandb]\n")
    run_recipe(load_recipe(recipe))
    kept = [json.loads((out / "ei" / f"round_00{i}" / "metrics.json").read_text())["train"]["kept"]
            for i in (1, 2)]
    trackio_rows = SQLiteStorage.get_logs("trl-reasoning", f"{out.name}-ei-rounds")
    wandb_rows = sorted(_wandb_history(tmp_path / "wandb", wandb_run_id(f"{out.name}-ei-rounds")),
                        key=lambda row: row["round"])
    assert [row["step"] for row in trackio_rows] == [0, 1, 2]
    assert [row["round"] for row in wandb_rows] == [0, 1, 2]
    for rows in (trackio_rows, wandb_rows):
        assert all("eval/maj@1" in row and "cumulative_samples" in row for row in rows)
        assert [row.get("train/kept") for row in rows][1:] == kept
