"""Where one PPO step's time goes, beside a FLOP estimate of the same step, measured in one run.

Runs a recipe's ``ppo`` stage for a few optimizer steps (the real path: TRL's rollout, the colocated
vLLM engine or transformers' ``generate``, LoRA, the separate value model) with timers around each
phase, counted exclusively (a phase's time leaves out the phases inside it):

* ``generate``: vLLM's or transformers' generation (TRL's own profiling names), ``weight sync``: the
  policy's weights into the vLLM engine;
* ``log-probs (no grad)``: the rollout's old and reference log-probabilities, ``rollout values``: the
  value model's forward for GAE, ``rewards``: the reward functions and dense providers;
* ``policy forward`` / ``policy backward`` / ``policy optimizer``: the loss's forward with gradients,
  ``accelerator.backward`` and the optimizer step;
* ``value forward`` / ``value backward + step``: the value loss and the value model's own optimizer;
* ``other``: the rest of the wall time (data collation, GAE, logging, the Trainer's loop).

The FLOP estimate counts the matmuls on the tokens each phase runs (prompt + completion, padded as the
batch is; the output matmul on the unpadded completion tokens only, generation on unpadded tokens):
2 x N x tokens for what only runs forward, 6 x N x tokens for what trains every weight and
4 x N x tokens for a LoRA forward + backward (the frozen weights pass gradients on but get none); N is the
model's parameter count (SmolLM2's tied embedding counted once: it is the output matmul). Its time is the
FLOPs over this machine's measured matmul rate at the model's shapes and dtype, so ``ratio`` is how far
each phase is from its compute floor. The last line is one JSON object.

    python benchmarks/ppo_step_profile.py --recipe recipes/smollm2_svamp_ppo.yaml \
        --model runs/smollm2_recipe/sft --steps 3 [--key value ...]   (recipe overrides, as for train)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

PHASES = ("generate", "weight sync", "log-probs (no grad)", "rollout values", "rewards", "policy forward",
          "policy backward", "policy optimizer", "value forward", "value backward + step", "other")
TRL_PROFILE_NAMES = {"vLLM.generate": "generate", "transformers.generate": "generate",  # TRL's own names
                     "transformers.generate_batch": "generate", "sync_weights": "weight sync"}


class PhaseClock:
    """Exclusive wall time per phase (a phase entered inside another is subtracted from the outer one),
    with the tokens each phase ran: every position, padded as the batch runs, and the completion
    positions the output matmul sees; and the matmul dtype it ran in."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.tokens: dict[str, int] = defaultdict(int)
        self.completion_tokens: dict[str, int] = defaultdict(int)
        self.shapes: dict[str, list] = {}  # (rows, positions, completion positions) of each call
        self.rollout_tokens = self.rollout_completion_tokens = 0  # unpadded: what the engine generated
        self.rollout_rows = 0
        self._stack: list[list] = []  # [phase, start, time spent in inner phases]

    @contextlib.contextmanager
    def phase(self, name: str):
        self._stack.append([name, time.perf_counter(), 0.0])
        try:
            yield
        finally:
            name, start, inner = self._stack.pop()
            spent = time.perf_counter() - start
            self.seconds[name] += spent - inner
            if self._stack:
                self._stack[-1][2] += spent

    def count(self, phase: str, ids: torch.Tensor, mask: torch.Tensor, completion_width: int) -> None:
        """Count a forward over ``ids`` (batch x positions, padded: the body runs on every position)
        scoring its last ``completion_width`` (the output matmul runs on the unpadded ones: TRL skips
        the positions it masks)."""
        self.tokens[phase] += ids.numel()
        self.completion_tokens[phase] += int(mask[:, -completion_width:].sum())
        self.shapes.setdefault(phase, []).append((ids.shape[0], ids.shape[1], completion_width))

    def wrap(self, owner, attribute: str, name_of):
        """Replace ``owner.attribute`` (a class's function) by a timed one; ``name_of(args, kwargs)``
        names the phase of a call and may count its tokens."""
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            with self.phase(name_of(args, kwargs)):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)


