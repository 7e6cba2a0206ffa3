"""Cached multiple-choice scoring (each context once, choices on its KV cache) against the full
path: identical model inputs, log-likelihoods within 1e-4 (fp32), identical decisions."""

from __future__ import annotations

import random

import pytest
import torch

from compatlm.errors import CompatlmError
from compatlm.eval.kv_scoring import plan_prefixes, score_requests_cached, supports_cached_scoring
from compatlm.eval.runner import ScoringWork, score_multiple_choice, score_requests
from compatlm.prompts import ScoringRequest, encode, encode_choices, scoring_input
from compatlm.tasks.base import MCExample
from helpers import make_llama

TOL = 1e-4  # fp32: cached vs full differ by float rounding only
WORDS = "the cat sat on mat dog runs in park and sleeps one two three four five apples blue".split()


def make_examples(n: int, seed: int) -> list[MCExample]:
    """Contexts of 1-25 words, 2-5 choices of 1-8 words, some one-word (few-token) choices."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ctx = " ".join(rng.choices(WORDS, k=rng.randint(1, 25)))
        if i % 5 == 0:
            ctx += " "  # trailing space: moves into every continuation
        choices = [
            " ".join(rng.choices(WORDS, k=rng.randint(1, 8))) for _ in range(rng.randint(2, 5))
        ]
        if i % 3 == 0:
            choices[0] = "."  # one token after the delimiter
        out.append(MCExample(f"e{i}", ctx, tuple(choices), i % len(choices)))
    return out


# "pa" + "rk": the BPE encodes "...park" as " p", "ar", "k" but the context alone ends " p", "a",
# so the choice's first token would merge with the context's last (checked in the tests).
MERGING = [
    MCExample("m0", "A dog runs in the pa", ("rk", "rk and the cat sleeps.", "th"), 0),
    MCExample("m1", "one two thr", ("ee four", "ee five", "ee four five six"), 0),
    MCExample("m2", "The cat sat on the m", ("at.", "at", "ats and dogs"), 1),
]


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return make_llama(tiny_tokenizer, seed=5)


def both(model, tok, examples, **kwargs):
    full = score_multiple_choice(model, tok, examples, scoring="full", **kwargs)
    cached = score_multiple_choice(model, tok, examples, scoring="cached", **kwargs)
    return full, cached


def assert_same(full, cached) -> None:
    assert [r.example.id for r in cached] == [r.example.id for r in full]
    delta = max(
        abs(a - b)
        for f, c in zip(full, cached, strict=True)
        for a, b in zip(f.loglikelihoods, c.loglikelihoods, strict=True)
    )
    assert delta <= TOL
    for f, c in zip(full, cached, strict=True):
        assert c.pred == f.pred
        assert c.is_greedy == f.is_greedy
        assert c.prompt_hash == f.prompt_hash


@pytest.mark.parametrize("batch_size", [1, 3, 16])
@pytest.mark.parametrize("metric", ["acc", "acc_norm"])
def test_cached_equals_full(model, tiny_tokenizer, batch_size, metric):
    examples = make_examples(24, seed=batch_size)
    full, cached = both(
        model, tiny_tokenizer, examples, metric=metric, batch_size=batch_size, max_length=256
    )
    assert_same(full, cached)
    # Mixed lengths really are mixed, so padding on both sides is exercised.
    assert len({len(encode(tiny_tokenizer, ex.context.rstrip())) for ex in examples}) > 5


def test_merged_boundary_feeds_the_full_paths_ids_and_scores(model, tiny_tokenizer):
    reqs = [
        r
        for ex in MERGING
        for r in encode_choices(tiny_tokenizer, ex.context, ex.choices, delimiter="")
    ]
    merged = 0
    for ex in MERGING:
        ctx = encode(tiny_tokenizer, ex.context)
        merged += encode(tiny_tokenizer, ex.context + ex.choices[0])[: len(ctx)] != ctx
    assert merged >= 2  # the case is exercised, not assumed
    groups, full = plan_prefixes(reqs, max_length=256)
    assert full == []
    for g in groups:
        for i, rest, n_cont in zip(g.members, g.rests, g.n_cont, strict=True):
            ids, n = scoring_input(reqs[i], 256)
            assert list(g.prefix + rest) == ids and n_cont == n
    for metric in ("acc", "acc_norm"):
        kwargs = {"metric": metric, "batch_size": 2, "max_length": 256, "delimiter": ""}
        assert_same(*both(model, tiny_tokenizer, MERGING, **kwargs))


def test_cached_equals_one_unpadded_forward(model, tiny_tokenizer):
    """Against the definition: log p(continuation | context) from one unpadded forward each."""
    examples = make_examples(8, seed=4)
    reqs = [r for ex in examples for r in encode_choices(tiny_tokenizer, ex.context, ex.choices)]
    got = score_requests_cached(model, reqs, batch_size=3, max_length=256)
    for req, score in zip(reqs, got, strict=True):
        ids = list(req.context_ids + req.continuation_ids)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
        start = len(req.context_ids) - 1  # the logits at position t predict token t + 1
        want = sum(float(logp[start + j, t]) for j, t in enumerate(req.continuation_ids))
        assert score.loglikelihood == pytest.approx(want, abs=TOL)


def test_work_counts_each_context_once(model):
    """Hand-counted positions: contexts (5,6,7) and (20,21), left-padded to 3; remainders
    (11,12), (8,), (22,) right-padded to 2; (10,) is one token and needs no continuation row."""
    reqs = [
        ScoringRequest((5, 6, 7), (8, 9)),
        ScoringRequest((5, 6, 7), (10,)),
        ScoringRequest((5, 6, 7), (11, 12, 13)),
        ScoringRequest((20, 21), (22, 23)),
    ]
    cached, full = ScoringWork(), ScoringWork()
    rows: list[int] = []
    got = score_requests_cached(
        model, reqs, batch_size=8, max_length=256, on_batch=rows.append, work=cached
    )
    ref = score_requests(model, reqs, batch_size=8, max_length=256, work=full)
    assert rows == [2, 3]
    assert cached == ScoringWork(
        forwards=2, positions=6 + 6, real_positions=5 + 4, logit_positions=2 + 6
    )
    assert full == ScoringWork(forwards=1, positions=20, real_positions=15, logit_positions=20)
    for a, b in zip(got, ref, strict=True):
        assert a.loglikelihood == pytest.approx(b.loglikelihood, abs=TOL)
        assert a.is_greedy == b.is_greedy


def test_context_pass_keeps_only_the_last_logits(model):
    calls: list[tuple[object, tuple[int, ...]]] = []

    def spy(_module, _args, kwargs, out):
        calls.append((kwargs.get("logits_to_keep"), tuple(out.logits.shape)))

    handle = model.register_forward_hook(spy, with_kwargs=True)
    try:
        reqs = [ScoringRequest((5, 6, 7, 8), (9, 10, 11)), ScoringRequest((5, 6, 7, 8), (12, 13))]
        score_requests_cached(model, reqs, batch_size=4, max_length=256)
    finally:
        handle.remove()
    vocab = model.config.vocab_size
    assert calls == [(1, (1, 1, vocab)), (None, (2, 2, vocab))]


def test_truncation_shares_a_shorter_prefix_or_falls_back(model):
    ctx = tuple(range(3, 23))  # 20 tokens; max_length 8 keeps the last 9 of 23
    same = [ScoringRequest(ctx, (40, 41, 42)), ScoringRequest(ctx, (43, 44, 45))]
    groups, full = plan_prefixes(same, max_length=8)
    assert full == [] and groups[0].prefix == ctx[-6:]  # shorter than the context itself
    mixed = [ScoringRequest(ctx, (40,)), ScoringRequest(ctx, (41, 42, 43, 44))]
    assert plan_prefixes(mixed, max_length=8)[1] == [0, 1]  # inputs start at different tokens
    for reqs in (same, mixed, same + mixed):
        got = score_requests_cached(model, reqs, batch_size=3, max_length=8)
        ref = score_requests(model, reqs, batch_size=3, max_length=8)
        for a, b in zip(got, ref, strict=True):
            assert a.loglikelihood == pytest.approx(b.loglikelihood, abs=TOL)


def test_eager_attention_and_lora_agree(tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    examples = make_examples(12, seed=7)
    kwargs = {"metric": "acc", "batch_size": 5, "max_length": 256}
    eager = make_llama(tiny_tokenizer, seed=9)
    eager.set_attn_implementation("eager")  # additive float mask instead of SDPA's
    assert_same(*both(eager, tiny_tokenizer, examples, **kwargs))
    lora = get_peft_model(make_llama(tiny_tokenizer, seed=9), LoraConfig(r=4, lora_alpha=8))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    lora.eval()
    assert supports_cached_scoring(lora)
    assert_same(*both(lora, tiny_tokenizer, examples, **kwargs))


class NoCache(torch.nn.Module):
    """A causal LM whose forward takes no KV cache: cached scoring must fall back to full."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_model_without_cache_falls_back_to_full(model, tiny_tokenizer):
    wrapped = NoCache(model)
    assert not supports_cached_scoring(wrapped)
    examples = make_examples(6, seed=3)
    work = ScoringWork()
    cached = score_multiple_choice(
        wrapped, tiny_tokenizer, examples, metric="acc", batch_size=4, max_length=256, work=work
    )
    full = score_multiple_choice(
        model, tiny_tokenizer, examples, metric="acc", batch_size=4, max_length=256, scoring="full"
    )
    assert_same(full, cached)
    assert work.logit_positions == work.positions  # every position: the full path ran


