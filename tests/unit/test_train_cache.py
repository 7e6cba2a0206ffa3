"""Teacher cache: exactness at k = V, the measured top-k error, and refusals of a cache built
for another teacher, tokenizer, k, temperature or other data."""

from __future__ import annotations

import itertools

import pytest
import torch

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.models import load_model
from compatlm.spec import ModelSpec
from compatlm.tasks import MCExample
from compatlm.train.cache import TeacherCache, build_teacher_cache
from compatlm.train.config import DataSettings
from compatlm.train.data import Collator, encode_examples
from compatlm.train.forward import forward_logits
from compatlm.train.losses import compat_loss
from compatlm.train.masks import OldStats
from compatlm.train.topk import per_token_kl_full, per_token_kl_topk, topk_from_logits
from helpers import make_tokenizer

CPU = RuntimeConfig(device="cpu", progress=False, batch_size=3)
T = 2.0


def _examples(text: str = "sky") -> list[MCExample]:
    return [
        MCExample(
            f"q{i}", f"Question: what color is the {text} {i}? Answer:", ("blue", "red"), i % 2
        )
        for i in range(5)
    ]


@pytest.fixture(scope="module")
def setup(tiny_family, tiny_tokenizer, tmp_path_factory):
    old = ModelSpec(str(tiny_family["old"]), adapter=str(tiny_family["old_adapter"]))
    feats = encode_examples(_examples(), tiny_tokenizer, DataSettings(), mask_prompt=True)
    vocab = len(tiny_tokenizer)
    root = tmp_path_factory.mktemp("cache")
    full = build_teacher_cache(old, feats, tiny_tokenizer, root / "full", vocab, T, CPU)
    small = build_teacher_cache(old, feats, tiny_tokenizer, root / "k4", 4, T, CPU)
    batch = Collator(tiny_tokenizer.pad_token_id, [f.example_id for f in feats])(feats)
    old_model = load_model(old, runtime=CPU).model
    new_model = load_model(
        ModelSpec(str(tiny_family["new"]), adapter=str(tiny_family["new_adapter"])), runtime=CPU
    ).model
    with torch.no_grad():
        old_logits = forward_logits(old_model, batch)  # (B, T, V)
        new_logits = forward_logits(new_model, batch)
    return {
        "old": old,
        "feats": feats,
        "full": full,
        "small": small,
        "batch": batch,
        "old_logits": old_logits,
        "new_logits": new_logits,
        "vocab": vocab,
    }


def _open(s, tok, directory=None, **kw):
    args = {
        "teacher": s["old"],
        "tokenizer": tok,
        "k": s["vocab"],
        "temperature": T,
        "examples": s["feats"],
        **kw,
    }
    return TeacherCache.open(directory or s["full"], **args)


def test_cached_loss_equals_live_loss_at_k_equal_v(setup, tiny_tokenizer):
    s = setup
    cache = _open(s, tiny_tokenizer)
    ids = [f.example_id for f in s["feats"]]
    labels = s["batch"]["labels"]
    top, stats = cache.lookup(ids, labels)
    live_stats = OldStats.from_logits(s["old_logits"], labels)
    valid = labels != -100
    assert torch.equal(stats.argmax[valid], live_stats.argmax[valid])
    torch.testing.assert_close(stats.label_logprob[valid], live_stats.label_logprob[valid])
    student = s["new_logits"] + 0.5 * torch.randn_like(s["new_logits"])
    common = {"new": s["new_logits"], "temperature": T, "mask": "student_wrong"}
    live = compat_loss(student, labels, old=s["old_logits"], old_stats=live_stats, **common)
    cached = compat_loss(student, labels, old=top, old_stats=stats, **common)
    assert cached.n_old_tokens == live.n_old_tokens > 0
    torch.testing.assert_close(cached.loss, live.loss, rtol=1e-5, atol=1e-7)


