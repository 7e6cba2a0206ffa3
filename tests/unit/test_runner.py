"""Multiple-choice scoring: hand-computed log-likelihoods, batching invariance, decisions."""

from __future__ import annotations

import math

import pytest
import torch

from compatlm.errors import CompatlmError
from compatlm.eval.records import Prediction
from compatlm.eval.runner import (
    MCResult,
    argmax_first,
    decision_scores,
    mc_prediction,
    score_multiple_choice,
    score_requests,
)
from compatlm.prompts import ScoringRequest, encode_choices
from compatlm.tasks.base import MCExample
from helpers import make_llama

EXAMPLES = [
    MCExample("a", "Question: what color is the sky?\nAnswer:", ("blue", "green", "the cat"), 0),
    MCExample("b", "The cat sat on the", ("mat.", "park", "seven eight nine"), 0),
    MCExample("c", "one two three", ("four", "five six"), 1, slice="count"),
    MCExample("d", "A dog runs in the park and the cat", ("sleeps.", "runs", "sits"), 2),
]


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return make_llama(tiny_tokenizer, seed=5)


def hand_loglikelihood(model, req: ScoringRequest) -> tuple[float, bool]:
    """Sum of log p(continuation token | everything before it) from one unpadded forward."""
    ids = list(req.context_ids + req.continuation_ids)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()  # [T, V]
    logp = torch.log_softmax(logits, dim=-1)
    total, greedy = 0.0, True
    for j, tok in enumerate(req.continuation_ids):
        pos = len(req.context_ids) + j - 1  # the logits at pos predict token pos + 1
        total += float(logp[pos, tok])
        greedy &= int(logits[pos].argmax()) == tok
    return total, greedy


def test_scores_equal_hand_computation(model, tiny_tokenizer):
    reqs = [r for ex in EXAMPLES for r in encode_choices(tiny_tokenizer, ex.context, ex.choices)]
    got = score_requests(model, reqs, batch_size=4, max_length=256)
    for req, score in zip(reqs, got, strict=True):
        ll, greedy = hand_loglikelihood(model, req)
        assert score.loglikelihood == pytest.approx(ll, abs=1e-5)
        assert score.is_greedy == greedy


def test_is_greedy_true_for_the_models_own_argmax(model, tiny_tokenizer):
    ctx = tuple(tiny_tokenizer.encode("The cat sat"))
    ids = list(ctx)
    with torch.no_grad():
        for _ in range(3):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    req = ScoringRequest(ctx, tuple(ids[len(ctx) :]))
    (score,) = score_requests(model, [req], batch_size=1, max_length=256)
    assert score.is_greedy is True


def test_batched_equals_unbatched(model, tiny_tokenizer):
    kwargs = {"metric": "acc_norm", "max_length": 256}
    one = score_multiple_choice(model, tiny_tokenizer, EXAMPLES, batch_size=1, **kwargs)
    for bs in (3, 64):
        many = score_multiple_choice(model, tiny_tokenizer, EXAMPLES, batch_size=bs, **kwargs)
        for a, b in zip(one, many, strict=True):
            assert a.pred == b.pred
            assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=1e-5)
            assert a.prompt_hash == b.prompt_hash


def test_truncation_scores_the_last_tokens(model):
    req = ScoringRequest(tuple(range(3, 23)), (40, 41, 42))  # 23 tokens
    (short,) = score_requests(model, [req], batch_size=1, max_length=8)
    kept = ScoringRequest(tuple(range(17, 23)), (40, 41, 42))  # the 9 tokens that survive
    ll, _ = hand_loglikelihood(model, kept)
    assert short.loglikelihood == pytest.approx(ll, abs=1e-5)


def test_identical_requests_are_scored_once(model):
    req = ScoringRequest((5, 6, 7), (8, 9))
    seen: list[int] = []
    out = score_requests(model, [req, req, req], batch_size=8, max_length=256, on_batch=seen.append)
    assert seen == [1]
    assert out[0] == out[1] == out[2]


def test_single_token_choices_share_one_forward(model):
    # Inputs are ctx + continuation[:-1]: one-token answers after one context are one row.
    ctx = (5, 6, 7)
    reqs = [ScoringRequest(ctx, (t,)) for t in (20, 21, 22, 23)]
    seen: list[int] = []
    out = score_requests(model, reqs, batch_size=8, max_length=256, on_batch=seen.append)
    assert seen == [1]
    for req, score in zip(reqs, out, strict=True):
        assert score.loglikelihood == pytest.approx(hand_loglikelihood(model, req)[0], abs=1e-5)
    assert len({s.loglikelihood for s in out}) == 4


def test_unscorable_requests_are_errors(model):
    with pytest.raises(CompatlmError, match="tokenises to nothing"):
        score_requests(model, [ScoringRequest((5,), ())], batch_size=1, max_length=256)
    with pytest.raises(CompatlmError, match="longer than the model's maximum length 4"):
        score_requests(model, [ScoringRequest((5,), (1, 2, 3, 4, 5))], batch_size=1, max_length=4)


def test_acc_norm_divides_by_character_length():
    lls, lengths = [-10.0, -12.0], [2, 20]
    assert decision_scores(lls, lengths, "acc") == [-10.0, -12.0]
    assert decision_scores(lls, lengths, "acc_norm") == [-5.0, -0.6]
    assert argmax_first(decision_scores(lls, lengths, "acc")) == 0
    assert argmax_first(decision_scores(lls, lengths, "acc_norm")) == 1
    assert argmax_first([1.0, 3.0, 3.0]) == 1  # ties go to the first, like numpy.argmax


def test_acc_norm_end_to_end_uses_choice_lengths(model, tiny_tokenizer):
    (res,) = score_multiple_choice(
        model, tiny_tokenizer, EXAMPLES[:1], metric="acc_norm", batch_size=2, max_length=256
    )
    assert res.choice_lengths == (4, 5, 7)  # characters of the choice, without the " " delimiter
    per_char = [ll / n for ll, n in zip(res.loglikelihoods, res.choice_lengths, strict=True)]
    assert res.pred == max(range(3), key=lambda i: per_char[i])


def test_prediction_row_numbers():
    ex = MCExample("q", "ctx", ("x", "yy", "zzz"), 1, slice="s")
    res = MCResult(ex, (-1.0, -2.0, -4.0), (False,) * 3, (1, 2, 3), (-1.0, -2.0, -4.0), 0, "h")
    row = mc_prediction(res, task="t", role="old", model="m", metric="acc", example_hash="e")
    denom = math.exp(-1.0) + math.exp(-2.0) + math.exp(-4.0)
    assert row["score"] == pytest.approx(math.exp(-2.0) / denom, abs=1e-12)
    assert row["margin"] == 1.0
    assert (row["output"], row["parsed"], row["correct"], row["target"]) == ("x", 0, False, 1)
    assert list(row) == list(Prediction.model_fields)  # schema order
    Prediction.model_validate(row)
