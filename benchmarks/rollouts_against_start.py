r"""A comparison's on-policy rollouts against the SFT start, question by question.

For each seed of a ``trl-reasoning compare`` output and each on-policy method in it (PPO, GRPO, process
GRPO: a stage folder with a ``trainer_state.json``), this rebuilds which questions every logged rollout
drew (``rollout_logs.drawn_questions``: TRL's own sampler, set up from the run's saved training
arguments, over the recipe's training rows; runs that logged their completions need no rebuild) and
writes ``seed_S/rollouts/METHOD.json``: per logged step its questions and its logged mean reward. It also
writes ``seed_S/start_pass_rates.json``: the SFT start's pass rate on every training question, from the
first round's samples of the seed's rounds methods (EI and RCRL sample round 1 from the SFT start, RCRL
without its tag). Nothing is trained or sampled. Then it prints, per method, the mean of (rollout reward
- the start's pass rate on the same questions) and its slope, beside the raw reward's slope.

    python benchmarks/rollouts_against_start.py RECIPE OUTPUT
e.g.
    python benchmarks/rollouts_against_start.py recipes/smollm2_svamp_compare.yaml runs/smollm2_compare_family
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def start_samples(seed_folder: Path) -> list[Path]:
    """The first round's samples of each rounds method of the seed (drawn from the SFT start)."""
    return sorted(seed_folder.glob("*/*/round_001/samples.jsonl"))


def method_rollouts(stage: Path, ids: list[str]) -> list[dict]:
    """Per logged reward of ``stage``'s trainer: its step, the questions of the rollouts it averaged (one
    per completion) and the logged mean reward; an error for a run resumed where the rebuilt order would
    not hold (``rollout_logs.order_kept``)."""
    import torch

    from trl_reasoning.metrics import logged_values
    from trl_reasoning.rollout_logs import logged_rollouts, order_kept

    args_file = next(iter(sorted(stage.glob("final_model/training_args.bin")) or
                          sorted(stage.glob("checkpoint-*/training_args.bin"))), None)
    if args_file is None:
        raise FileNotFoundError(f"{stage}: no training_args.bin (final_model/ or checkpoint-*/)")
    args = torch.load(args_file, weights_only=False)  # the run's own file: its TrainingArguments pickle
    resumed = json.loads((stage / "stage_complete.json").read_text()).get("resumed_from")
    if resumed and not order_kept(int(Path(resumed).name.split("-")[-1]), len(ids), args):
        raise ValueError(f"{stage}: resumed from {resumed}, where its sampler's order starts over")
    logged = logged_values(json.loads((stage / "trainer_state.json").read_text())["log_history"])
    return [{"step": r.step, "questions": list(r.questions), "reward": r.rewards[0]}
            for r in logged_rollouts(logged, ids, args)]


def write_seed(seed_folder: Path, ids: list[str]) -> dict[str, dict]:
    """Write the seed's rollouts and start pass rates; returns each method's adjusted trend."""
    from trl_reasoning.rollout_logs import Rollout, adjusted_reward_trend, start_pass_counts

    sources = start_samples(seed_folder)
    if not sources:
        raise FileNotFoundError(f"{seed_folder}: no */*/round_001/samples.jsonl for the start's pass rates")
    counts = start_pass_counts(sources)
    rates, samples = {q: c / n for q, (c, n) in counts.items()}, {q: n for q, (_, n) in counts.items()}
    source = ", ".join(str(p.relative_to(seed_folder)) for p in sources)
    (seed_folder / "start_pass_rates.json").write_text(json.dumps(
        {"source": source, "rates": rates, "samples": samples}, indent=1) + "\n")
    trends = {}
    for state in sorted(seed_folder.glob("*/*/trainer_state.json")):
        rows = method_rollouts(state.parent, ids)
        folder = seed_folder / "rollouts"
        folder.mkdir(exist_ok=True)
        (folder / f"{state.parents[1].name}.json").write_text(json.dumps(rows) + "\n")
        rollouts = [Rollout.of_mean(r["step"], r["questions"], r["reward"]) for r in rows]
        trends[state.parents[1].name] = adjusted_reward_trend(rollouts, rates, samples)
    return trends


def main() -> None:
    """Rebuild and write every seed's rollouts and start pass rates; print each method's trend."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="the comparison's recipe (its training rows, in order)")
    parser.add_argument("output", type=Path, help="the comparison's output folder")
    options = parser.parse_args()
    from trl_reasoning.pipeline import load_datasets
    from trl_reasoning.recipes import load_recipe

    recipe = load_recipe(options.recipe)
    for seed_folder in sorted(options.output.glob("seed_*")):
        seed = int(seed_folder.name.removeprefix("seed_"))  # a generated task's rows depend on the seed
        _, rl_train, _ = load_datasets(dataclasses.replace(recipe, seed=seed))
        for method, trend in write_seed(seed_folder, [str(i) for i in rl_train["id"]]).items():
            cells = [f"{name} {trend[name]['mean']:+.3f} {trend[name].get('ci95')}"
                     for name in ("mean_adjusted", "slope", "raw_slope")]
            print(f"{seed_folder.name} {method}: {trend['rollouts']} rollouts; " + "; ".join(cells))


if __name__ == "__main__":
    main()