def test_small_k_is_a_lower_bound_and_improves_with_k(setup, tiny_tokenizer):
    """The measured truncation error (also in bench/results/train_step.json)."""
    s = setup
    labels = s["batch"]["labels"]
    valid = labels != -100
    student = s["new_logits"]
    full_kl = per_token_kl_full(student, s["old_logits"], T)[valid].mean()
    cache = _open(s, tiny_tokenizer, s["small"], k=4)
    top, _ = cache.lookup([f.example_id for f in s["feats"]], labels)
    k4 = per_token_kl_topk(student, top, T)[valid].mean()
    assert float(k4) <= float(full_kl) + 1e-7  # bucketing never increases the KL
    errors = []
    for k in (1, 4, 16, 64, s["vocab"]):
        approx = per_token_kl_topk(student, topk_from_logits(s["old_logits"], k, T), T)
        errors.append(float((full_kl - approx[valid].mean()) / full_kl))
    print("relative error of the old-teacher KL by k (1, 4, 16, 64, V):", errors)
    assert all(a >= b - 1e-6 for a, b in itertools.pairwise(errors))  # monotone in k
    assert abs(errors[-1]) < 1e-5
    torch.testing.assert_close(
        k4, per_token_kl_topk(student, topk_from_logits(s["old_logits"], 4, T), T)[valid].mean()
    )


def test_refuses_other_tokenizer_k_temperature_teacher(setup, tiny_tokenizer, tiny_family):
    s = setup
    with pytest.raises(CompatlmError, match="built with tokenizer fingerprint"):
        _open(s, make_tokenizer(vocab_size=300))
    with pytest.raises(CompatlmError, match="built with k 320, this run needs 64"):
        _open(s, tiny_tokenizer, k=64)
    with pytest.raises(CompatlmError, match="built with temperature 2.0, this run needs 1.0"):
        _open(s, tiny_tokenizer, temperature=1.0)
    other = ModelSpec(str(tiny_family["new"]), adapter=str(tiny_family["new_adapter"]))
    with pytest.raises(CompatlmError, match="built with teacher"):
        _open(s, tiny_tokenizer, teacher=other)


def test_refuses_other_data(setup, tiny_tokenizer, tmp_path):
    s = setup
    changed = encode_examples(_examples("sea"), tiny_tokenizer, DataSettings(), mask_prompt=True)
    with pytest.raises(CompatlmError, match="example 'q0' has other token ids"):
        _open(s, tiny_tokenizer, examples=changed)
    unmasked = encode_examples(_examples(), tiny_tokenizer, DataSettings(), mask_prompt=False)
    with pytest.raises(CompatlmError, match="other token ids"):
        _open(s, tiny_tokenizer, examples=unmasked)
    extra = encode_examples(
        [*_examples(), MCExample("new", "x", ("a", "b"), 0)],
        tiny_tokenizer,
        DataSettings(),
        mask_prompt=True,
    )
    with pytest.raises(CompatlmError, match="example 'new' is not in the cache"):
        _open(s, tiny_tokenizer, examples=extra)
    with pytest.raises(CompatlmError, match="not a teacher cache"):
        _open(s, tiny_tokenizer, tmp_path)


def test_memory_mapped_and_in_memory_reads_agree(setup, tiny_tokenizer, monkeypatch):
    from compatlm.train import cache as cache_mod

    s = setup
    ids = [f.example_id for f in s["feats"]][::-1]  # another order than on disk
    labels = Collator(tiny_tokenizer.pad_token_id, ids)(s["feats"][::-1])["labels"]
    in_memory = _open(s, tiny_tokenizer)
    monkeypatch.setattr(cache_mod, "IN_MEMORY_BYTES", 0)
    mapped = _open(s, tiny_tokenizer)
    assert in_memory._loaded is not None and mapped._loaded is None
    a, b = in_memory.lookup(ids, labels), mapped.lookup(ids, labels)
    for x, y in ((a[0].ids, b[0].ids), (a[0].logprobs, b[0].logprobs), (a[1].argmax, b[1].argmax)):
        assert torch.equal(x, y)
    with pytest.raises(CompatlmError, match="cached tokens but"):
        in_memory.lookup(ids[:1], labels[1:2])  # another example's labels
