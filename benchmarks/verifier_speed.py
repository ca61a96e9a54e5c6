"""GSM8K answer checks per second: trl_reasoning.verifiers.is_correct vs math-verify's verify.

Both judge the same completions (GSM8K test solutions ending in ``The answer is \\boxed{N}``, half
with a wrong N) against the same gold answers; the script checks the verdicts are identical and
prints the throughput ratio measured side by side in one run.

    python benchmarks/verifier_speed.py [--data ../shared/data/gsm8k/test.jsonl] [--limit 1319]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

from math_verify import parse, verify

from trl_reasoning.verifiers import is_correct

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def make_inputs(path: Path, limit: int) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:limit]
    pairs = []
    for i, row in enumerate(rows):
        body, gold = row["answer"].rsplit("####", 1)
        gold = gold.strip().replace(",", "")
        stated = gold if i % 2 == 0 else str(int(gold) + 1)
        body = re.sub(r"<<[^<>]*>>", "", body).strip()
        pairs.append((f"{body}\nThe answer is \\boxed{{{stated}}}.", gold))
    return pairs


def time_checks(check, pairs) -> tuple[list[bool], float]:
    start = time.perf_counter()
    verdicts = [check(completion, gold) for completion, gold in pairs]
    return verdicts, len(pairs) / (time.perf_counter() - start)


def math_verify_check(completion: str, gold: str) -> bool:
    return verify(parse(gold), parse(completion))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=1319)
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    pairs = make_inputs(args.data, args.limit)
    math_verify_check(*pairs[0])  # warm both up outside the timing
    is_correct(*pairs[0])
    ours, ours_rate = time_checks(is_correct, pairs)
    theirs, theirs_rate = time_checks(math_verify_check, pairs)
    agree = sum(a == b for a, b in zip(ours, theirs, strict=True))
    print(f"inputs: {len(pairs)} GSM8K completions ({sum(ours)} judged correct)")
    print(f"trl_reasoning.is_correct : {ours_rate:10.0f} checks/s")
    print(f"math_verify.verify       : {theirs_rate:10.0f} checks/s")
    print(f"speed-up                 : {ours_rate / theirs_rate:10.1f}x")
    print(f"identical verdicts       : {agree}/{len(pairs)}")
    if agree != len(pairs):
        raise SystemExit("verdicts differ")


if __name__ == "__main__":
    main()
