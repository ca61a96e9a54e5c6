"""The paper's metrics as a Hugging Face ``evaluate`` metric: maj@k, pass@k and rerank@k over K sampled
solutions per question, verified with trl-reasoning's answer checkers (GSM8K, SVAMP, MATH, ...).

Load it by path, offline (``trl_reasoning.metrics.EVALUATE_METRIC`` is this file)::

    import evaluate
    from trl_reasoning.metrics import EVALUATE_METRIC

    metric = evaluate.load(EVALUATE_METRIC)
    metric.compute(predictions=[["... #### 4", "... #### 5"]], references=["4"], task="gsm8k")

``predictions``: for each question, its K sampled completions; ``references``: each question's reference
answer (or full reference solution). Optional: ``greedy_predictions`` (one greedy completion per question:
maj@1 is its accuracy, as in the paper; without it maj@1 is the first sample's), ``scores`` (a reward
model's score per sample: adds rerank@k), ``task`` and ``extraction`` (strict or flexible).
"""

import datasets
import evaluate

from trl_reasoning.evaluation import compute_metrics
from trl_reasoning.verifiers import answer_key, extract_answer, is_correct

_CITATION = """@article{havrilla2024teaching,
  title={Teaching Large Language Models to Reason with Reinforcement Learning},
  author={Havrilla, Alex and Du, Yuqing and Raparthy, Sharath Chandra and others},
  journal={arXiv preprint arXiv:2403.04642}, year={2024}}"""


class ReasoningMetrics(evaluate.Metric):
    """maj@k, pass@k (unbiased estimator) and rerank@k, k = 1, 2, 4, ..., K, with exploration stats."""

    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description="predictions: list of K completions per question; references: answers.",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions, references, greedy_predictions=None, scores=None, task="gsm8k",
                 extraction="strict", seed=0):
        sizes = {len(group) for group in predictions}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"predictions: expected the same number (>= 1) of completions per question, "
                             f"got {sorted(sizes)}")
        greedy = greedy_predictions or [group[0] for group in predictions]
        if len(greedy) != len(references):
            raise ValueError(f"greedy_predictions: expected {len(references)} completions, got {len(greedy)}")
        if scores is not None and [len(s) for s in scores] != [len(g) for g in predictions]:
            raise ValueError("scores: expected one score per completion in predictions")
        greedy_records = [_record(i, 0, text, ref, task, extraction) for i, (text, ref) in
                          enumerate(zip(greedy, references, strict=True))]
        sampled = []
        for i, (group, ref) in enumerate(zip(predictions, references, strict=True)):
            for j, text in enumerate(group):
                record = _record(i, j, text, ref, task, extraction)
                if scores is not None:
                    record["score"] = float(scores[i][j])
                sampled.append(record)
        report = compute_metrics(greedy_records, sampled, sizes.pop(), seed=seed)
        return {**report["metrics"], **{f"exploration/{k}": v for k, v in report["exploration"].items()},
                **{f"ci/{k}": v for k, v in report["confidence_intervals"].items()}}


def _record(question: int, index: int, text: str, reference: str, task: str, extraction: str) -> dict:
    extracted = extract_answer(text, task, extraction)
    correct = is_correct(text, reference, task, extraction)
    return {"id": str(question), "sample_index": index, "completion": text, "extracted_answer": extracted,
            "answer_key": answer_key(extracted, task), "correct": correct}
