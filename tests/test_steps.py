"""Step segmentation, step-end token alignment, and the heuristic dense reward."""

from __future__ import annotations

import json

import pytest

from trl_reasoning.reward_models.heuristic import (
    HeuristicStepReward,
    heuristic_step_rewards,
    heuristic_step_scores,
    reference_intermediates,
    step_result,
)
from trl_reasoning.steps import split_steps, step_end_tokens, token_ends_by_decoding, token_ends_from_offsets


def test_split_steps_spans_and_blank_lines():
    text = " 3 + 4 = 7\n\n  7 - 1 = 6  \n#### 6"
    steps = split_steps(text)
    assert [s.text for s in steps] == ["3 + 4 = 7", "7 - 1 = 6", "#### 6"]
    assert all(text[s.start:s.end] == s.text for s in steps)


def test_split_steps_custom_delimiter_and_empty():
    assert [s.text for s in split_steps("a. b.|c", delimiter="|")] == ["a. b.", "c"]
    assert split_steps("") == [] and split_steps(" \n\n ") == []
    with pytest.raises(ValueError, match="delimiter"):
        split_steps("x", delimiter="")


def test_step_end_is_the_token_holding_the_last_character():
    # tokens: "3 + 4 = 7" | "\n8" (newline merged into the next token) | " - 1 = 7" | "\n####" | " 7"
    text = "3 + 4 = 7\n8 - 1 = 7\n#### 7"
    pieces = ["3 + 4 = 7", "\n8", " - 1 = 7", "\n####", " 7"]
    offsets, position = [], 0
    for piece in pieces:
        offsets.append((position, position + len(piece)))
        position += len(piece)
    assert "".join(pieces) == text
    ends = step_end_tokens(token_ends_from_offsets(offsets), split_steps(text))
    assert ends == [0, 2, 4]


def test_step_ends_with_a_prompt_shift_and_special_tokens():
    # a special token reports (0, 0); the completion starts after a 4-character prompt
    offsets = [(0, 0), (0, 4), (4, 7), (7, 8), (8, 11)]
    ends = step_end_tokens(token_ends_from_offsets(offsets), split_steps("abc\ndef"), shift=4)
    assert ends == [2, 4]


