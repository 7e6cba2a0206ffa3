"""Training data: the prompt/answer boundary equals the scorer's, label alignment, truncation,
the seeded split and the collator."""

from __future__ import annotations

import pytest

from compatlm import prompts
from compatlm.errors import CompatlmError
from compatlm.tasks import GenExample, MCExample
from compatlm.train.config import DataSettings
from compatlm.train.data import (
    IGNORE,
    Collator,
    Features,
    encode_example,
    encode_examples,
    split_train_val,
)

CTX = "Question: what color is the sky? Answer:"


def test_mc_answer_tokens_are_exactly_the_scored_continuation(tiny_tokenizer):
    ex = MCExample("a", CTX, ("blue", "red"), 0)
    f = encode_example(ex, tiny_tokenizer, mask_prompt=True, max_length=64, append_eos=False)
    req = prompts.encode_choices(tiny_tokenizer, CTX, ["blue"])[0]
    fed, n_cont = prompts.scoring_input(req, 64)
    assert list(f.input_ids) == fed  # the model sees what the scorer feeds it
    n_ctx = len(req.context_ids)
    assert list(f.labels) == [IGNORE] * (n_ctx - 1) + list(req.continuation_ids)
    assert list(f.answer) == [False] * (n_ctx - 1) + [True] * n_cont
    assert f.n_labels == n_cont


def test_mask_prompt_false_labels_every_next_token(tiny_tokenizer):
    ex = MCExample("a", CTX, ("blue", "red"), 1)
    f = encode_example(ex, tiny_tokenizer, mask_prompt=False, max_length=64, append_eos=False)
    req = prompts.encode_choices(tiny_tokenizer, CTX, ["red"])[0]
    seq = list(req.context_ids + req.continuation_ids)
    assert list(f.labels) == seq[1:]
    assert sum(f.answer) == len(req.continuation_ids)


def test_generation_answer_follows_the_generation_prompt(tiny_tokenizer):
    ex = GenExample("g", CTX, "blue")
    f = encode_example(ex, tiny_tokenizer, mask_prompt=True, max_length=64, append_eos=True)
    prompt_ids = prompts.encode_prompt(tiny_tokenizer, CTX)
    n_p = len(prompt_ids)
    assert list(f.input_ids[:n_p]) == prompt_ids  # what generation is conditioned on
    answer = [t for t in f.labels if t != IGNORE]
    assert answer[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(answer[:-1]) == " blue"
    assert f.labels[: n_p - 1] == (IGNORE,) * (n_p - 1)


def test_left_truncation_keeps_the_answer(tiny_tokenizer):
    ex = MCExample("a", CTX, ("blue", "red"), 0)
    full = encode_example(ex, tiny_tokenizer, mask_prompt=True, max_length=64, append_eos=False)
    cut = encode_example(ex, tiny_tokenizer, mask_prompt=True, max_length=3, append_eos=False)
    assert len(cut.input_ids) == 3
    assert cut.input_ids == full.input_ids[-3:]
    assert [t for t in cut.labels if t != IGNORE][-1] == full.labels[-1]


def test_eos_default_depends_on_kind(tiny_tokenizer):
    mc = MCExample("a", CTX, ("blue", "red"), 0)
    gen = GenExample("g", CTX, "blue")
    feats = encode_examples([mc, gen], tiny_tokenizer, DataSettings(), mask_prompt=True)
    eos = tiny_tokenizer.eos_token_id
    assert feats[0].labels[-1] != eos
    assert feats[1].labels[-1] == eos


def test_empty_task_is_an_error(tiny_tokenizer):
    with pytest.raises(CompatlmError, match="no training examples"):
        encode_examples([], tiny_tokenizer, DataSettings(), mask_prompt=True)


def _feat(i: int, n: int = 3) -> Features:
    return Features(f"e{i}", tuple(range(1, n + 1)), (IGNORE,) * (n - 1) + (7,), (False,) * n)


def test_split_is_seeded_80_20():
    feats = [_feat(i) for i in range(10)]
    train, val = split_train_val(feats, 0.2, seed=3)
    assert (len(train), len(val)) == (8, 2)
    assert {f.example_id for f in train} | {f.example_id for f in val} == {
        f"e{i}" for i in range(10)
    }
    again = split_train_val(feats, 0.2, seed=3)
    assert [f.example_id for f in again[1]] == [f.example_id for f in val]
    assert split_train_val(feats, 0.0, seed=3)[1] == []
    assert len(split_train_val(feats[:1], 0.5, seed=3)[0]) == 1  # never an empty training set


def test_collator_pads_right_and_maps_rows():
    feats = [_feat(0, 2), _feat(1, 4)]
    batch = Collator(pad_id=0, example_ids=["e1", "e0"])(feats)
    assert batch["input_ids"].tolist() == [[1, 2, 0, 0], [1, 2, 3, 4]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[IGNORE, 7, IGNORE, IGNORE], [IGNORE] * 3 + [7]]
    assert batch["index"].tolist() == [1, 0]
