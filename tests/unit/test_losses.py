"""Masked distillation losses (compatlm.train.losses) on hand-computed cases.

Logits are built as log-probabilities, so softmax at T = 1 returns the written probabilities and
every expected value below is written out with math.log.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from compatlm.errors import CompatlmError
from compatlm.train.losses import compat_loss, focal_weights, lm_loss, masked_kd_loss
from compatlm.train.masks import OldStats
from compatlm.train.topk import topk_from_logits

IG = -100


def logits_of(probs: list[list[list[float]]]) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float32).log()


def kl(t: list[float], s: list[float]) -> float:
    """KL(t ‖ s) by hand."""
    return sum(a * math.log(a / b) for a, b in zip(t, s, strict=True))


def soften(p: list[float], temperature: float) -> list[float]:
    """softmax(log p / T) by hand: p^(1/T) renormalised."""
    q = [x ** (1.0 / temperature) for x in p]
    return [x / sum(q) for x in q]


# Case B: one sequence, three positions. Labels 1, 1, ignored.
# t0: student argmax 0 != 1 -> wrong -> teacher_old.  t1: student argmax 1 == 1 -> teacher_new.
S0, S1 = [0.5, 0.3, 0.2], [0.1, 0.6, 0.3]
O0, O1 = [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]
N0, N1 = [0.1, 0.8, 0.1], [0.2, 0.5, 0.3]
GARBAGE = [1e4, -1e4, 0.0]  # logits at the ignored position: must not count
LABELS_B = torch.tensor([[1, 1, IG]])


def case_b() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    def build(a: list[float], b: list[float]) -> torch.Tensor:
        return torch.cat([logits_of([[a, b]]), torch.tensor([[GARBAGE]])], dim=1)

    return build(S0, S1), build(O0, O1), build(N0, N1)


def test_single_token_aligned_to_old_with_hand_gradient() -> None:
    student = logits_of([[S0]]).requires_grad_(True)
    loss = masked_kd_loss(
        student, logits_of([[O0]]), logits_of([[N0]]), torch.tensor([[1]]), temperature=1.0
    )
    assert loss.item() == pytest.approx(kl(O0, S0), abs=1e-6)
    loss.backward()
    # d KL(t ‖ softmax(z)) / dz = softmax(z) − t.
    expected_grad = [s - t for s, t in zip(S0, O0, strict=True)]
    assert student.grad[0, 0].tolist() == pytest.approx(expected_grad, abs=1e-6)


def test_mask_picks_old_for_one_token_and_new_for_the_other() -> None:
    student, old, new = case_b()
    loss = masked_kd_loss(student, old, new, LABELS_B, temperature=1.0)
    assert loss.item() == pytest.approx((kl(O0, S0) + kl(N1, S1)) / 2, abs=1e-6)


def test_mask_name_is_honoured() -> None:
    student, old, new = case_b()
    loss = masked_kd_loss(student, old, new, LABELS_B, mask="old_only", temperature=1.0)
    assert loss.item() == pytest.approx((kl(O0, S0) + kl(O1, S1)) / 2, abs=1e-6)


def test_temperature_softens_both_distributions() -> None:
    student, old, new = case_b()
    loss = masked_kd_loss(student, old, new, LABELS_B, temperature=2.0)
    expected = (kl(soften(O0, 2), soften(S0, 2)) + kl(soften(N1, 2), soften(S1, 2))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected < (kl(O0, S0) + kl(N1, S1)) / 2  # softer targets, smaller divergence here


def test_all_ignored_gives_zero_without_nan_and_backward_works() -> None:
    student, old, new = case_b()
    student.requires_grad_(True)
    labels = torch.full((1, 3), IG)
    loss = masked_kd_loss(student, old, new, labels)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))
    out = compat_loss(
        student,
        labels,
        old=old,
        new=new,
        old_stats=OldStats.from_logits(old, labels),
        kd_weight=0.5,
    )
    assert out.loss.item() == 0.0 and out.n_tokens == 0 and out.n_old_tokens == 0


def test_gradient_reaches_the_student_only() -> None:
    student, old, new = (t.requires_grad_(True) for t in case_b())
    masked_kd_loss(student, old, new, LABELS_B).backward()
    assert old.grad is None and new.grad is None
    assert student.grad is not None and student.grad[0, :2].abs().sum() > 0
    # The ignored position receives exactly no gradient.
    assert torch.equal(student.grad[0, 2], torch.zeros(3))


def stats_b(old: torch.Tensor) -> OldStats:
    return OldStats.from_logits(old, LABELS_B, IG)


def test_compat_loss_counts_and_t_squared() -> None:
    student, old, new = case_b()
    plain = compat_loss(student, LABELS_B, old=old, new=new, old_stats=stats_b(old))
    scaled = compat_loss(
        student, LABELS_B, old=old, new=new, old_stats=stats_b(old), t_squared=True
    )
    expected = (kl(soften(O0, 2), soften(S0, 2)) + kl(soften(N1, 2), soften(S1, 2))) / 2
    assert plain.loss.item() == pytest.approx(expected, abs=1e-6)
    assert scaled.loss.item() == pytest.approx(4.0 * expected, abs=1e-6)
    assert (plain.n_tokens, plain.n_old_tokens) == (2, 1)
    assert plain.ce.item() == pytest.approx(-(math.log(0.3) + math.log(0.6)) / 2, abs=1e-6)


def test_kd_weight_zero_is_exactly_cross_entropy_and_ignores_teachers() -> None:
    student, old, _ = case_b()
    nan_teacher = torch.full_like(student, math.nan)  # would poison any KL that got computed
    out = compat_loss(
        student, LABELS_B, old=nan_teacher, new=nan_teacher, old_stats=stats_b(old), kd_weight=0.0
    )
    reference = F.cross_entropy(student.view(-1, 3), LABELS_B.view(-1), ignore_index=IG)
    assert torch.equal(out.loss, reference)
    assert out.loss.item() == pytest.approx(-(math.log(0.3) + math.log(0.6)) / 2, abs=1e-6)
    assert torch.equal(lm_loss(student, LABELS_B, IG), reference)


def test_kd_weight_mixes_kd_and_ce() -> None:
    student, old, new = case_b()
    out = compat_loss(
        student,
        LABELS_B,
        old=old,
        new=new,
        old_stats=stats_b(old),
        kd_weight=0.25,
        temperature=1.0,
    )
    kd = (kl(O0, S0) + kl(N1, S1)) / 2
    ce = -(math.log(0.3) + math.log(0.6)) / 2
    assert out.loss.item() == pytest.approx(0.25 * kd + 0.75 * ce, abs=1e-6)
    with pytest.raises(CompatlmError, match="kd_weight"):
        compat_loss(student, LABELS_B, old=old, new=new, old_stats=stats_b(old), kd_weight=1.5)


def test_instance_weights_scale_each_sequence() -> None:
    student_b, old_b, new_b = case_b()
    # Sequence 1: one valid token (label 0), student argmax 0 -> right -> teacher_new.
    s2, o2, n2 = [0.6, 0.2, 0.2], [0.5, 0.25, 0.25], [0.7, 0.2, 0.1]
    pad = torch.tensor([[GARBAGE, GARBAGE]])
    student = torch.cat([student_b, torch.cat([logits_of([[s2]]), pad], dim=1)])
    old = torch.cat([old_b, torch.cat([logits_of([[o2]]), pad], dim=1)])
    new = torch.cat([new_b, torch.cat([logits_of([[n2]]), pad], dim=1)])
    labels = torch.tensor([[1, 1, IG], [0, IG, IG]])
    weights = focal_weights(torch.tensor([False, True]), alpha=1.0, beta=2.0)
    assert weights.tolist() == [1.0, 3.0]
    out = compat_loss(
        student,
        labels,
        old=old,
        new=new,
        old_stats=OldStats.from_logits(old, labels),
        temperature=1.0,
        instance_weights=weights,
    )
    expected = (1.0 * (kl(O0, S0) + kl(N1, S1)) + 3.0 * kl(n2, s2)) / 3  # mean over 3 tokens
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(CompatlmError, match="instance_weights"):
        compat_loss(
            student,
            labels,
            old=old,
            new=new,
            old_stats=OldStats.from_logits(old, labels),
            instance_weights=torch.ones(3),
        )


def test_topk_teachers_full_k_match_logits_and_small_k_uses_buckets() -> None:
    student, old, new = case_b()
    ref = compat_loss(student, LABELS_B, old=old, new=new, old_stats=stats_b(old))
    via_topk = compat_loss(
        student,
        LABELS_B,
        old=topk_from_logits(old, 3, 2.0),
        new=topk_from_logits(new, 3, 2.0),
        old_stats=stats_b(old),
    )
    assert via_topk.loss.item() == pytest.approx(ref.loss.item(), abs=1e-6)
    # Old teacher as top-1 at T = 1: at t0, buckets [0.7 | 0.3] vs student [0.3 | 0.7].
    mixed = compat_loss(
        student,
        LABELS_B,
        old=topk_from_logits(old, 1, 1.0),
        new=new,
        old_stats=stats_b(old),
        temperature=1.0,
    )
    old_term = 0.7 * math.log(0.7 / 0.3) + 0.3 * math.log(0.3 / 0.7)
    assert mixed.loss.item() == pytest.approx((old_term + kl(N1, S1)) / 2, abs=1e-6)


logit = st.floats(min_value=-15.0, max_value=15.0, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    student=st.lists(logit, min_size=24, max_size=24),
    old=st.lists(logit, min_size=24, max_size=24),
    new=st.lists(logit, min_size=24, max_size=24),
    labels=st.lists(st.sampled_from([0, 1, 2, 3, IG]), min_size=6, max_size=6),
    temperature=st.sampled_from([0.5, 1.0, 2.0, 4.0]),
    mask=st.sampled_from(
        ["student_wrong", "old_correct", "token_likelihood", "sequence_likelihood"]
    ),
)
def test_property_nonnegative_and_zero_when_all_agree(
    student: list[float],
    old: list[float],
    new: list[float],
    labels: list[int],
    temperature: float,
    mask: str,
) -> None:
    s, o, n = (torch.tensor(x).view(2, 3, 4) for x in (student, old, new))
    y = torch.tensor(labels).view(2, 3)
    loss = masked_kd_loss(s, o, n, y, mask=mask, temperature=temperature)
    assert torch.isfinite(loss)
    assert loss.item() >= -1e-6  # KL >= 0, up to float32 rounding
    same = masked_kd_loss(s, s.clone(), s.clone(), y, mask=mask, temperature=temperature)
    assert same.item() == 0.0


def test_garbage_teachers_at_ignored_positions_do_not_poison_gradients() -> None:
    # A teacher cache may hold anything at padding: NaN logits, NaN log-probs, bad ids.
    student, old, new = case_b()
    student.requires_grad_(True)
    old[0, 2] = math.nan
    new[0, 2] = math.nan
    full = compat_loss(student, LABELS_B, old=old, new=new, old_stats=stats_b(old), temperature=1.0)
    old_topk, new_topk = topk_from_logits(old, 3, 1.0), topk_from_logits(new, 3, 1.0)
    old_topk.ids[0, 2] = -7
    via_topk = compat_loss(
        student, LABELS_B, old=old_topk, new=new_topk, old_stats=stats_b(old), temperature=1.0
    )
    expected = (kl(O0, S0) + kl(N1, S1)) / 2
    for out in (full, via_topk):
        assert out.loss.item() == pytest.approx(expected, abs=1e-6)
        (grad,) = torch.autograd.grad(out.loss, student)
        assert torch.isfinite(grad).all()
        assert torch.equal(grad[0, 2], torch.zeros(3))
