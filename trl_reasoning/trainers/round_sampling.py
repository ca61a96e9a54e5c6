"""A round's sampling in pieces written as they finish, so a round killed mid-sampling (a lost server, a
crash, the end of a session) resumes from the last written piece instead of from its first prompt.

Piece ``i`` holds the completions of prompts ``[i*size, (i+1)*size)`` in
``<round_dir>/pieces/piece_<i>.jsonl``, written atomically by the main process; a rerun reads the
pieces that exist and samples the rest. With ``size`` 0 the round is one piece (the default).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..faults import fault_point
from ..reporting import read_jsonl, write_jsonl_atomic
from ..sampling import Completion, SamplingError

PIECE_SEED_STRIDE = 1_000_003  # piece i of round r never shares a seed with a piece of round r + 1


def _prompt_key(prompt) -> str:
    return hashlib.sha1(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:16]


def sample_in_pieces(sampler, prompts: list, seed: int, logits_processors: list, round_dir: Path,
                     size: int, state) -> list[list[Completion]]:
    """Completions for every prompt, in prompt order; pieces already on disk are reused when they hold
    these very prompts. Piece ``i`` samples with seed ``seed + i * PIECE_SEED_STRIDE`` (one piece:
    ``seed``), so a resumed round draws what it would have."""
    size = size if size and size > 0 else len(prompts)
    folder = round_dir / "pieces"
    completions: list[list[Completion]] = []
    for index, start in enumerate(range(0, len(prompts), size)):
        path, chunk = folder / f"piece_{index:05d}.jsonl", prompts[start:start + size]
        if path.exists():
            rows = read_jsonl(path)
            if [row.get("prompt_key") for row in rows] != [_prompt_key(p) for p in chunk]:
                raise SamplingError(f"sampling_piece_size: {path} holds other prompts than this round's "
                                    f"piece {index} (the size or the prompts changed); delete {folder}")
            completions += [[Completion(c["text"], c["num_tokens"]) for c in row["completions"]]
                            for row in rows]
            continue
        result = sampler.sample(chunk, seed=seed + index * PIECE_SEED_STRIDE,
                                logits_processors=logits_processors)
        if state.is_main_process and size < len(prompts):  # one piece: the round's samples file is it
            write_jsonl_atomic(path, [{"prompt_key": _prompt_key(prompt),
                                       "completions": [{"text": c.text, "num_tokens": c.num_tokens}
                                                       for c in group]}
                                      for prompt, group in zip(chunk, result.completions, strict=True)])
        state.wait_for_everyone()
        fault_point(f"piece_written:{index}")
        completions += result.completions
    return completions
