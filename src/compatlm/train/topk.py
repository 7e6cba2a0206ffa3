"""Teachers known by their top-k, and the per-token KL divergences used for distillation.

MUSCLE (arXiv 2407.09435, §4) distils the student from two teachers per token with
KL(softmax(z_teacher / T) ‖ softmax(z_student / T)). teacher_old sits on another base model, so
compatlm can precompute it once into a cache instead of keeping that base in memory; a full
(B, T, V) float tensor per batch is too large to store, so the cache keeps the k most probable
tokens plus the mass of everything else (:class:`TopK`).

The KL against a top-k teacher is computed over k + 1 buckets (the teacher's top-k tokens and
one "rest" bucket holding all other tokens, for both distributions). Merging outcomes can only
lose information, so by the data-processing inequality this bucketed KL is a lower bound of the
full KL, and equals it when k = V.

Shapes: logits (B, T, V); per-token outputs (B, T). All math is done in float32 (bf16 logits
are upcast) because the rest mass is a small difference of near-1 numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from compatlm.errors import CompatlmError


@dataclass(frozen=True)
class TopK:
    """A teacher distribution at one temperature, summarised by its k most probable tokens.

    ids: LongTensor (B, T, k) — token ids of the k highest logits (most probable first).
    logprobs: FloatTensor (B, T, k) — log softmax(z / T) at those ids.
    rest_logmass: FloatTensor (B, T) — log of the probability outside the top-k at the same
    temperature; ``-inf`` when k = V.

    The temperature is baked in: whoever builds a TopK (the teacher cache) must use the
    temperature the loss will use.
    """

    ids: Tensor
    logprobs: Tensor
    rest_logmass: Tensor

    @property
    def k(self) -> int:
        return int(self.ids.shape[-1])

    def detach(self) -> TopK:
        return TopK(self.ids, self.logprobs.detach(), self.rest_logmass.detach())

    def index(self, idx: tuple) -> TopK:
        """The same positions of all three fields: ``idx`` indexes the leading (B, T) dims,
        e.g. ``(slice(None), keep)`` for columns or ``(None, rows, cols)`` for a (1, N) pick."""
        return TopK(self.ids[idx], self.logprobs[idx], self.rest_logmass[idx])


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise CompatlmError(f"distillation temperature must be > 0, found {temperature}")


def _complement_logsumexp(logp: Tensor, ids: Tensor) -> Tensor:
    """(B, T): logsumexp of ``logp`` (B, T, V) over the tokens NOT in ``ids`` (B, T, k).

    Computed as a masked logsumexp rather than log1p(-sum(top-k probs)): when the top-k hold
    almost all the mass that sum rounds to 1 in float32 and log1p(-1) = -inf, while the
    complement's logsumexp stays accurate (e.g. log(2) - 100 for logits [100, 0, 0], k = 1).
    """
    in_top = torch.zeros_like(logp, dtype=torch.bool).scatter_(-1, ids, True)  # (B, T, V)
    # With k = V the complement is empty: logsumexp of all -inf is -inf (the right answer), and
    # masked_fill's backward zeroes the NaN gradient that an all -inf logsumexp produces.
    return logp.masked_fill(in_top, float("-inf")).logsumexp(dim=-1)


def topk_from_logits(logits: Tensor, k: int, temperature: float) -> TopK:
    """Summarise logits (B, T, V) by their top-k at ``temperature`` (1 <= k <= V)."""
    _check_temperature(temperature)
    vocab = int(logits.shape[-1])
    if not 1 <= k <= vocab:
        raise CompatlmError(
            f"top-k size must be between 1 and the vocabulary size {vocab}, found {k}"
        )
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, T, V)
    # Ranking by logits or by log-probs is the same for T > 0; take it from logp (float32).
    top_logprobs, ids = logp.topk(k, dim=-1)  # (B, T, k) each
    return TopK(ids=ids, logprobs=top_logprobs, rest_logmass=_complement_logsumexp(logp, ids))


def _kl_terms(teacher_logp: Tensor, student_logp: Tensor) -> Tensor:
    """Elementwise p_t · (log p_t − log p_s), with the convention 0 · log 0 = 0.

    Without the guard a teacher bucket of zero mass (log p_t = -inf, e.g. the rest bucket when
    k = V) gives 0 · (-inf - x) = NaN. torch.where sends a zero gradient to the unused branch.
    """
    has_mass = teacher_logp > float("-inf")
    terms = teacher_logp.exp() * (teacher_logp - student_logp)
    return torch.where(has_mass, terms, torch.zeros_like(terms))


def per_token_kl_full(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """(B, T): KL(softmax(z_teacher / T) ‖ softmax(z_student / T)) from full logits (B, T, V).

    Gradient flows into whichever input requires it; callers detach the teacher.
    """
    _check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise CompatlmError(
            f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
            f"{tuple(teacher_logits.shape)} (do the models share a vocabulary?)"
        )
    s_logp = torch.log_softmax(student_logits.float() / temperature, dim=-1)  # (B, T, V)
    t_logp = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)  # (B, T, V)
    return _kl_terms(t_logp, s_logp).sum(dim=-1)


def per_token_kl_topk(student_logits: Tensor, teacher: TopK, temperature: float) -> Tensor:
    """(B, T): KL over k + 1 buckets (teacher's top-k tokens + rest) of teacher ‖ student.

    student_logits: (B, T, V), scaled here by ``1 / temperature``; the teacher's log-probs were
    computed at ``temperature`` when the TopK was built. Lower bound of the full KL; equal at k = V.
    """
    _check_temperature(temperature)
    if teacher.ids.shape[:2] != student_logits.shape[:2] or teacher.k > student_logits.shape[-1]:
        raise CompatlmError(
            f"top-k teacher ids {tuple(teacher.ids.shape)} do not fit student logits "
            f"{tuple(student_logits.shape)}; expected (B, T, k) with k <= V"
        )
    s_logp = torch.log_softmax(student_logits.float() / temperature, dim=-1)  # (B, T, V)
    s_top = s_logp.gather(-1, teacher.ids)  # (B, T, k)
    s_rest = _complement_logsumexp(s_logp, teacher.ids)  # (B, T)
    top_terms = _kl_terms(teacher.logprobs.float(), s_top).sum(dim=-1)  # (B, T)
    rest_terms = _kl_terms(teacher.rest_logmass.float(), s_rest)  # (B, T)
    return top_terms + rest_terms
