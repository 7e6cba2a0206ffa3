"""compatlm.prompts: lm-eval 0.4.13 tokenisation rules for scoring and generation prompts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from compatlm.errors import CompatlmError
from compatlm.prompts import (
    DEFAULT_MAX_LENGTH,
    ScoringRequest,
    encode,
    encode_choices,
    encode_pair,
    encode_prompt,
    example_hash,
    model_max_length,
    prefix_token_id,
    prompt_hash,
    scoring_input,
    split_trailing_space,
)
from helpers import make_tokenizer


@pytest.fixture(scope="module")
def bos_tokenizer():
    """The tiny tokenizer with a Llama-style post-processor that prepends <s> (id 1)."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_str(make_tokenizer().backend_tokenizer.to_str())
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def test_split_trailing_space_moves_whitespace():
    assert split_trailing_space("Answer: ", "yes") == ("Answer:", " yes")
    assert split_trailing_space("Answer:\n \n", " yes") == ("Answer:", "\n \n yes")
    assert split_trailing_space("Answer:", " yes") == ("Answer:", " yes")


def test_trailing_space_of_context_is_scored_with_the_continuation(tiny_tokenizer):
    tok = tiny_tokenizer
    moved = encode_pair(tok, "The cat sat on the ", "mat.")
    plain = encode_pair(tok, "The cat sat on the", " mat.")
    assert moved == plain
    assert list(moved.context_ids) == tok.encode("The cat sat on the")
    assert tok.decode(list(moved.continuation_ids)) == " mat."


def test_continuation_is_whole_minus_context(tiny_tokenizer):
    tok = tiny_tokenizer
    ctx, cont = "Question: what color is the sky?\nAnswer:", " blue"
    req = encode_pair(tok, ctx, cont)
    whole = tok.encode(ctx + cont)
    assert list(req.context_ids) == tok.encode(ctx)
    assert list(req.continuation_ids) == whole[len(req.context_ids) :]
    assert tok.decode(list(req.context_ids + req.continuation_ids)) == ctx + cont


def test_bos_tokenizer_adds_bos_to_context_only(bos_tokenizer):
    tok = bos_tokenizer
    req = encode_pair(tok, "The cat sat on the", " mat.")
    assert req.context_ids[0] == 1 and req.context_ids.count(1) == 1
    assert 1 not in req.continuation_ids
    # Encoding the continuation on its own would have put a BOS in front of it.
    assert tok.encode(" mat.")[0] == 1
    assert list(req.continuation_ids) == tok.encode(" mat.", add_special_tokens=False)


def test_text_starting_with_bos_gets_no_second_bos(bos_tokenizer):
    assert bos_tokenizer.encode("<s>The cat")[:2] == [1, 1]  # the tokenizer alone doubles it
    assert encode(bos_tokenizer, "<s>The cat") == bos_tokenizer.encode("The cat")


def test_empty_context_uses_prefix_token(tiny_tokenizer):
    req = encode_pair(tiny_tokenizer, "", " blue")
    assert req.context_ids == (tiny_tokenizer.bos_token_id,) == (1,)
    assert list(req.continuation_ids) == tiny_tokenizer.encode(" blue", add_special_tokens=False)


def test_prefix_token_falls_back_to_eos():
    tok = SimpleNamespace(bos_token_id=None, eos_token_id=7)
    assert prefix_token_id(tok) == 7


def test_encode_choices_shares_context_and_matches_pairs(tiny_tokenizer):
    tok = tiny_tokenizer
    ctx = "Question: what color is the sky?\nAnswer: "
    choices = ["blue", "the cat", "seven"]
    reqs = encode_choices(tok, ctx, choices)
    assert [encode_pair(tok, ctx, " " + c) for c in choices] == reqs
    assert len({r.context_ids for r in reqs}) == 1


def test_blank_context_is_treated_as_empty(tiny_tokenizer):
    reqs = encode_choices(tiny_tokenizer, "  ", ["blue"])
    assert reqs[0].context_ids == (1,)
    assert tiny_tokenizer.decode(list(reqs[0].continuation_ids)) == "   blue"


def test_scoring_input_truncates_from_the_left():
    req = ScoringRequest(tuple(range(10)), (100, 101, 102))
    ids, n_cont = scoring_input(req, max_length=8)
    # 13 tokens, keep the last 9, drop the final one (nothing is predicted after it)
    assert ids == [4, 5, 6, 7, 8, 9, 100, 101]
    assert n_cont == 3
    ids, _ = scoring_input(req, max_length=100)
    assert ids == [*range(10), 100, 101]


def test_model_max_length_sources():
    cfg_model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=256))
    assert model_max_length(cfg_model, SimpleNamespace(model_max_length=10)) == 256
    bare = SimpleNamespace(config=SimpleNamespace())
    assert model_max_length(bare, SimpleNamespace(model_max_length=512)) == 512
    assert model_max_length(bare, SimpleNamespace(model_max_length=int(1e30))) == DEFAULT_MAX_LENGTH


def test_encode_prompt_left_truncates(tiny_tokenizer):
    full = encode_prompt(tiny_tokenizer, "one two three four five six seven eight nine ten")
    assert (
        encode_prompt(
            tiny_tokenizer, "one two three four five six seven eight nine ten", max_length=3
        )
        == full[-3:]
    )


def test_chat_template_rendered_with_single_bos(bos_tokenizer):
    bos_tokenizer.chat_template = "<s>[U] {{ messages[0]['content'] }} [A]"
    try:
        ids = encode_prompt(bos_tokenizer, "hi", chat_template=True)
    finally:
        bos_tokenizer.chat_template = None
    assert ids.count(1) == 1 and ids[0] == 1
    assert bos_tokenizer.decode(ids) == "<s>[U] hi [A]"


def test_chat_template_missing_is_an_error(tiny_tokenizer):
    with pytest.raises(CompatlmError, match="no chat template"):
        encode_prompt(tiny_tokenizer, "hi", chat_template=True)


def test_hashes():
    h = prompt_hash([1, 2, 3])
    assert len(h) == 16 and int(h, 16) >= 0
    assert h == prompt_hash((1, 2, 3)) != prompt_hash([1, 2, 4])
    assert prompt_hash([[1], [2, 3]]) != prompt_hash([[1, 2], [3]])
    # canonical JSON: key order does not matter, values do
    assert example_hash({"a": 1, "b": [1, 2]}) == example_hash({"b": [1, 2], "a": 1})
    assert example_hash({"a": 1}) != example_hash({"a": 2})
    import hashlib

    assert example_hash({"b": 1, "a": "x"}) == hashlib.sha256(b'{"a":"x","b":1}').hexdigest()[:16]