def _merging_tokenizer():
    """A BPE tokenizer whose only merges glue a newline to the next character ("\\n5", "\\n#")."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("0123456789 +-=#\n"))
    vocab = {c: i for i, c in enumerate(["[UNK]", "[PAD]", *chars])}
    vocab.update({"\n5": len(vocab), "\n#": len(vocab) + 1})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("\n", "5"), ("\n", "#")], unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")


def test_alignment_with_a_tokenizer_that_merges_newlines():
    tokenizer = _merging_tokenizer()
    text = "1 + 2 = 3\n5 + 1 = 6\n#### 6"
    encoded = tokenizer(text, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert any(t.startswith("\n") and len(t) > 1 for t in tokens), tokens  # the premise of the test
    ends = step_end_tokens(token_ends_from_offsets(encoded["offset_mapping"]), split_steps(text))
    for step, index in zip(split_steps(text), ends, strict=True):
        start, end = encoded["offset_mapping"][index]
        assert start < step.end <= end, (step, tokens[index])
        assert not tokens[index].startswith("\n")


def test_decoding_offsets_match_tokenizer_offsets(tiny_tokenizer):
    text = " 12 + 30 = 42\n42 - 2 = 40\n#### 40"
    encoded = tiny_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert token_ends_by_decoding(tiny_tokenizer, encoded["input_ids"]) == token_ends_from_offsets(
        encoded["offset_mapping"]
    )


def test_step_result():
    assert step_result("She makes 9 * 2 = $18 every day.") == 18
    assert step_result("#### 1,200") == 1200
    assert step_result("She is happy.") is None


def test_heuristic_on_arithmetic_steps():
    reference = "7 + 5 = 12\n12 - 3 = 9\n#### 9"
    assert heuristic_step_rewards("7 + 5 = 12\n12 - 3 = 9\n#### 9", reference) == [0.5, 0.5, 0.0]
    assert heuristic_step_rewards("7 + 5 = 13\n13 - 3 = 10\n#### 10", reference) == [0.0, 0.0, 0.0]
    assert heuristic_step_rewards("I think\n7 + 5 = 12", reference) == [0.0, 0.5]
    assert heuristic_step_scores("7 + 5 = 12\n12 - 3 = 9\n#### 9", reference) == [1.0, 1.0, 1.0]
    assert heuristic_step_scores("7 + 5 = 12\n#### 10", reference) == [1.0, 0.0]
    reward = HeuristicStepReward()
    assert reward(["q"], ["7 + 5 = 12\n#### 1"], solution=[reference]) == [0.5]
    assert reward(["q"], [""], solution=[reference]) == [0.0]


@pytest.mark.parametrize(
    "farmed",
    [
        "7 + 5 = 12\n7 + 5 = 12\n7 + 5 = 12\n12 - 3 = 9\n12 - 3 = 9\n#### 9",  # repeated correct steps
        "= 12\n= 9\n= 12\n= 9\n#### 9\n#### 9",  # every reference number, no reasoning, twice
        "x = 12\ny = 9\nz = 9\n12 = 12\n9 = 9\n#### 9",
    ],
)
def test_heuristic_cannot_be_farmed(farmed):
    """Repeating correct steps or listing the reference's numbers earns no more than the reference
    solution itself; the whole dense return is at most 1 and the answer line earns nothing."""
    reference = "7 + 5 = 12\n12 - 3 = 9\n#### 9"
    honest = sum(heuristic_step_rewards(reference, reference))
    assert honest == pytest.approx(1.0)
    assert sum(heuristic_step_rewards(farmed, reference)) <= honest + 1e-9
    assert heuristic_step_rewards("#### 9", reference) == [0.0]


@pytest.mark.parametrize(
    "unsupported",
    [
        "= 12\n= 9\n#### 9",  # the reference's numbers with no computation
        "x = 12\ny = 9\n#### 9",
        "12 = 12\n9 = 9\n#### 9",
        "3 + 4 = 12\n2 * 2 = 9\n#### 9",  # false equations landing on the reference's numbers
        "7 + 5 = 13 = 12\n12 - 3 = 8 + 2 = 9\n#### 9",  # false links inside chains
    ],
)
def test_a_step_earns_only_when_its_equation_holds(unsupported):
    """A step is credited when it writes an equation that holds and lands on a reference intermediate:
    bare or false equations that state the reference's numbers earn nothing, in the dense reward and in
    RCRL's step scores."""
    reference = "7 + 5 = 12\n12 - 3 = 9\n#### 9"
    assert sum(heuristic_step_rewards(unsupported, reference)) == 0.0
    assert heuristic_step_scores(unsupported, reference)[:-1] == [0.0, 0.0]
    assert heuristic_step_scores("7 + 5 = 12\n12 - 3 = 9\n#### 9", reference) == [1.0, 1.0, 1.0]
    # units and currency, as GSM8K writes them, still read as arithmetic
    assert heuristic_step_rewards("She pays $20/hour * 35 hours = $700", "20 * 35 = 700\n#### 700") == [1.0]


def test_heuristic_on_real_gsm8k_references(gsm8k_test):
    """Reference solutions (annotations stripped, as the policy writes them) earn reward on every step
    that computes something; a wrong final answer loses the last step's reward."""
    from trl_reasoning.tasks.gsm8k import strip_annotations

    rows = [json.loads(line) for line in gsm8k_test.read_text().splitlines()[:300]]
    computing, rewarded, final_lost = 0, 0, 0
    for row in rows:
        raw = row["answer"]
        plain = strip_annotations(raw)
        assert reference_intermediates(raw)  # annotations give the intermediate results
        rewards = heuristic_step_scores(plain, raw)
        assert sum(heuristic_step_rewards(plain, raw)) <= 1.0 + 1e-9
        for step, reward in zip(split_steps(plain), rewards, strict=True):
            if step_result(step.text) is not None:
                computing += 1
                rewarded += reward
        wrong = plain.rsplit("####", 1)[0] + "#### 123456789"
        final_lost += heuristic_step_scores(wrong, raw)[-1] == 0.0
    assert rewarded / computing > 0.95, rewarded / computing
    assert final_lost == len(rows)
