"""Tiny offline models for tests and the quickstart: a BPE tokenizer trained on a task corpus and a
small Qwen2 or Llama causal LM, saved as an ordinary ``from_pretrained`` folder.

Nothing here touches the network. Digits are split one per token, the way arithmetic is learnable by
a small model; a ChatML template makes the chat prompt style work too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

PAD, EOS, IM_START, IM_END = "<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, EOS, IM_START, IM_END]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def task_corpus(task: str = "arithmetic", num_examples: int = 2000, seed: int = 0,
                data: str | None = None) -> list[str]:
    """Prompt + solution texts of a task's train split (from ``data``, a local file, when given), in the
    zero-shot format (tokenizer training)."""
    from .tasks import build_prompt, completion_target, load_task

    rows = load_task(task, data=data, split="train", num_examples=num_examples, seed=seed)
    return [build_prompt(r["question"]) + completion_target(r["solution"]) for r in rows]


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 512):
    """Train a byte-level BPE tokenizer (single-digit tokens) and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    # padding_side must be given at construction: set afterwards it is not saved.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
    )


def build_model(
    tokenizer,
    arch: str = "qwen2",
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    max_positions: int = 1024,
    seed: int = 0,
    tie_word_embeddings: bool = True,
):
    """A randomly initialised causal LM sized for CPU tests, with the tokenizer's pad/eos ids (input and
    output embeddings tied unless ``tie_word_embeddings`` is false)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    configs = {"qwen2": Qwen2Config, "llama": LlamaConfig}
    if arch not in configs:
        raise ValueError(f"arch: unknown tiny architecture {arch!r}; expected one of {sorted(configs)}")
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in (EOS, IM_END)]
    config = configs[arch](
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos_ids,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = eos_ids
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def make_tiny_model(
    output_dir: str | Path,
    task: str = "arithmetic",
    arch: str = "qwen2",
    vocab_size: int = 512,
    seed: int = 0,
    data: str | None = None,
    **model_kwargs,
) -> Path:
    """Build and save a tiny tokenizer + model folder for ``task`` (its train split read from ``data``,
    a local file, when given: the Hub is not needed); returns the folder."""
    output_dir = Path(output_dir)
    tokenizer = build_tokenizer(task_corpus(task, seed=seed, data=data), vocab_size=vocab_size)
    model = build_model(tokenizer, arch=arch, seed=seed, **model_kwargs)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(output_dir)
    model.save_pretrained(output_dir)
    return output_dir

