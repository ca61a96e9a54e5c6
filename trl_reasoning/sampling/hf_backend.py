"""The transformers ``generate`` backend: K completions per prompt with a KV cache.

Prompts are sorted by length and packed into batches of at most ``batch_size`` sequences (each prompt
repeated for its samples), left-padded. A row stops at EOS or as soon as its answer line is complete
(``#### N\\n``), so no tokens are spent after the answer. Each batch is seeded from ``(seed, batch
index)``: results do not depend on how many processes share the work. Under ``accelerate launch`` the
batches are dealt round-robin to the processes and the results are gathered on every process, so each
prompt is sampled exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .results import Completion, SamplingError, SamplingResult, check_sampling_args
from .text import DEFAULT_STOP_STRINGS, GSM8K_ANSWER_LINE, cut_point, encode_prompts, truncate


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int):
    import torch

    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):], mask[i, width - len(row):] = torch.tensor(list(row)), 1
    return ids, mask


def plan_batches(
    lengths: Sequence[int], num_generations: int, batch_size: int
) -> list[list[tuple[int, int]]]:
    """Pack ``(prompt index, samples)`` units into batches of at most ``batch_size`` sequences.

    Longest prompts first (least padding, and memory errors show in the first batch). A prompt whose
    K exceeds ``batch_size`` is split over several batches.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    room = batch_size
    for index in order:
        left = num_generations
        while left:
            take = min(left, room)
            current.append((index, take))
            left -= take
            room -= take
            if room == 0:
                batches.append(current)
                current, room = [], batch_size
    if current:
        batches.append(current)
    return batches


class _StopCriteria:
    """Per-row stopping at the end of the answer line or at a stop string.

    Decoding every row at every step would cost more than a tiny model's forward pass, so a row is
    decoded only when its newest token could complete a stop (it holds a newline or the last
    character of a stop string).
    """

    def __init__(
        self, tokenizer, prompt_length: int, answer_pattern: str | None, stop_strings: Sequence[str]
    ):
        import torch

        self.tokenizer, self.prompt_length = tokenizer, prompt_length
        self.answer_pattern, self.stop_strings = answer_pattern, tuple(stop_strings)
        self.trigger = torch.tensor(_trigger_mask(tokenizer, "\n" + "".join(s[-1] for s in stop_strings)))

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        last = input_ids[:, -1].cpu()
        rows = torch.nonzero(self.trigger[last.clamp(max=len(self.trigger) - 1)]).flatten().tolist()
        for row in rows:
            text = self.tokenizer.decode(input_ids[row, self.prompt_length :], skip_special_tokens=True)
            done[row] = cut_point(text, self.answer_pattern, self.stop_strings) is not None
        return done


_TRIGGER_CACHE: dict[tuple[int, str], list[bool]] = {}


def _trigger_mask(tokenizer, characters: str) -> list[bool]:
    key = (id(tokenizer), characters)
    if key not in _TRIGGER_CACHE:
        pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        _TRIGGER_CACHE[key] = [any(ch in piece for ch in characters) for piece in pieces]
    return _TRIGGER_CACHE[key]


def _generated_length(row: list[int], pad_id: int | None, eos_ids: set[int]) -> int:
    for position, token in enumerate(row):
        if token in eos_ids:
            return position + 1
        if token == pad_id:
            return position
    return len(row)


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _generate_batch(model, tokenizer, prompt_ids, units, settings, seed):
    """Sample one planned batch; returns ``(prompt index, Completion)`` pairs in unit order."""
    import torch

    input_ids, attention_mask = _left_pad([prompt_ids[index] for index, n in units for _ in range(n)],
                                          tokenizer.pad_token_id)
    encoded = {"input_ids": input_ids.to(model.device), "attention_mask": attention_mask.to(model.device)}
    prompt_length = input_ids.shape[1]
    stopper = _StopCriteria(tokenizer, prompt_length, settings["answer_pattern"], settings["stop_strings"])
    torch.manual_seed(seed)
    from ..distributed import is_partitioned

    sampling = settings["temperature"] > 0
    extra = {"temperature": settings["temperature"], "top_p": settings["top_p"]} if sampling else {}
    with torch.inference_mode():
        output = model.generate(
            **encoded,
            do_sample=sampling,
            max_new_tokens=settings["max_new_tokens"],
            pad_token_id=tokenizer.pad_token_id,
            stopping_criteria=[stopper],
            logits_processor=list(settings["logits_processors"]) or None,
            use_cache=True,
            synced_gpus=is_partitioned(model),  # whole models need no lockstep (ZeRO-3 would default it on)
            **extra,
        )
    new_tokens = output[:, prompt_length:].tolist()
    eos_ids, pad_id = _eos_ids(model, tokenizer), tokenizer.pad_token_id
    owners = [index for index, n in units for _ in range(n)]
    results = []
    for owner, row in zip(owners, new_tokens, strict=True):
        length = _generated_length(row, pad_id, eos_ids)
        text = tokenizer.decode(row[:length], skip_special_tokens=True)
        text = truncate(text, settings["answer_pattern"], settings["stop_strings"])
        results.append((owner, Completion(text=text, num_tokens=length)))
    return results