@pytest.mark.parametrize("scoring", ["cached", "full"])
def test_results_are_handed_over_once_in_chunks(model, tiny_tokenizer, scoring):
    examples = make_examples(23, seed=11)
    chunks: list[list[str]] = []
    results = score_multiple_choice(
        model,
        tiny_tokenizer,
        examples,
        metric="acc",
        batch_size=2,
        max_length=256,
        scoring=scoring,
        on_results=lambda rs: chunks.append([r.example.id for r in rs]),
    )
    handed = [i for c in chunks for i in c]
    assert sorted(handed) == sorted(ex.id for ex in examples) and len(handed) == 23
    assert all(len(c) >= 8 for c in chunks[:-1]) and len(chunks) > 1  # 4 x batch_size
    assert [r.example.id for r in results] == [ex.id for ex in examples]  # return: task order


def test_unknown_scoring_mode_is_an_error(model, tiny_tokenizer):
    with pytest.raises(CompatlmError, match="scoring 'fast': expected one of cached | full"):
        score_multiple_choice(
            model, tiny_tokenizer, [], metric="acc", batch_size=1, max_length=8, scoring="fast"
        )


def test_eval_scoring_modes_write_the_same_predictions(tiny_family, tmp_path):
    """``compatlm eval`` with runtime.scoring=cached (default) and =full: same rows, same
    answers, log-likelihoods within TOL; rows are written as they finish (scoring order)."""
    import json

    from compatlm.cli import main

    examples = make_examples(14, seed=21)
    task = tmp_path / "mc.jsonl"
    task.write_text(
        "".join(
            json.dumps(
                {"id": ex.id, "context": ex.context, "choices": ex.choices, "label": ex.label}
            )
            + "\n"
            for ex in examples
        )
    )
    f = tiny_family
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        f"old: {f['old']}\nnew: {f['new']}+{f['new_adapter']}\n"
        f"tasks:\n  - name: mc\n    path: {task}\n    metric: acc_norm\n"
        "runtime:\n  batch_size: 3\n  progress: false\ncompare:\n  bootstrap: 0\n"
    )
    rows = {}
    for mode in ("cached", "full"):
        out = tmp_path / mode
        assert main(["eval", str(cfg), "--out", str(out), f"runtime.scoring={mode}"]) == 0
        for role in ("old", "new"):
            lines = (out / "predictions" / "mc" / f"{role}.jsonl").read_text().splitlines()
            rows[mode, role] = {r["example_id"]: r for r in map(json.loads, lines)}
    for role in ("old", "new"):
        cached, full = rows["cached", role], rows["full", role]
        assert sorted(cached) == sorted(full) == sorted(ex.id for ex in examples)
        for eid, row in full.items():
            other = cached[eid]
            assert (other["parsed"], other["correct"]) == (row["parsed"], row["correct"])
            assert other["prompt_hash"] == row["prompt_hash"]
            assert other["loglikelihoods"] == pytest.approx(row["loglikelihoods"], abs=TOL)
