"""Samples/s of trl_reasoning's sampler vs a plain ``model.generate(num_return_sequences=K)`` loop.

Same model, same prompts, same K, temperature and token limit, measured side by side in one run.
The model is an SFT'd tiny model when ``--model`` is given, else a fresh tiny model (which never
emits EOS, so both sides generate the full token limit).

    python benchmarks/sampling_speed.py [--model FOLDER] [--prompts 32] [--k 8] [--batch-size 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from trl_reasoning.loading import load_model, load_tokenizer
from trl_reasoning.sampling import sample_completions
from trl_reasoning.tasks import build_prompt, load_task
from trl_reasoning.tiny import make_tiny_model


def plain_loop(model, tokenizer, prompts, k, temperature, max_new_tokens) -> tuple[int, float]:
    """One prompt at a time, K return sequences: the baseline a user would write first."""
    start, samples = time.perf_counter(), 0
    for prompt in prompts:
        encoded = tokenizer(prompt, return_tensors="pt")  # special tokens as in training (encode_prompts)
        with torch.inference_mode():
            out = model.generate(
                **encoded,
                do_sample=True,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                num_return_sequences=k,
                pad_token_id=tokenizer.pad_token_id,
            )
        samples += out.shape[0]
    return samples, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs per side; the best is kept")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args()
    folder = args.model or make_tiny_model(tempfile.mkdtemp(prefix="tiny-"))
    model, tokenizer = load_model(str(folder)), load_tokenizer(str(folder))
    rows = load_task("arithmetic", split="test", num_examples=args.prompts)
    prompts = [build_prompt(q) for q in rows["question"]]
    base_rate, ours = 0.0, None
    for repeat in range(args.repeats):  # interleaved, so both sides see the same machine load
        torch.manual_seed(repeat)
        samples, seconds = plain_loop(model, tokenizer, prompts, args.k, args.temperature, args.max_new_tokens)
        base_rate = max(base_rate, samples / seconds)
        run = sample_completions(
            model, tokenizer, prompts, args.k, args.temperature,
            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=repeat, show_progress=False,
        )
        ours = run if ours is None or run.samples_per_second > ours.samples_per_second else ours
    print(f"model: {folder}  prompts: {len(prompts)}  K: {args.k}  max_new_tokens: {args.max_new_tokens}  threads: {torch.get_num_threads()}")
    print(f"plain generate loop : {base_rate:8.1f} samples/s (best of {args.repeats})")
    print(f"trl_reasoning       : {ours.samples_per_second:8.1f} samples/s ({ours.num_samples} samples in {ours.seconds:.1f} s, {ours.tokens_per_second:.0f} tokens/s)")
    print(f"speed-up            : {ours.samples_per_second / base_rate:8.2f}x")


if __name__ == "__main__":
    main()
