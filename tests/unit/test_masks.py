"""Token masks of compatlm.train.masks on hand-built cases (V = 3, logits = log of chosen probs)."""

from __future__ import annotations

import math

import pytest
import torch

from compatlm.errors import CompatlmError
from compatlm.train.masks import MASKS, OldStats, compute_mask, label_logprobs

IG = -100


def logits_of(probs: list[list[list[float]]]) -> torch.Tensor:
    """Logits whose softmax is exactly the given probabilities (up to float rounding)."""
    return torch.tensor(probs, dtype=torch.float32).log()


# One sequence, four positions, the last one ignored. Labels: 0, 1, 2, ignored.
LABELS = torch.tensor([[0, 1, 2, IG]])
# Student: argmax 0 (right), 0 (wrong), 1 (wrong), 0 (ignored).
# p_student(label): 0.5, 0.3, 0.1.
STUDENT = logits_of([[[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.9, 0.05, 0.05]]])
# Old: argmax 1 (wrong), 1 (right), 0 (wrong), 2 (== nothing; ignored).
# p_old(label): 0.2, 0.4, 0.3.
OLD = logits_of([[[0.2, 0.7, 0.1], [0.35, 0.4, 0.25], [0.4, 0.3, 0.3], [0.1, 0.1, 0.8]]])


def mask_of(name: str, student: torch.Tensor = STUDENT, labels: torch.Tensor = LABELS) -> list:
    old = OldStats.from_logits(OLD, labels, IG)
    out = compute_mask(name, student, labels, old, ignore_index=IG)
    assert out.dtype == torch.bool and out.shape == labels.shape
    return out.tolist()


def test_student_wrong_marks_tokens_the_student_gets_wrong() -> None:
    assert mask_of("student_wrong") == [[False, True, True, False]]


def test_old_correct_marks_tokens_the_old_model_gets_right() -> None:
    assert mask_of("old_correct") == [[False, True, False, False]]


def test_student_wrong_old_right_marks_only_tokens_the_old_model_can_repair() -> None:
    # t1: student wrong, old right -> True; t2: both wrong -> False (student_wrong: True);
    # t0: student right -> False; ignored -> False.
    assert mask_of("student_wrong_old_right") == [[False, True, False, False]]
    assert mask_of("student_wrong")[0][2] is True
    # Both right at t0 (old argmax 0 here): old_correct marks it, the repair mask does not.
    old = OldStats.from_logits(logits_of([[[0.7, 0.2, 0.1]] * 4]), LABELS, IG)
    assert compute_mask("old_correct", STUDENT, LABELS, old, ignore_index=IG)[0, 0]
    assert not compute_mask("student_wrong_old_right", STUDENT, LABELS, old, ignore_index=IG)[0, 0]


def test_old_only_marks_every_valid_token() -> None:
    assert mask_of("old_only") == [[True, True, True, False]]


def test_token_likelihood_compares_label_probabilities() -> None:
    # 0.5 < 0.2? no; 0.3 < 0.4? yes; 0.1 < 0.3? yes; ignored -> False.
    assert mask_of("token_likelihood") == [[False, True, True, False]]


def test_token_likelihood_differs_from_student_wrong_when_student_right_but_unsure() -> None:
    # At t0 the student is right (argmax 0) but less sure of the label than the old model.
    student = logits_of([[[0.4, 0.35, 0.25], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.9, 0.05, 0.05]]])
    old = OldStats.from_logits(logits_of([[[0.9, 0.05, 0.05]] * 4]), LABELS, IG)
    # p_old(label) = 0.9, 0.05, 0.05; p_student(label) = 0.4, 0.3, 0.1.
    got = compute_mask("token_likelihood", student, LABELS, old, ignore_index=IG).tolist()
    assert got == [[True, False, False, False]]
    assert compute_mask("student_wrong", student, LABELS, old).tolist() == [
        [False, True, True, False]
    ]


def test_sequence_likelihood_marks_whole_sequences() -> None:
    labels = torch.tensor([[0, 1, 2, IG], [0, 1, 2, IG]])
    # Sequence 0: the student of the shared case, sum log p = log(0.5·0.3·0.1) = log 0.015,
    # old = log(0.2·0.4·0.3) = log 0.024 -> student worse -> True on its valid tokens.
    # Sequence 1: a confident student, log(0.8·0.8·0.8) > log 0.024 -> False.
    confident = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]
    student = torch.cat([STUDENT, logits_of([confident])])
    old = OldStats.from_logits(torch.cat([OLD, OLD]), labels, IG)
    got = compute_mask("sequence_likelihood", student, labels, old, ignore_index=IG)
    assert got.tolist() == [[True, True, True, False], [False, False, False, False]]
    # The numbers the decision rests on, by hand.
    s_sum = label_logprobs(student, labels, IG).sum(-1)
    assert s_sum[0].item() == pytest.approx(math.log(0.5 * 0.3 * 0.1), abs=1e-5)
    assert old.label_logprob[0].sum().item() == pytest.approx(math.log(0.2 * 0.4 * 0.3), abs=1e-5)


def test_masks_accept_cached_old_stats_with_garbage_at_ignored_positions() -> None:
    # A teacher cache may store anything where labels are ignored; NaN must not leak.
    old = OldStats(
        argmax=torch.tensor([[1, 1, 0, 2]]),
        label_logprob=torch.tensor([[math.log(0.2), math.log(0.4), math.log(0.3), math.nan]]),
    )
    seq = compute_mask("sequence_likelihood", STUDENT, LABELS, old, ignore_index=IG)
    assert seq.tolist() == [[True, True, True, False]]
    tok = compute_mask("token_likelihood", STUDENT, LABELS, old, ignore_index=IG)
    assert tok.tolist() == [[False, True, True, False]]


def test_old_stats_from_logits_values() -> None:
    old = OldStats.from_logits(OLD, LABELS, IG)
    assert old.argmax.tolist() == [[1, 1, 0, 2]]
    expected = [math.log(0.2), math.log(0.4), math.log(0.3), 0.0]
    assert old.label_logprob[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_masks_carry_no_gradient_and_all_ignored_gives_all_false() -> None:
    student = STUDENT.clone().requires_grad_(True)
    labels = torch.full((1, 4), IG)
    old = OldStats.from_logits(OLD, labels, IG)
    for name in MASKS:
        out = compute_mask(name, student, labels, old, ignore_index=IG)
        assert not out.requires_grad
        assert not out.any(), name


def test_unknown_mask_lists_valid_names() -> None:
    old = OldStats.from_logits(OLD, LABELS, IG)
    with pytest.raises(CompatlmError, match=r"unknown mask 'nope'") as err:
        compute_mask("nope", STUDENT, LABELS, old)
    assert all(name in str(err.value) for name in MASKS)
