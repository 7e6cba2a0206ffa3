"""Top-k teacher summaries and per-token KL (compatlm.train.topk): hand cases and invariants."""

from __future__ import annotations

import math

import pytest
import torch

from compatlm.errors import CompatlmError
from compatlm.train.topk import (
    TopK,
    per_token_kl_full,
    per_token_kl_topk,
    topk_from_logits,
)


def logits_of(probs: list[float]) -> torch.Tensor:
    """(1, 1, V) logits whose softmax at T = 1 is ``probs``."""
    return torch.tensor(probs, dtype=torch.float32).log().view(1, 1, -1)


def test_topk_from_logits_hand_case() -> None:
    tk = topk_from_logits(logits_of([0.2, 0.5, 0.3]), k=2, temperature=1.0)
    assert tk.ids.tolist() == [[[1, 2]]]
    assert tk.logprobs[0, 0].tolist() == pytest.approx([math.log(0.5), math.log(0.3)], abs=1e-6)
    assert tk.rest_logmass.item() == pytest.approx(math.log(0.2), abs=1e-6)


def test_topk_from_logits_at_temperature_two() -> None:
    # softmax(log p / 2) ∝ sqrt(p): [sqrt .2, sqrt .5, sqrt .3] / their sum.
    tk = topk_from_logits(logits_of([0.2, 0.5, 0.3]), k=1, temperature=2.0)
    z = math.sqrt(0.2) + math.sqrt(0.5) + math.sqrt(0.3)
    assert tk.ids.tolist() == [[[1]]]
    assert tk.logprobs.item() == pytest.approx(math.log(math.sqrt(0.5) / z), abs=1e-6)
    expected_rest = math.log((math.sqrt(0.2) + math.sqrt(0.3)) / z)
    assert tk.rest_logmass.item() == pytest.approx(expected_rest, abs=1e-6)


def test_rest_mass_is_stable_when_top_k_holds_almost_everything() -> None:
    # p(top) = 1 / (1 + 2·e^-100) rounds to 1 in float32, so log1p(-sum) would give -inf.
    tk = topk_from_logits(torch.tensor([[[100.0, 0.0, 0.0]]]), k=1, temperature=1.0)
    assert tk.rest_logmass.item() == pytest.approx(math.log(2.0) - 100.0, abs=1e-4)


def test_k_equal_vocab_gives_minus_inf_rest() -> None:
    tk = topk_from_logits(logits_of([0.2, 0.5, 0.3]), k=3, temperature=1.0)
    assert tk.rest_logmass.item() == float("-inf")


def test_full_kl_hand_case() -> None:
    teacher, student = [0.2, 0.7, 0.1], [0.5, 0.3, 0.2]
    expected = sum(t * math.log(t / s) for t, s in zip(teacher, student, strict=True))
    got = per_token_kl_full(logits_of(student), logits_of(teacher), temperature=1.0)
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_topk_kl_hand_case_two_buckets() -> None:
    # Teacher [0.5, 0.3, 0.2], k = 1 -> buckets [0.5 | 0.5]; student [0.25, 0.25, 0.5] -> [0.25 | 0.75].
    teacher = topk_from_logits(logits_of([0.5, 0.3, 0.2]), k=1, temperature=1.0)
    got = per_token_kl_topk(logits_of([0.25, 0.25, 0.5]), teacher, temperature=1.0)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_topk_with_k_equal_vocab_equals_full_kl_and_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(3, 5, 7, generator=gen) * 3
    student_a = (torch.randn(3, 5, 7, generator=gen) * 3).requires_grad_(True)
    student_b = student_a.detach().clone().requires_grad_(True)
    for temperature in (1.0, 2.0):
        full = per_token_kl_full(student_a, teacher, temperature)
        bucketed = per_token_kl_topk(
            student_b, topk_from_logits(teacher, 7, temperature), temperature
        )
        assert torch.allclose(bucketed, full, atol=1e-5)
    full.sum().backward()
    bucketed.sum().backward()
    assert torch.isfinite(student_b.grad).all()  # the empty rest bucket must not leak NaN
    assert torch.allclose(student_b.grad, student_a.grad, atol=1e-5)


def test_topk_kl_is_a_lower_bound_of_full_kl() -> None:
    gen = torch.Generator().manual_seed(1)
    teacher = torch.randn(4, 6, 11, generator=gen) * 4
    student = torch.randn(4, 6, 11, generator=gen) * 4
    full = per_token_kl_full(student, teacher, 2.0)
    gaps = []
    for k in (1, 3, 10):
        bucketed = per_token_kl_topk(student, topk_from_logits(teacher, k, 2.0), 2.0)
        assert (bucketed >= -1e-6).all()
        assert (bucketed <= full + 1e-6).all()
        gaps.append((full - bucketed).sum().item())
    # More buckets keep more information: the gap shrinks as k grows.
    assert gaps[0] > gaps[1] > gaps[2] > 0


def test_kl_is_zero_for_identical_distributions() -> None:
    z = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(2))
    assert per_token_kl_full(z, z, 2.0).abs().max().item() == 0.0
    assert per_token_kl_topk(z, topk_from_logits(z, 2, 2.0), 2.0).abs().max().item() < 1e-6


def test_bad_arguments_raise_compatlm_error() -> None:
    z = torch.zeros(1, 2, 3)
    with pytest.raises(CompatlmError, match="top-k size"):
        topk_from_logits(z, 4, 1.0)
    with pytest.raises(CompatlmError, match="temperature"):
        per_token_kl_full(z, z, 0.0)
    with pytest.raises(CompatlmError, match="vocabulary"):
        per_token_kl_full(z, torch.zeros(1, 2, 4), 1.0)
    bad = TopK(torch.zeros(1, 1, 1, dtype=torch.long), torch.zeros(1, 1, 1), torch.zeros(1, 1))
    with pytest.raises(CompatlmError, match="do not fit"):
        per_token_kl_topk(z, bad, 1.0)
