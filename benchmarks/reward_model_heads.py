"""Value head vs implicit head for the ORM, side by side on the same samples of the same SFT policy.

Needs a finished ``recipes/quickstart_orm.yaml`` run (its SFT model, ORM training / held-out samples
and the eval stage's K samples per question). Trains one ORM per head with ``RewardModelTrainer``:
``implicit`` with the recipe's own ``orm`` settings, ``value`` with the settings the recipe used
before (labels on step ends, 8 epochs, lr 1e-3). Prints held-out AUROC, AUROC on the eval samples and
rerank@K next to the policy's maj@1 / maj@K / pass@1 on those samples, and an exact equation check
(no learned model) as a reference; writes ``RUN/reward_model_heads.json``.

    python benchmarks/reward_model_heads.py [--recipe recipes/quickstart_orm.yaml] [--run runs/quickstart_orm]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from trl_reasoning.evaluation import compute_metrics
from trl_reasoning.metrics import auroc
from trl_reasoning.recipes import load_recipe
from trl_reasoning.reporting import markdown_table, read_jsonl, write_json_atomic
from trl_reasoning.stages import stage_config
from trl_reasoning.verifiers import equations_hold

VALUE_HEAD = {"head": "value", "label_positions": "step_end", "num_train_epochs": 8, "learning_rate": 1e-3}


def train_orm(recipe, run: Path, overrides: dict, rows: list[dict]):
    """An ORM on ``rows`` from the run's SFT model, with the recipe's ``orm`` section + ``overrides``."""
    from datasets import Dataset

    from trl_reasoning.trainers.reward_model_config import RewardModelStageConfig
    from trl_reasoning.trainers.reward_model_trainer import RewardModelTrainer

    section = {**recipe.orm, **overrides, "kind": "outcome"}
    args = stage_config(
        RewardModelStageConfig,
        section,
        run / "heads" / overrides.get("head", "implicit"),
        recipe.seed,
        task=recipe.task,
        save_strategy="no",
    )
    trainer = RewardModelTrainer(str(run / "sft"), args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    return trainer.reward_model


def eval_report(greedy: list[dict], samples: list[dict], scores: list[float], k: int, seed: int) -> dict:
    """The eval stage's metrics of the policy's samples, reranked by ``scores``."""
    return compute_metrics(greedy, [{**r, "score": s} for r, s in zip(samples, scores, strict=True)], k, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/quickstart_orm.yaml")
    parser.add_argument("--run", default=None, help="finished run folder (default: the recipe's output_dir)")
    cli = parser.parse_args()
    recipe = load_recipe(cli.recipe)
    run = Path(cli.run or recipe.output_dir)
    train, held_out = (
        read_jsonl(run / "orm/train_samples.jsonl"),
        read_jsonl(run / "orm/heldout_samples.jsonl"),
    )
    records = read_jsonl(run / "eval/sft/samples.jsonl")
    greedy, samples = ([r for r in records if r["kind"] == kind] for kind in ("greedy", "sample"))
    k = recipe.eval["num_generations"]
    labels = [bool(r["label"]) for r in held_out]
    rows = []
    for name, overrides in (("value head", VALUE_HEAD), ("implicit head", {})):
        start = time.perf_counter()
        model = train_orm(recipe, run, overrides, train)
        seconds = time.perf_counter() - start
        held_scores = [
            s.final for s in model.score([r["prompt"] for r in held_out], [r["completion"] for r in held_out])
        ]
        scores = [
            s.final for s in model.score([r["prompt"] for r in samples], [r["completion"] for r in samples])
        ]
        report = eval_report(greedy, samples, scores, k, recipe.seed)
        rows.append({"scorer": name, "heldout_auroc": round(auroc(held_scores, labels), 3),
                     "eval_auroc": round(report["reward_model"]["auroc"], 3),
                     f"rerank@{k}": round(report["metrics"][f"rerank@{k}"], 3), "train_s": round(seconds)})
    checks = [float(equations_hold(r["completion"])) for r in samples]
    report = eval_report(greedy, samples, checks, k, recipe.seed)
    rows.append({"scorer": "exact equation check (no model)", "heldout_auroc": None,
                 "eval_auroc": round(report["reward_model"]["auroc"], 3),
                 f"rerank@{k}": round(report["metrics"][f"rerank@{k}"], 3), "train_s": None})
    baseline = {key: round(report["metrics"][key], 3) for key in ("maj@1", f"maj@{k}", "pass@1")}
    write_json_atomic(run / "reward_model_heads.json", {"policy": baseline, "scorers": rows})
    print(f"SFT policy on the same samples: {baseline} (maj@1 is greedy)")
    headers = list(rows[0])
    print(markdown_table(headers, [["-" if r[h] is None else r[h] for h in headers] for r in rows]))


if __name__ == "__main__":
    main()
