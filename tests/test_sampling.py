import pytest

from trl_reasoning.sampling import (
    GSM8K_ANSWER_LINE,
    SamplingError,
    SamplingSettings,
    check_sampling_args,
    cut_point,
    plan_batches,
    render_prompts,
    sample_completions,
    truncate,
)
from trl_reasoning.tasks import build_prompt


def test_truncate_at_answer_line_and_stop_strings():
    text = " 3 + 4 = 7\n#### 7\n\nQuestion: next one"
    assert truncate(text, GSM8K_ANSWER_LINE, ("\nQuestion:",)) == " 3 + 4 = 7\n#### 7"
    assert (
        truncate("#### \nstill thinking\n#### 8\nmore", GSM8K_ANSWER_LINE, ())
        == "#### \nstill thinking\n#### 8"
    )
    assert cut_point("#### 7", GSM8K_ANSWER_LINE, ()) is None  # line not finished yet
    assert truncate("a\n\nQuestion: b", None, ("\nQuestion:",)) == "a\n"


def test_plan_batches_covers_every_sample_once():
    lengths = [5, 9, 7, 3]
    batches = plan_batches(lengths, num_generations=3, batch_size=4)
    assert all(sum(n for _, n in batch) <= 4 for batch in batches)
    totals = {}
    for batch in batches:
        for index, n in batch:
            totals[index] = totals.get(index, 0) + n
    assert totals == {0: 3, 1: 3, 2: 3, 3: 3}
    assert batches[0][0][0] == 1  # longest prompt first
    assert plan_batches([4], num_generations=10, batch_size=4) == [[(0, 4)], [(0, 4)], [(0, 2)]]


@pytest.mark.parametrize(
    ("k", "temperature", "message"),
    [
        (0, 1.0, "num_generations: need K >= 1"),
        (4, 0.0, "temperature: 0 means greedy"),
        (1, -1.0, "must be >= 0"),
    ],
)
def test_bad_sampling_arguments(k, temperature, message):
    with pytest.raises(SamplingError, match=message):
        check_sampling_args(k, temperature)


def test_chat_prompts_need_a_chat_template(tiny_tokenizer):
    chat = [[{"role": "user", "content": "2+2?"}]]
    assert render_prompts(tiny_tokenizer, chat)[0].endswith("<|im_start|>assistant\n")
    template = tiny_tokenizer.chat_template
    tiny_tokenizer.chat_template = None
    try:
        with pytest.raises(SamplingError, match="prompt_style: chat prompts need a tokenizer with a chat "
                                                "template"):
            render_prompts(tiny_tokenizer, chat)
    finally:
        tiny_tokenizer.chat_template = template


def test_sampling_schema_determinism_and_batch_independence(tiny_model, tiny_tokenizer):
    prompts = [build_prompt(q) for q in ("Ann has 3 cups. How many?", "Tom has 12 pens. Tom gets 3 more "
                                                                      "pens.")]
    run = sample_completions(
        tiny_model, tiny_tokenizer, prompts, 3, 1.0, max_new_tokens=12, batch_size=8, show_progress=False
    )
    assert [len(g) for g in run.completions] == [3, 3]
    assert all(0 < c.num_tokens <= 12 and isinstance(c.text, str) for g in run.completions for c in g)
    assert run.num_tokens == sum(c.num_tokens for g in run.completions for c in g)
    assert run.samples_per_second > 0 and run.tokens_per_second > 0
    again = sample_completions(
        tiny_model, tiny_tokenizer, prompts, 3, 1.0, max_new_tokens=12, batch_size=8, show_progress=False
    )
    assert again.completions == run.completions  # same seed, same samples
    other = sample_completions(
        tiny_model,
        tiny_tokenizer,
        prompts,
        3,
        1.0,
        max_new_tokens=12,
        batch_size=8,
        seed=1,
        show_progress=False,
    )
    assert other.completions != run.completions


def test_greedy_completions_do_not_depend_on_the_batch(servable_dir):
    """A model taught the arithmetic format (an untrained one may give every prompt the same repeated
    token), prompts of different lengths: alone or left-padded into one batch, the same completions."""
    from trl_reasoning.loading import load_model, load_tokenizer
    from trl_reasoning.tasks import load_task

    model, tokenizer = load_model(str(servable_dir)), load_tokenizer(str(servable_dir))
    prompts = [build_prompt(r["question"]) for r in load_task("arithmetic", split="test", num_examples=6)]
    assert len({len(tokenizer(p)["input_ids"]) for p in prompts}) > 1  # padding differs in the batch
    alone, batched = (sample_completions(model, tokenizer, prompts, 1, 0.0, max_new_tokens=24,
                                         batch_size=size, show_progress=False) for size in (1, 8))
    texts = [g[0].text for g in alone.completions]
    assert len(set(texts)) == len(texts) and all("=" in t for t in texts)  # varied, in the learned format
    assert texts == [g[0].text for g in batched.completions]


