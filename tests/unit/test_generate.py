"""Batched greedy generation: equals a hand-written greedy loop, stop strings, prediction lines."""

from __future__ import annotations

import pytest
import torch

from compatlm.eval.generate import GenerationOutput, cut_at_stop, gen_prediction, generate
from compatlm.eval.records import Prediction
from compatlm.prompts import encode_prompt
from compatlm.tasks.base import GenExample
from compatlm.tasks.extract import get_extractor
from helpers import make_llama

PROMPTS = [
    "The cat sat",
    "Question: what color is the sky?\nAnswer:",
    "one",
    "A dog runs in the park and the cat sleeps. Alice has",
    "Dialogue: Ana: hi Ben!",
]


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return make_llama(tiny_tokenizer, seed=4)


@pytest.fixture(scope="module")
def prompt_ids(tiny_tokenizer):
    return [encode_prompt(tiny_tokenizer, p) for p in PROMPTS]


def greedy_by_hand(model, ids: list[int], n: int, eos: int) -> list[int]:
    """Full forward per step, no cache, no padding: the reference greedy decoder."""
    ids, out = list(ids), []
    with torch.no_grad():
        for _ in range(n):
            tok = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            if tok == eos:
                break
            out.append(tok)
            ids.append(tok)
    return out


def test_cut_at_stop_takes_the_earliest_stop():
    text = "7 apples\n\nQuestion: next Dialogue: x"
    assert cut_at_stop(text, ["Dialogue:", "Question:", "\n\n"]) == ("7 apples", True)
    assert cut_at_stop(text, ["Question:", "Dialogue:"]) == ("7 apples\n\n", True)
    assert cut_at_stop(text, ["", "zzz"]) == (text, False)


def test_unbatched_equals_hand_greedy(model, tiny_tokenizer, prompt_ids):
    eos = tiny_tokenizer.eos_token_id
    for ids in prompt_ids[:3]:
        (out,) = generate(model, tiny_tokenizer, [ids], max_new_tokens=6, batch_size=1)
        expected = greedy_by_hand(model, ids, 6, eos)
        assert list(out.token_ids) == expected
        assert out.text == tiny_tokenizer.decode(expected, skip_special_tokens=True)


def test_batched_equals_unbatched(model, tiny_tokenizer, prompt_ids):
    one = [
        generate(model, tiny_tokenizer, [ids], max_new_tokens=10, batch_size=1)[0]
        for ids in prompt_ids
    ]
    for bs in (2, 5):
        many = generate(model, tiny_tokenizer, prompt_ids, max_new_tokens=10, batch_size=bs)
        assert many == one
    assert all(o.finish == "length" and o.n_tokens == 10 for o in one)


def test_stop_string_cuts_text_and_stops_the_row(model, tiny_tokenizer, prompt_ids):
    (full,) = generate(model, tiny_tokenizer, prompt_ids[:1], max_new_tokens=12, batch_size=1)
    assert len(full.text) >= 6
    stop = full.text[3:5]  # a stop string that the greedy continuation surely produces
    pos = full.text.find(stop)
    outs = generate(
        model, tiny_tokenizer, prompt_ids[:2], max_new_tokens=12, stop=[stop], batch_size=2
    )
    assert outs[0].text == full.text[:pos]
    assert outs[0].finish == "stop"
    # stopped as soon as the stop string appeared, not at max_new_tokens
    n = outs[0].n_tokens
    assert outs[0].token_ids == full.token_ids[:n]
    assert stop in tiny_tokenizer.decode(list(full.token_ids[:n]))
    assert stop not in tiny_tokenizer.decode(list(full.token_ids[: n - 1]))
    # the other row of the batch is unaffected unless it hit the same stop
    (alone,) = generate(model, tiny_tokenizer, prompt_ids[1:2], max_new_tokens=12, stop=[stop])
    assert outs[1] == alone


def test_no_repeat_ngram_size_one_never_repeats_a_token(model, tiny_tokenizer, prompt_ids):
    (out,) = generate(
        model, tiny_tokenizer, prompt_ids[2:3], max_new_tokens=15, no_repeat_ngram_size=1
    )
    # with n=1 no token of prompt + output may occur twice
    all_ids = prompt_ids[2] + list(out.token_ids)
    assert out.n_tokens == 15
    assert len(set(all_ids)) == len(all_ids)
    (plain,) = generate(model, tiny_tokenizer, prompt_ids[2:3], max_new_tokens=15)
    assert len(set(plain.token_ids)) < 15  # without the constraint this model repeats itself


def _row(example, text, metric, extract="none", threshold=0.5):
    return gen_prediction(
        example,
        GenerationOutput(text, (5, 6, 7), "stop"),
        task="t",
        role="new",
        model="m",
        metric=metric,
        extractor=get_extractor(extract),
        pass_threshold=threshold,
        example_hash="e",
        prompt_hash="p",
    )


def test_exact_match_rows():
    ex = GenExample("g", "Question: 3+4?\nAnswer:", "7")
    row = _row(ex, " 3 + 4 = 7 apples. #### 7.0", "exact_match", "gsm8k")
    assert (row["parsed"], row["correct"], row["score"]) == ("7", True, 1.0)
    row = _row(ex, " I do not know", "exact_match", "gsm8k")
    assert (row["parsed"], row["correct"], row["score"]) == (None, False, 0.0)
    row = _row(ex, " #### 8", "exact_match", "gsm8k")
    assert (row["parsed"], row["correct"]) == ("8", False)
    assert list(row) == list(Prediction.model_fields)
    Prediction.model_validate(row)


def test_similarity_rows_use_the_threshold():
    ex = GenExample("s", "Dialogue: ...\nSummary:", "Ana and Ben greet each other.")
    # rouge1 F: 4 shared unigrams, P = 4/4, R = 4/6 -> F = 0.8
    row = _row(ex, " ana and ben greet", "rouge1")
    assert row["score"] == pytest.approx(0.8, abs=1e-12)
    assert row["correct"] is True and row["parsed"] == "ana and ben greet"
    assert _row(ex, " ana and ben greet", "rouge1", threshold=0.9)["correct"] is False
    Prediction.model_validate(row)
