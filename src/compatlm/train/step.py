"""The step functions the training loop calls: ``step(model, batch) -> LossOutput``.

- :func:`ce_step` — plain fine-tuning (``train task``): token-mean cross entropy on the
  labelled tokens.
- :func:`compat_step` — one MUSCLE step (Echterhoff et al., arXiv 2407.09435, §4): the teachers'
  forwards (no grad) first, then the student's, then
  :func:`~compatlm.train.losses.compat_loss` with the mask recomputed from the current student
  logits. The recipe binds its config and :class:`~compatlm.train.teachers.Teachers` with
  ``functools.partial``. ``kd_weight = 0`` touches no teacher at all, so it is exactly
  :func:`ce_step` (the ``continue_ce`` control); mask ``new_only`` runs teacher_new only (the
  ``kd_new`` control).
- The focal variant (PCT, Yan et al., CVPR 2021; ``cfg.focal``): :func:`focal_instance_weights`
  weighs each instance by α + β·1[teacher_old right on every answer token] (:func:`old_correct`).

Everything runs at the K labelled positions only (:func:`compatlm.train.forward.
labelled_columns`). Every step also reports the token counts of :mod:`compatlm.train.diagnostics`.
Shapes: batch tensors (B, T); logits (B, K, V); labels and masks (B, K).
"""

from __future__ import annotations

import torch
from torch import Tensor

from compatlm.train.config import FocalSettings, TrainCompatConfig
from compatlm.train.data import IGNORE
from compatlm.train.diagnostics import token_counts
from compatlm.train.forward import Batch, forward_logits, labelled_columns, take_columns
from compatlm.train.losses import LossOutput, Teacher, compat_loss, focal_weights, lm_loss
from compatlm.train.masks import OldStats
from compatlm.train.teachers import Teachers
from compatlm.train.topk import TopK


def ce_step(model: torch.nn.Module, batch: Batch) -> LossOutput:
    """Plain fine-tuning: token-mean cross entropy on the labelled tokens."""
    labels = batch["labels"]  # (B, T)
    keep = labelled_columns(labels)
    logits = forward_logits(model, batch, keep)  # (B, K, V)
    kept = labels if keep is None else labels[:, keep]  # (B, K)
    ce = lm_loss(logits, kept)
    zero = torch.zeros((), device=ce.device)
    n = int((labels != IGNORE).sum())
    counts = token_counts(logits, kept)
    return LossOutput(loss=ce, kd=zero, ce=ce.detach(), n_tokens=n, n_old_tokens=0, counts=counts)


def compat_step(
    model: torch.nn.Module, batch: Batch, *, cfg: TrainCompatConfig, teachers: Teachers
) -> LossOutput:
    """One MUSCLE training (or validation) step of the student ``model`` on ``batch``."""
    if cfg.kd_weight == 0:
        return ce_step(model, batch)
    assert teachers.new is not None, "kd_weight > 0 needs teacher_new"
    vocab = teachers.vocab
    keep = labelled_columns(batch["labels"])
    labels = take_columns(batch["labels"], keep)  # (B, K)
    # Teachers first: their adapter switch must not happen while the student's graph is live.
    new = _cut(teachers.new(batch, keep)[0], vocab)  # (B, K, V) logits or TopK
    if teachers.old is not None:
        old, old_stats = teachers.old(batch, keep)
        old = _cut(old, vocab)
        assert old_stats is not None, "teacher_old must report its OldStats"
    else:  # the mask sends nothing to teacher_old: it is never looked at
        old, old_stats = new, _no_old(labels)
    weights = None
    if cfg.focal is not None:
        answer = take_columns(batch["answer_mask"], keep)  # (B, K)
        weights = focal_instance_weights(old_stats, labels, answer, cfg.focal)  # (B,)
    student_logits = _cut(forward_logits(model, batch, keep), vocab)  # (B, K, V)
    out = compat_loss(
        student_logits,
        labels,
        old=old,
        new=new,
        old_stats=old_stats,
        mask=cfg.mask,
        temperature=cfg.temperature,
        kd_weight=cfg.kd_weight,
        t_squared=cfg.t_squared,
        instance_weights=weights,
    )
    out.counts = token_counts(
        student_logits,
        labels,
        old_argmax=old_stats.argmax if teachers.old is not None else None,
        new_argmax=_argmax(new),
    )
    return out


def focal_instance_weights(
    old_stats: OldStats, labels: Tensor, answer_mask: Tensor, focal: FocalSettings
) -> Tensor:
    """(B,) PCT weights α + β·1[teacher_old correct]; labels, answer_mask: (B, K)."""
    correct = old_correct(old_stats.argmax, labels, answer_mask)  # (B,)
    return focal_weights(correct, focal.alpha, focal.beta)


def old_correct(argmax: Tensor, labels: Tensor, answer_mask: Tensor) -> Tensor:
    """(B,) bool: teacher_old's greedy token equals the label on every answer token.

    argmax, labels: (B, T); answer_mask: (B, T) bool. An instance without answer tokens is not
    "correct" (there is nothing the old model got right).
    """
    hit = (argmax == labels) | ~answer_mask  # (B, T)
    return hit.all(dim=-1) & answer_mask.any(dim=-1)


def _cut(x: Teacher, vocab: int | None) -> Teacher:
    # Models that share a tokenizer may still pad their embedding matrices differently; tokens
    # past the common size are never labels, so both sides drop them.
    if vocab is None or not isinstance(x, Tensor) or x.shape[-1] == vocab:
        return x
    return x[..., :vocab]


def _argmax(x: Teacher) -> Tensor:
    """(B, T) top token of a teacher: full logits, or a TopK (most probable first)."""
    return x.ids[..., 0] if isinstance(x, TopK) else x.argmax(dim=-1)


def _no_old(labels: Tensor) -> OldStats:
    """Stand-in teacher_old summary for masks that never read it (``new_only``): an argmax
    that matches no label."""
    zeros = torch.zeros(labels.shape, device=labels.device)
    return OldStats(argmax=torch.full_like(labels, -1), label_logprob=zeros)
