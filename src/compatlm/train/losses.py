"""Losses for compatibility training: masked distillation (MUSCLE), focal weights, plain CE.

MUSCLE (Echterhoff et al., arXiv 2407.09435, §4) trains the student (a LoRA on the new base) by
token-level knowledge distillation where a mask picks, per token, the teacher to imitate:
teacher_old (M_v1 task model) where the mask is 1, teacher_new (M_v2 task model) where it is 0:

    L_kd = 1/N · Σ_{valid i} KL(σ(z_{teacher(i), i} / T) ‖ σ(z_{student, i} / T))

with N the number of valid tokens (``labels != ignore_index``). The trainer's general form adds
a cross-entropy term and options:

    L = kd_weight · L_kd · (T² if t_squared) + (1 − kd_weight) · L_ce

``instance_weights`` (B,) scale each sequence's per-token KL; with :func:`focal_weights` this is
PCT focal distillation (Yan et al., CVPR 2021): weight α + β·1[old model correct on the instance].

Shapes: logits (B, T, V); labels (B, T), already aligned (logits[:, t] predicts labels[:, t]).
Teachers are full logits (B, T, V) or a :class:`~compatlm.train.topk.TopK`; they are always
detached, so gradient reaches the student only. Means are guarded: no valid token gives 0.0
(still connected to the student's graph, so ``backward()`` works), never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from compatlm.errors import CompatlmError
from compatlm.train.masks import MaskName, OldStats, compute_mask, valid_positions
from compatlm.train.topk import TopK, per_token_kl_full, per_token_kl_topk

Teacher = Tensor | TopK


@dataclass
class LossOutput:
    """One step's loss and its parts, for the optimiser and for logging.

    loss: scalar to backpropagate. kd: the (possibly T²-scaled) masked KL term, 0 when
    kd_weight = 0 (not computed then). ce: token-mean cross entropy (logged even when
    kd_weight = 1; detached then). n_tokens: valid tokens in the batch. n_old_tokens: tokens
    aligned to teacher_old (0 when the KL was skipped). counts: token counts for the mechanism
    diagnostics (keys of :data:`compatlm.train.diagnostics.COUNT_KEYS`), summed by the loop.
    """

    loss: Tensor
    kd: Tensor
    ce: Tensor
    n_tokens: int
    n_old_tokens: int
    counts: dict[str, int] = field(default_factory=dict)


def _zero_like_graph(logits: Tensor) -> Tensor:
    """A scalar 0.0 connected to ``logits``' graph: backward() works and yields zero grads."""
    return logits.sum() * 0.0