def test_generation_stops_after_the_answer_line(tiny_model, tiny_tokenizer):
    """Force the answer line through the prompt-less path: the stop criterion must end the row."""
    import torch

    from trl_reasoning.sampling.hf_backend import _StopCriteria

    ids = tiny_tokenizer("Q\nAnswer: 3 + 4 = 7\n#### 7\n", return_tensors="pt")["input_ids"]
    stopper = _StopCriteria(
        tiny_tokenizer, prompt_length=3, answer_pattern=GSM8K_ANSWER_LINE, stop_strings=()
    )
    assert stopper(ids, None).tolist() == [True]
    assert stopper(ids[:, :-1], None).tolist() == [False]
    both = torch.nn.utils.rnn.pad_sequence([ids[0], ids[0, :-1]], batch_first=True, padding_value=0)
    assert stopper(both[:, : ids.shape[1]], None).tolist() == [True, False]


def _bos_tokenizer(tiny_model_dir):
    """The tiny tokenizer, made to add a BOS like Llama-family tokenizers do."""
    from tokenizers.processors import TemplateProcessing

    from trl_reasoning.loading import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    tokenizer.add_special_tokens({"bos_token": "<|im_start|>"})
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", pair="<|im_start|> $A $B", special_tokens=[("<|im_start|>", bos)]
    )
    assert tokenizer("Question: 1?")["input_ids"][0] == bos
    return tokenizer


def test_sampled_prompt_ids_equal_the_sft_training_prompt_ids(tiny_model_dir, tiny_model, tmp_path):
    """A BOS-adding tokenizer: the ids generation starts from are the prompt ids TRL's SFT trains on."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from trl_reasoning.sampling import encode_prompts

    tokenizer = _bos_tokenizer(tiny_model_dir)
    prompt = build_prompt("Ann has 3 cups and gets 4 more. How many cups?")
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", max_length=128)
    sft = SFTTrainer(
        model=tiny_model,
        args=args,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list([{"prompt": prompt, "completion": " 3 + 4 = 7\n#### 7"}]),
    )
    row = sft.train_dataset[0]
    trained_prompt = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label == -100]

    seen = []
    original = tiny_model.generate

    def recording_generate(**kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        seen.extend(r[m.bool()].tolist() for r, m in zip(ids, mask, strict=True))
        return original(**kwargs)

    tiny_model.generate = recording_generate
    try:
        sample_completions(
            tiny_model,
            tokenizer,
            [prompt],
            num_generations=1,
            temperature=0.0,
            max_new_tokens=2,
            show_progress=False,
        )
    finally:
        del tiny_model.generate
    assert seen == [trained_prompt] and trained_prompt[0] == tokenizer.bos_token_id
    chat = [{"role": "user", "content": "1 + 1?"}]
    templated = tokenizer.apply_chat_template(
        chat, tokenize=True, add_generation_prompt=True, return_dict=True
    )
    assert encode_prompts(tokenizer, [chat]) == [list(templated["input_ids"])]  # no second BOS on chat text


def test_backend_vllm_without_vllm_is_one_line(tiny_model_dir, tmp_path):
    from trl_reasoning.cli import main
    from trl_reasoning.sampling import vllm_installed

    if vllm_installed():
        pytest.skip("vLLM is installed here: tests/test_vllm.py covers that backend")
    base = [
        "eval",
        "--model",
        str(tiny_model_dir),
        "--task",
        "arithmetic",
        "--limit",
        "2",
        "--output",
        str(tmp_path),
    ]
    for backend, message in (("vllm", "backend: vllm is not installed here"), ("vlm", "backend: expected "
                                                                                      "one of")):
        with pytest.raises(SystemExit) as exit_info:
            main([*base, "--backend", backend])
        text = str(exit_info.value.code)
        assert message in text and "\n" not in text, text


def test_vllm_serving_dtype(monkeypatch):
    """auto serves a float32 policy in bfloat16 only on a CPU with native bf16; a bad value is one line."""
    from trl_reasoning.sampling import vllm_backend
    from trl_reasoning.trainers import ExpertIterationConfig

    monkeypatch.setattr(vllm_backend, "_on_cpu", lambda: True)
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(vllm_backend, "cpu_has_native_bf16", lambda native=native: native)
        assert vllm_backend.serving_dtype("auto", "float32") == expected
    assert vllm_backend.serving_dtype("auto", "float16") == "float16"
    assert vllm_backend.serving_dtype("float32", "float32") == "float32"
    monkeypatch.setattr(vllm_backend, "_on_cpu", lambda: False)
    monkeypatch.setattr(vllm_backend, "cpu_has_native_bf16", lambda: True)
    assert vllm_backend.serving_dtype("auto", "float32") == "float32"  # a GPU serves the policy's dtype
    with pytest.raises(SamplingError, match="vllm_dtype: expected one of auto, float32"):
        SamplingSettings(vllm_dtype="fp8")
    with pytest.raises(SamplingError, match="vllm_dtype: expected one of"):
        ExpertIterationConfig(output_dir="unused", vllm_dtype="half", use_cpu=True, report_to="none")