def install(clock: PhaseClock) -> None:
    """Time the PPO trainer's phases (class-level wrappers, before the stage builds its trainer)."""
    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer
    from trl.extras import profiling

    from trl_reasoning.trainers.ppo_trainer import PPOTrainer
    from trl_reasoning.trainers.value_optimizer import ValueOptimizer

    def logps(args, kwargs):  # (self, model, input_ids, attention_mask, logits_to_keep, ...)
        phase = "policy forward" if torch.is_grad_enabled() else "log-probs (no grad)"
        clock.count(phase, args[2], args[3], args[4])
        return phase

    def values(args, kwargs):  # (self, input_ids, attention_mask, logits_to_keep)
        clock.count("rollout values", args[1], args[2], args[3])
        clock.rollout_tokens += int(args[2].sum())
        clock.rollout_rows += args[1].shape[0]
        clock.rollout_completion_tokens += int(args[2][:, -args[3]:].sum())
        return "rollout values"

    def value_loss(args, kwargs):  # (self, inputs)
        inputs = args[1]
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        clock.count("value forward", ids, mask, inputs["completion_ids"].shape[1])
        return "value forward"

    clock.wrap(PPOTrainer, "_get_per_token_logps_and_entropies", logps)
    clock.wrap(PPOTrainer, "rollout_values", values)
    clock.wrap(PPOTrainer, "_calculate_rewards", lambda a, k: "rewards")
    clock.wrap(PPOTrainer, "_token_rewards", lambda a, k: "rewards")
    clock.wrap(PPOTrainer, "_value_loss", value_loss)
    clock.wrap(ValueOptimizer, "backward", lambda a, k: "value backward + step")
    clock.wrap(Accelerator, "backward", lambda a, k: "policy backward")
    clock.wrap(AcceleratedOptimizer, "step", lambda a, k: "policy optimizer")

    original_enter, original_exit = profiling.ProfilingContext.__enter__, profiling.ProfilingContext.__exit__

    def enter(context):  # TRL's own profiling names mark generation and the weight sync
        phase = TRL_PROFILE_NAMES.get(context.name.split(".", 1)[-1])  # TRL prefixes the class name
        context.phase_timer = clock.phase(phase) if phase else None
        if context.phase_timer is not None:
            context.phase_timer.__enter__()
        return original_enter(context)

    def leave(context, *exc):
        result = original_exit(context, *exc)
        if getattr(context, "phase_timer", None) is not None:
            context.phase_timer.__exit__(*exc)
        return result

    profiling.ProfilingContext.__enter__, profiling.ProfilingContext.__exit__ = enter, leave


def matmul_rate(dtype: torch.dtype, rows: int, hidden: int, inner: int, repeats: int = 20) -> float:
    """FLOP/s of ``(rows x hidden) @ (hidden x inner)`` on this machine: the MLP's shape at the
    batch's token count."""
    a, b = torch.randn(rows, hidden, dtype=dtype), torch.randn(hidden, inner, dtype=dtype)
    a @ b  # warm-up: first call pays for allocation and kernel choice
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * hidden * inner * repeats / (time.perf_counter() - start)


def model_sizes(trainer) -> dict:
    """Matmul parameters of the policy's body (no embedding lookup, no output matmul, no LoRA factors),
    of its output matmul (vocabulary x hidden), and whether the policy and value model train adapters."""
    policy = trainer.accelerator.unwrap_model(trainer.model)
    config = policy.config
    body = sum(p.numel() for name, p in policy.named_parameters()
               if "lora_" not in name and "embed_tokens" not in name and "lm_head" not in name
               and "value_head" not in name)
    value = trainer.value_model
    value_lora = value is not None and hasattr(trainer.accelerator.unwrap_model(value), "peft_config")
    return {"body": body, "head": config.vocab_size * config.hidden_size, "hidden": config.hidden_size,
            "intermediate": getattr(config, "intermediate_size", 4 * config.hidden_size),
            "policy_lora": hasattr(policy, "peft_config"),
            "value_lora": value_lora}


def estimate_flops(sizes: dict, window: dict) -> dict:
    """FLOPs of each phase's matmuls in a window of steps (see the module docstring)."""
    body, head = sizes["body"], sizes["head"]
    tokens, completion = window["tokens"], window["completion"]

    def forward(phase, with_head=True):
        return 2 * body * tokens.get(phase, 0) + (2 * head * completion.get(phase, 0) if with_head else 0)

    policy_backward = 2 if sizes["policy_lora"] else 4  # x (N x tokens): activation grads, + weight grads
    value_backward = 2 if sizes["value_lora"] else 4
    all_tokens, completion_tokens = window["generated"]
    return {
        "generate": 2 * body * all_tokens + 2 * head * completion_tokens,
        "log-probs (no grad)": forward("log-probs (no grad)"),
        "rollout values": forward("rollout values", with_head=False),
        "policy forward": forward("policy forward"),
        "policy backward": policy_backward * forward("policy forward") // 2,
        "value forward": forward("value forward", with_head=False),
        "value backward + step": value_backward * forward("value forward", with_head=False) // 2,
    }