def lm_loss(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> Tensor:
    """Token-mean cross entropy over valid labels; logits (B, T, V), labels (B, T) -> scalar.

    Same value as ``F.cross_entropy(..., ignore_index=...)`` (mean reduction), except that a batch
    without any valid label gives 0.0 instead of NaN.
    """
    valid = valid_positions(labels, ignore_index)  # (B, T)
    if not bool(valid.any()):
        return _zero_like_graph(logits)
    # Only valid positions enter the softmax: with the prompt masked they are a small share.
    return F.cross_entropy(logits[valid].float(), labels[valid])  # (N, V), (N,)


def focal_weights(old_correct: Tensor, alpha: float = 1.0, beta: float = 1.0) -> Tensor:
    """PCT focal distillation weights (Yan et al., 2021): (B,) bool -> (B,) float α + β·1[correct].

    Instances the old model got right weigh more, because those are the ones a negative flip
    would break.
    """
    return alpha + beta * old_correct.to(torch.float32)


def _teacher_kl(student_logits: Tensor, teacher: Teacher, temperature: float) -> Tensor:
    """(B, T) per-token KL(teacher ‖ student) for a full-logits or top-k teacher (detached)."""
    if isinstance(teacher, TopK):
        return per_token_kl_topk(student_logits, teacher.detach(), temperature)
    return per_token_kl_full(student_logits, teacher.detach(), temperature)


def _take(x: Teacher, rows: Tensor, cols: Tensor) -> Teacher:
    """Positions (rows[i], cols[i]) of a (B, T, ...) teacher, as a (1, N, ...) teacher."""
    idx = (None, rows, cols)
    return x.index(idx) if isinstance(x, TopK) else x[idx]


def _check_teachers(old: Teacher, new: Teacher) -> None:
    if isinstance(old, Tensor) and isinstance(new, Tensor) and old.shape != new.shape:
        raise CompatlmError(
            f"teacher_old and teacher_new logits differ in shape: {tuple(old.shape)} vs "
            f"{tuple(new.shape)} (the two models must share a vocabulary)"
        )


def _masked_kl_sum(
    student_logits: Tensor,
    old: Teacher,
    new: Teacher,
    mask: Tensor,
    valid: Tensor,
    temperature: float,
    instance_weights: Tensor | None,
) -> Tensor:
    """Σ over valid tokens of (weighted) KL to teacher_old where ``mask`` else to teacher_new.

    Each teacher's KL is computed only on the tokens it teaches: (N_old, V) and (N_new, V)
    instead of two (B, T, V) passes. With the prompt masked from the loss, N is a small share of
    B·T, so this is most of the loss's cost saved; ignored positions (padding, whose cached or
    batched teacher values may be garbage or NaN) never enter the arithmetic.
    """
    _check_teachers(old, new)
    total = student_logits.sum() * 0.0  # scalar on the student's graph, also when N = 0
    for teacher, use in ((old, mask & valid), (new, ~mask & valid)):
        rows, cols = use.nonzero(as_tuple=True)  # (n,), (n,)
        if rows.numel() == 0:
            continue
        student = student_logits[rows, cols].unsqueeze(0)  # (1, n, V)
        kl = _teacher_kl(student, _take(teacher, rows, cols), temperature).squeeze(0)  # (n,)
        if instance_weights is not None:
            kl = kl * instance_weights.detach().to(kl.dtype)[rows]  # (n,)
        total = total + kl.sum()
    return total


def compat_loss(
    student_logits: Tensor,
    labels: Tensor,
    *,
    old: Teacher,
    new: Teacher,
    old_stats: OldStats,
    mask: MaskName | str = "student_wrong",
    temperature: float = 2.0,
    kd_weight: float = 1.0,
    t_squared: bool = False,
    instance_weights: Tensor | None = None,
    ignore_index: int = -100,
) -> LossOutput:
    """The trainer's loss: masked distillation plus optional cross entropy.

    student_logits: (B, T, V); labels: (B, T); old/new: (B, T, V) logits or TopK at
    ``temperature``; old_stats: teacher_old summary (B, T) for the mask; instance_weights: (B,).
    """
    if not 0.0 <= kd_weight <= 1.0:
        raise CompatlmError(f"kd_weight must be between 0 and 1, found {kd_weight}")
    if student_logits.shape[:2] != labels.shape:
        raise CompatlmError(
            f"student logits {tuple(student_logits.shape)} do not match labels "
            f"{tuple(labels.shape)}; expected (B, T, V) and (B, T)"
        )
    valid = valid_positions(labels, ignore_index)  # (B, T)
    n_tokens = int(valid.sum())

    # CE is cheap next to the forward pass, so it is always reported; it only carries gradient
    # when it is part of the objective.
    if kd_weight < 1.0:
        ce = lm_loss(student_logits, labels, ignore_index)
    else:
        with torch.no_grad():
            ce = lm_loss(student_logits, labels, ignore_index)

    if kd_weight == 0.0:
        # Exactly plain fine-tuning: no teacher is touched (they may even be placeholders).
        zero = torch.zeros((), device=student_logits.device)
        return LossOutput(loss=ce, kd=zero, ce=ce, n_tokens=n_tokens, n_old_tokens=0)

    token_mask = compute_mask(mask, student_logits, labels, old_stats, ignore_index=ignore_index)
    if instance_weights is not None and instance_weights.shape != labels.shape[:1]:
        raise CompatlmError(
            f"instance_weights must have shape (B,) = {tuple(labels.shape[:1])}, "
            f"found {tuple(instance_weights.shape)}"
        )
    kl_sum = _masked_kl_sum(
        student_logits, old, new, token_mask, valid, temperature, instance_weights
    )
    kd = kl_sum / max(n_tokens, 1)
    if t_squared:
        # Hinton et al. (2015): soft-target gradients shrink as 1/T²; T² restores their scale.
        kd = kd * temperature**2
    loss = kd if kd_weight == 1.0 else kd_weight * kd + (1.0 - kd_weight) * ce
    return LossOutput(
        loss=loss, kd=kd, ce=ce, n_tokens=n_tokens, n_old_tokens=int(token_mask.sum())
    )


def masked_kd_loss(
    student_logits: Tensor,
    old_logits: Tensor,
    new_logits: Tensor,
    labels: Tensor,
    *,
    mask: MaskName | str = "student_wrong",
    temperature: float = 2.0,
    ignore_index: int = -100,
) -> Tensor:
    """MUSCLE's masked distillation loss from full logits (B, T, V); labels (B, T) -> scalar.

    Mean over valid tokens of KL(σ(z_teacher / T) ‖ σ(z_student / T)), teacher = old where the
    mask is 1 else new; no T² factor; 0.0 when no token is valid.
    """
    old_stats = OldStats.from_logits(old_logits, labels, ignore_index)
    return compat_loss(
        student_logits,
        labels,
        old=old_logits,
        new=new_logits,
        old_stats=old_stats,
        mask=mask,
        temperature=temperature,
        kd_weight=1.0,
        ignore_index=ignore_index,
    ).loss
