"""Token masks: which teacher the student imitates at each token (MUSCLE, arXiv 2407.09435, §4).

A mask is a bool tensor of shape (B, T): ``True`` means "distil this token from teacher_old",
``False`` means "distil it from teacher_new". Ignored positions (``labels == ignore_index``) are
always ``False``; the loss drops them anyway, and keeping them ``False`` makes
``mask.sum()`` the honest count of old-teacher tokens.

Masks are pure functions recomputed at every step under ``torch.no_grad``: the MUSCLE default
(``student_wrong``) depends on the student's *current* argmax, so it must not be cached.

teacher_old lives on a different base and may be known only through a precomputed cache, so the
masks see it only through :class:`OldStats` (its argmax and the log-probability of the label),
which is all any mask here needs.

Available masks (``MaskName``):

- ``student_wrong`` — paper default: the student's argmax differs from the label, i.e. align to
  the old model exactly where the student is currently wrong.
- ``old_correct`` — the old model's argmax equals the label.
- ``student_wrong_old_right`` — both: the student is wrong *and* the old model right, i.e.
  teacher_old only where following it can repair a token (not a mask of the paper's Table 7:
  ``student_wrong`` also follows teacher_old where it is wrong too).
- ``old_only`` — every valid token (plain distillation from the old model).
- ``token_likelihood`` — p_student(label) < p_old(label), at temperature 1.
- ``sequence_likelihood`` — per sequence: all valid tokens, when the student's summed label
  log-likelihood (temperature 1, valid tokens) is below the old model's.
- ``new_only`` — no token: plain distillation from teacher_new. Not a MUSCLE variant but the
  ``kd_new`` same-budget control (teacher_old is then never run, so ``old`` carries no
  information and this mask does not read it).

Ties in argmax resolve to the first index (``torch.argmax`` semantics); likelihood comparisons
are strict, so a student exactly as good as the old model is aligned to teacher_new.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from compatlm.errors import CompatlmError

MaskName = Literal[
    "student_wrong",
    "old_correct",
    "student_wrong_old_right",
    "old_only",
    "token_likelihood",
    "sequence_likelihood",
    "new_only",
]
# Masks that never read teacher_old: the recipe does not load (or cache) it for them.
NO_OLD_MASKS = ("new_only",)


def valid_positions(labels: Tensor, ignore_index: int = -100) -> Tensor:
    """(B, T) bool: tokens that count (``labels != ignore_index``)."""
    return labels != ignore_index


def label_logprobs(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> Tensor:
    """(B, T) float32: log softmax(logits)[label] at temperature 1; 0 at ignored positions.

    Computed in float32 because masks compare two such numbers and bf16 rounding would decide
    ties arbitrarily.
    """
    valid = valid_positions(labels, ignore_index)
    # Ignored labels (-100) are not valid gather indices: point them at token 0, then zero out.
    safe = torch.where(valid, labels, torch.zeros_like(labels))  # (B, T)
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    picked = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return torch.where(valid, picked, torch.zeros_like(picked))


@dataclass(frozen=True)
class OldStats:
    """What the masks need to know about teacher_old, per token.

    argmax: LongTensor (B, T) — the old model's top token.
    label_logprob: FloatTensor (B, T) — log p_old(label) at temperature 1; any value at ignored
    positions (masks never read it there).
    """

    argmax: Tensor
    label_logprob: Tensor

    @classmethod
    def from_logits(cls, old_logits: Tensor, labels: Tensor, ignore_index: int = -100) -> OldStats:
        """Summarise full old-teacher logits (B, T, V); no gradient is kept."""
        with torch.no_grad():
            return cls(
                argmax=old_logits.argmax(dim=-1),
                label_logprob=label_logprobs(old_logits, labels, ignore_index),
            )


# A mask function sees the student logits (B, T, V), labels (B, T), the old summary and the
# valid positions (B, T); it returns a (B, T) bool tensor (compute_mask ANDs it with `valid`).
MaskFn = Callable[[Tensor, Tensor, OldStats, Tensor, int], Tensor]


def _student_wrong(
    student: Tensor, labels: Tensor, old: OldStats, valid: Tensor, ig: int
) -> Tensor:
    return student.argmax(dim=-1) != labels


def _old_correct(student: Tensor, labels: Tensor, old: OldStats, valid: Tensor, ig: int) -> Tensor:
    return old.argmax == labels


def _student_wrong_old_right(
    student: Tensor, labels: Tensor, old: OldStats, valid: Tensor, ig: int
) -> Tensor:
    return (student.argmax(dim=-1) != labels) & (old.argmax == labels)


def _old_only(student: Tensor, labels: Tensor, old: OldStats, valid: Tensor, ig: int) -> Tensor:
    return valid.clone()


def _token_likelihood(
    student: Tensor, labels: Tensor, old: OldStats, valid: Tensor, ig: int
) -> Tensor:
    return label_logprobs(student, labels, ig) < old.label_logprob.float()


def _sequence_likelihood(
    student: Tensor, labels: Tensor, old: OldStats, valid: Tensor, ig: int
) -> Tensor:
    student_lp = label_logprobs(student, labels, ig)  # (B, T), 0 where ignored
    # The cache may hold anything (even NaN) at ignored positions: mask before summing.
    old_lp = torch.where(valid, old.label_logprob.float(), torch.zeros_like(student_lp))
    worse = student_lp.sum(dim=-1) < old_lp.sum(dim=-1)  # (B,)
    return worse.unsqueeze(-1).expand_as(valid)  # (B, T)


def _new_only(student: Tensor, labels: Tensor, old: OldStats, valid: Tensor, ig: int) -> Tensor:
    return torch.zeros_like(valid)


MASKS: dict[str, MaskFn] = {
    "student_wrong": _student_wrong,
    "old_correct": _old_correct,
    "student_wrong_old_right": _student_wrong_old_right,
    "old_only": _old_only,
    "token_likelihood": _token_likelihood,
    "sequence_likelihood": _sequence_likelihood,
    "new_only": _new_only,
}
assert set(MASKS) == set(get_args(MaskName))  # the Literal and the registry must not drift


def compute_mask(
    name: MaskName | str,
    student_logits: Tensor,
    labels: Tensor,
    old: OldStats,
    *,
    ignore_index: int = -100,
) -> Tensor:
    """(B, T) bool mask, True = align to teacher_old; False at ignored positions.

    student_logits: (B, T, V); labels: (B, T); old: per-token summary of teacher_old (B, T).
    """
    fn = MASKS.get(name)
    if fn is None:
        raise CompatlmError(f"unknown mask {name!r}; expected one of: {', '.join(MASKS)}")
    if student_logits.shape[:2] != labels.shape or old.argmax.shape != labels.shape:
        raise CompatlmError(
            f"mask {name!r}: shape mismatch: student logits {tuple(student_logits.shape)}, "
            f"labels {tuple(labels.shape)}, old argmax {tuple(old.argmax.shape)}; "
            "expected (B, T, V), (B, T), (B, T)"
        )
    with torch.no_grad():
        valid = valid_positions(labels, ignore_index)
        return fn(student_logits.detach(), labels, old, valid, ignore_index) & valid