def snapshot(clock: PhaseClock) -> dict:
    """The clock's counts now (phases' seconds and tokens, what the engine generated, wall time)."""
    return {"seconds": dict(clock.seconds), "tokens": dict(clock.tokens),
            "completion": dict(clock.completion_tokens),
            "generated": (clock.rollout_tokens, clock.rollout_completion_tokens),
            "generated_rows": clock.rollout_rows, "time": time.perf_counter()}


def difference(late: dict, early: dict) -> dict:
    """What happened between two snapshots."""
    counts = {key: {k: v - early[key].get(k, 0) for k, v in late[key].items()}
              for key in ("seconds", "tokens", "completion")}
    return {**counts,
            "generated": tuple(x - y for x, y in zip(late["generated"], early["generated"], strict=True)),
            "generated_rows": late["generated_rows"] - early["generated_rows"],
            "wall": late["time"] - early["time"]}


def rollout_steps(args) -> int:
    """Optimizer steps spanning whole rollouts: TRL samples every steps_per_generation x num_iterations
    micro-batches, an optimizer step takes gradient_accumulation_steps of them."""
    micro = args.steps_per_generation * args.num_iterations  # micro-batches per rollout
    return math.lcm(micro, args.gradient_accumulation_steps) // args.gradient_accumulation_steps


def watch_steps(clock: PhaseClock, marks: list, sizes: list, steps: int) -> None:
    """Snapshot the clock at the first step's start and at each step's end; keep the trainer's model
    sizes and arguments as training starts (the stage merges LoRA adapters when it ends)."""
    from transformers.trainer_callback import CallbackHandler

    from trl_reasoning.trainers.ppo_trainer import PPOTrainer

    begin, end, train = CallbackHandler.on_step_begin, CallbackHandler.on_step_end, PPOTrainer.train

    def on_step_begin(handler, args, state, control):
        if not marks:
            marks.append(snapshot(clock))
        return begin(handler, args, state, control)

    def on_step_end(handler, args, state, control):
        marks.append(snapshot(clock))
        return end(handler, args, state, control)

    def keep(self, *args, **kwargs):
        cycle = rollout_steps(self.args)
        if steps < 2 * cycle:  # before any step runs
            raise SystemExit(f"--steps: at least {2 * cycle} (two rollouts of {cycle} steps; the first is "
                             "left out as warm-up)")
        sizes.append((model_sizes(self), self.args, engine_dtype(self), train_dtype(self)))
        return train(self, *args, **kwargs)

    CallbackHandler.on_step_begin, CallbackHandler.on_step_end = on_step_begin, on_step_end
    PPOTrainer.train = keep


def table(window: dict, flops: dict, rates: dict, dtype: str, generate_dtype: str,
          steps: int) -> list[dict]:
    """One row per phase: seconds per optimizer step, share of the step, FLOPs and the floor."""
    accounted = sum(window["seconds"].values())
    seconds = dict(window["seconds"], other=window["wall"] - accounted)
    rows = []
    for phase in PHASES:
        spent = seconds.get(phase, 0.0) / steps
        work = flops.get(phase)
        # vLLM runs its own kernels, not torch's: its floor is at the faster of the rates measured
        rate = max(rates.values()) if phase == "generate" else rates[dtype]
        floor = work / steps / rate if work else None
        rows.append({"phase": phase, "seconds_per_step": round(spent, 3),
                     "share": round(spent * steps / window["wall"], 3) if window["wall"] else None,
                     "gflop_per_step": round(work / steps / 1e9, 1) if work else None,
                     "dtype": (generate_dtype if phase == "generate" else dtype) if work else None,
                     "floor_seconds": round(floor, 3) if floor else None,
                     "ratio": round(spent / floor, 2) if floor else None,
                     "ms_per_1k_tokens": round(1e6 * seconds[phase] / window["tokens"][phase], 2)
                     if window["tokens"].get(phase) else None})
    return rows


def train_dtype(trainer) -> str:
    """The matmul dtype of the trainer's passes: bf16/fp16 autocast when asked for, else the weights'."""
    if trainer.args.bf16:
        return "bfloat16"
    dtype = str(trainer.accelerator.unwrap_model(trainer.model).dtype).removeprefix("torch.")
    return dtype if dtype in ("float32", "bfloat16") else "float32"


def engine_dtype(trainer) -> str:
    """The colocated vLLM engine's dtype, or the policy's when transformers generates."""
    generation = getattr(trainer, "vllm_generation", None)
    llm = getattr(generation, "llm", None)
    dtype = getattr(getattr(getattr(llm, "llm_engine", None), "model_config", None), "dtype", None)
    if dtype is None:
        dtype = trainer.accelerator.unwrap_model(trainer.model).dtype
    return str(dtype).removeprefix("torch.")