def sample_completions(
    model,
    tokenizer,
    prompts: Sequence[str | list[dict]],
    num_generations: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    batch_size: int = 32,
    seed: int = 0,
    answer_pattern: str | None = GSM8K_ANSWER_LINE,
    stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS,
    show_progress: bool = True,
    logits_processors: Sequence = (),
) -> SamplingResult:
    """Sample ``num_generations`` completions for every prompt with transformers ``generate``.

    Args:
        prompts: plain strings, or chat-format message lists (rendered with the chat template).
        temperature: 0 for greedy decoding (then ``num_generations`` must be 1).
        batch_size: sequences generated at once (prompts x samples).
        answer_pattern: regex whose match ends the completion (the GSM8K answer line); ``None`` to
            stop only at EOS / stop strings.
        stop_strings: texts that end a completion (cut before them), e.g. the next few-shot question.
        logits_processors: transformers ``LogitsProcessor``s applied at every step (e.g. forced tags).
    """
    from ..loading import process_state

    check_sampling_args(num_generations, temperature)
    if batch_size < 1:
        raise SamplingError(f"batch_size: need >= 1, got {batch_size}")
    if tokenizer.pad_token_id is None:
        raise SamplingError("tokenizer: it has no pad token; set tokenizer.pad_token (e.g. to its eos_token)")
    prompt_ids = encode_prompts(tokenizer, prompts)
    batches = plan_batches([len(ids) for ids in prompt_ids], num_generations, batch_size)
    settings = {
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "answer_pattern": answer_pattern,
        "stop_strings": tuple(stop_strings),
        "logits_processors": tuple(logits_processors),
    }
    start = time.perf_counter()
    gathered = _run_batches(
        model, tokenizer, prompt_ids, batches, settings, seed, show_progress, process_state()
    )
    grouped: list[list[Completion]] = [[] for _ in prompt_ids]
    for _, _, owner, completion in sorted(gathered, key=lambda item: (item[0], item[1])):
        grouped[owner].append(completion)
    return SamplingResult(completions=grouped, seconds=time.perf_counter() - start)


def _run_batches(
    model, tokenizer, prompt_ids, batches, settings: dict, seed: int, show_progress: bool, state
):
    """This process's share of ``batches`` (round robin), with a progress bar; every process's results
    (``(batch, position, prompt, completion)``) gathered."""
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    mine = list(range(state.process_index, len(batches), state.num_processes))
    progress = tqdm(
        total=sum(n for b in mine for _, n in batches[b]),
        desc="sampling",
        unit="sample",
        disable=not (show_progress and state.is_local_main_process),
    )
    start, local = time.perf_counter(), []
    for batch_index in mine:
        results = _generate_batch(model, tokenizer, prompt_ids, batches[batch_index], settings,
                                  seed * 100_003 + batch_index)
        local.extend((batch_index, position, owner, c) for position, (owner, c) in enumerate(results))
        progress.update(len(results))
        progress.set_postfix(samples_per_s=f"{progress.n / (time.perf_counter() - start):.1f}")
    progress.close()
    return gather_object(local) if state.num_processes > 1 else local
