"""The training forward pass: logits of a collated batch, only where some row has a label.

Shared by the step functions (:mod:`compatlm.train.step`) and the teachers that run a model
(:mod:`compatlm.train.teachers`), so the student and its teachers are always evaluated at the
same positions. Batch shapes are those of :class:`compatlm.train.data.Collator`: input_ids,
attention_mask, labels, answer_mask (B, T); index (B,).

With the prompt masked from the loss (the default) only a minority of the T positions carry a
label. :func:`labelled_columns` finds the K positions where any row has one, and
:func:`forward_logits` projects only those through the LM head: (B, K, V) logits instead of
(B, T, V) — gigabytes at real vocabulary sizes and context lengths. Losses, masks and
diagnostics never look at a position without a label, so nothing but the cost changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from compatlm.train.data import IGNORE

if TYPE_CHECKING:
    import torch

Batch = dict[str, Tensor]


def labelled_columns(labels: Tensor) -> Tensor | None:
    """(K,) sequence positions where some row has a label, or None when every position has one.

    labels: (B, T). Logits are needed only at these positions (see the module docstring).
    """
    cols = (labels != IGNORE).any(dim=0)  # (T,)
    if bool(cols.all()):
        return None
    return cols.nonzero().squeeze(-1)  # (K,)


def take_columns(x: Tensor, keep: Tensor | None) -> Tensor:
    """``x[:, keep]`` for a (B, T, ...) tensor; ``x`` itself when ``keep`` is None."""
    return x if keep is None else x[:, keep]


def forward_logits(model: torch.nn.Module, batch: Batch, keep: Tensor | None = None) -> Tensor:
    """(B, T, V) logits for a collated batch, or (B, K, V) at the positions ``keep`` (K,).

    No KV cache: training never decodes.
    """
    inputs = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "use_cache": False,
    }
    if keep is None:
        return model(**inputs).logits
    try:
        # transformers' causal LMs project only these positions through the head.
        return model(**inputs, logits_to_keep=keep).logits
    except TypeError:  # a model class without logits_to_keep: project all, then select
        return model(**inputs).logits[:, keep]