def cpu_name() -> str:
    """The CPU's model name and matrix instruction sets, read as ``trl-reasoning compare`` records them."""
    from trl_reasoning.reporting import cpu_text, machine

    return cpu_text(machine())


def _best_of(work, repeats: int = 3) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def bare_model(folder: str, shapes: dict, sizes: dict, rate: float) -> dict:
    """The start model alone, float32, on the training micro-batch's shape: a forward with log-probs of
    the completion positions, and a forward + backward through every weight. What the trainer's phases
    cost per token beyond these is the trainer's; what these cost beyond their floor is the model's
    non-matmul work (norms, attention, activations, the vocabulary-wide log-softmax)."""
    from trl_reasoning.loading import load_model

    rows, width, completion = max(shapes.get("policy forward", [(8, 160, 64)]), key=lambda s: s[1])
    model = load_model(folder, dtype="float32")
    ids = torch.randint(0, model.config.vocab_size, (rows, width))

    def forward():
        logits = model(input_ids=ids, logits_to_keep=completion + 1).logits[:, :-1]
        return logits.float().log_softmax(-1).gather(-1, ids[:, -completion:, None]).mean()

    def forward_backward():
        model.zero_grad(set_to_none=True)
        forward().backward()

    with torch.no_grad():
        no_grad = _best_of(forward)
    model.train()
    trained = _best_of(forward_backward)
    tokens = rows * width
    flops = 2 * sizes["body"] * tokens + 2 * sizes["head"] * rows * completion
    return {"shape": [rows, width, completion],
            "forward_seconds": round(no_grad, 3), "forward_floor_seconds": round(flops / rate, 3),
            "forward_backward_seconds": round(trained, 3),
            "forward_backward_floor_seconds": round(3 * flops / rate, 3),
            "forward_ms_per_1k_tokens": round(1e6 * no_grad / tokens, 2),
            "forward_backward_ms_per_1k_tokens": round(1e6 * trained / tokens, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/smollm2_svamp_ppo.yaml")
    parser.add_argument("--model", required=True, help="the PPO stage's start (e.g. an SFT folder)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps to run")
    parser.add_argument("--output", default=None, help="write the JSON here too")
    args, overrides = parser.parse_known_args()
    from trl_reasoning.cli import run_train

    load = os.getloadavg()[0]  # other work on the machine shows in every phase
    clock, marks, started = PhaseClock(), [], []
    install(clock)
    watch_steps(clock, marks, started, args.steps)
    with tempfile.TemporaryDirectory() as folder:
        run_train([args.recipe, "--model", args.model, "--stages", "[ppo]", "--output_dir", folder,
                   "--ppo.max_steps", str(args.steps), "--ppo.save_steps", "1000000", *overrides])
    sizes, a, generate_dtype, dtype = started[-1]
    cycle = rollout_steps(a)
    steady = (len(marks) - 1) // cycle * cycle  # whole rollouts only, the first one left out
    window, first = difference(marks[steady], marks[cycle]), difference(marks[cycle], marks[0])
    steps = steady - cycle
    rates = {"float32": matmul_rate(torch.float32, 2048, sizes["hidden"], sizes["intermediate"]),
             "bfloat16": matmul_rate(torch.bfloat16, 2048, sizes["hidden"], sizes["intermediate"])}
    rows = table(window, estimate_flops(sizes, window), rates, dtype, generate_dtype, steps)
    floor = sum(r["floor_seconds"] or 0 for r in rows)
    # the bare model is loaded from a folder ('tiny' is built inside the run and gone by now)
    bare = bare_model(args.model, clock.shapes, sizes, rates["float32"]) if Path(args.model).is_dir() \
        else None
    report = {"phases": rows, "step_seconds": round(window["wall"] / steps, 2),
              "floor_seconds": round(floor, 2), "ratio": round(window["wall"] / steps / floor, 2),
              "bare_model": bare, "steps_measured": steps,
              "first_rollout_seconds_per_step": round(first["wall"] / cycle, 2),
              "completions_per_step": a.per_device_train_batch_size * a.gradient_accumulation_steps,
              "completions_sampled_per_step": window["generated_rows"] / steps if steps else None,
              "matmul_gflops": {k: round(v / 1e9, 1) for k, v in rates.items()}, "sizes": sizes,
              "threads": torch.get_num_threads(), "cpu": cpu_name(), "load_average": round(load, 2),
              "command": " ".join(["python", "benchmarks/ppo_step_profile.py", *sys.argv[1:]])}
    for r in rows:
        print(f"{r['phase']:>22}  {r['seconds_per_step']:8.2f} s  {r['share'] or 0:6.1%}  "
              f"floor {r['floor_seconds'] or 0:7.2f} s  x{r['ratio'] or 0:5.2f}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
