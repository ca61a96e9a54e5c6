"""The real-model page's PPO step profile section, from ``benchmarks/ppo_step_profile.py``'s JSON reports
copied under ``docs/results/ppo_profile/``."""

from __future__ import annotations

import json
from pathlib import Path

PROFILES = "ppo_profile"  # docs/results/ppo_profile/NAME.json: benchmarks/ppo_step_profile.py reports


def _load(report: dict) -> str:
    """The machine's load when the profile started (the profile of 12-06 ran with the other runs paused)."""
    if "load_average" in report:
        return f", load average {report['load_average']:.2f} as it started"
    return ", the machine's other runs paused"


def _profile_reading(report: dict) -> str:
    """The report's own ratios, per token against the bare model's forward; claims only what they show."""
    phase = {row["phase"]: row for row in report["phases"]}
    bare = report["bare_model"]

    def vs_bare(name):  # a phase's time per token over the bare model's forward (None: not measured)
        per_token = phase.get(name, {}).get("ms_per_1k_tokens")
        return f"{per_token / bare['forward_ms_per_1k_tokens']:.2f}x" if per_token else "not measured"

    adapters = "LoRA policy" if report["sizes"].get("policy_lora") else "policy"
    floor = bare["forward_seconds"] / bare["forward_floor_seconds"]
    return (f"Reading it: the model alone runs at {floor:.2f}x its matmul floor on this CPU. Per token, "
            "against that bare forward: the value model's rollout "
            f"forward {vs_bare('rollout values')}, its forward with gradients {vs_bare('value forward')}; "
            f"the {adapters}'s log-prob forwards without gradients {vs_bare('log-probs (no grad)')} (half "
            f"of them the reference pass, adapters off) and with them {vs_bare('policy forward')}. "
            f"Generation is {phase['generate']['ratio']}x its matmul floor. bf16 matmuls run at "
            f"{report['matmul_gflops']['bfloat16']:g} GFLOP/s here against "
            f"{report['matmul_gflops']['float32']:g} in float32.\n")


def shown_profiles(results: Path) -> list[tuple[Path, dict]]:
    """The copied PPO profiles the page shows, with their reports (not those an earlier version of the
    benchmark wrote, without the bare model's timing)."""
    reports = [(path, json.loads(path.read_text())) for path in sorted((results / PROFILES).glob("*.json"))]
    return [(path, report) for path, report in reports if "bare_model" in report]


def ppo_profile_section(results: Path) -> str:
    """``benchmarks/ppo_step_profile.py``'s JSON files under ``docs/results/ppo_profile/``: one PPO step's
    phases beside their matmul floor, and the bare model's own forward and backward; or nothing."""
    parts = []
    for path, report in shown_profiles(results):
        lines = ["| phase | s per step | share | GFLOP per step | floor s | x floor | ms per 1k tokens |",
                 "|---|---|---|---|---|---|---|"]
        for row in report["phases"]:
            cells = [row["seconds_per_step"], row["share"], row["gflop_per_step"], row["floor_seconds"],
                     row["ratio"], row["ms_per_1k_tokens"]]
            lines.append(f"| {row['phase']} | " + " | ".join("" if c is None else f"{c:g}" for c in cells)
                         + " |")
        bare, rates = report["bare_model"] or {}, report["matmul_gflops"]
        parts.append(
            f"### `{path.stem}`\n\n```bash\n{report['command']}\n```\n\n{report['cpu']}, "
            f"{report['threads']} threads{_load(report)}; matmul rate at the model's MLP shape: "
            f"{rates['float32']} GFLOP/s float32, {rates['bfloat16']} bfloat16. {report['steps_measured']} "
            f"optimizer steps measured after the first rollout ({report['completions_per_step']} completions "
            f"per step, {report['completions_sampled_per_step']:g} of them newly sampled). **Step "
            f"{report['step_seconds']} s against a matmul floor of {report['floor_seconds']} s: "
            f"{report['ratio']}x.**\n\n" + "\n".join(lines) + "\n")
        if bare:
            rows, width, completion = bare["shape"]
            parts.append(
                f"The model alone on one micro-batch ({rows} x {width} tokens, log-probs of the last "
                f"{completion}): forward {bare['forward_seconds']} s against a floor of "
                f"{bare['forward_floor_seconds']} s ({bare['forward_ms_per_1k_tokens']} ms per 1k tokens); "
                f"forward + backward through every weight {bare['forward_backward_seconds']} s against "
                f"{bare['forward_backward_floor_seconds']} s ({bare['forward_backward_ms_per_1k_tokens']} ms "
                "per 1k tokens).\n")
            parts.append(_profile_reading(report))
    if not parts:
        return ""
    return ("## Where a PPO step's time goes\n\nEach phase's exclusive wall time per optimizer step, "
            "beside a floor: its matmul FLOPs (2 x N x tokens forward; backward 2 x N x tokens more "
            "through frozen LoRA weights, 4 x N x tokens through trained ones; the output matmul on "
            "completion positions only) at the machine's measured matmul rate. Generation's floor uses "
            "the faster rate (vLLM runs its own kernels). How the benchmark counts is in its "
            "docstring.\n\n" + "\n".join(parts))
