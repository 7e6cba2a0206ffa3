"""The two teachers of MUSCLE (arXiv 2407.09435, §4) and the compatibility training step.

- teacher_new (M_v2 task model) shares the student's base: it is a second, frozen adapter on the
  student's own PeftModel, so the new base is held once. Its forward switches the active adapter
  for one no-grad pass and switches back. Optionally it is cached like teacher_old, which saves
  that forward pass (a quarter to a third of a training step).
- teacher_old (M_v1 task model) sits on the old base: either a live frozen model
  (:class:`LiveOldTeacher`, exact full logits) or the precomputed top-k cache
  (:class:`CachedTeacher`), so the old base need not be in memory during training.

:func:`compat_step` builds the ``step_fn`` the shared loop calls: teacher forwards (no grad)
first, then the student forward, then :func:`~compatlm.train.losses.compat_loss` with the mask
recomputed from the current student logits. ``kd_weight = 0`` touches no teacher at all, so it
is exactly plain fine-tuning of the student.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from compatlm.train.cache import TeacherCache
from compatlm.train.config import TrainCompatConfig
from compatlm.train.losses import LossOutput, Teacher, compat_loss, focal_weights
from compatlm.train.masks import OldStats
from compatlm.train.sharding import reshard
from compatlm.train.task import ce_step, forward_logits, labelled_columns

STUDENT = "student"
TEACHER_NEW = "teacher_new"


def _config_dropout(model: Any) -> bool:
    """Whether the base config declares a non-zero dropout rate (functional dropout in model
    code keys on ``module.training``, so only a full eval() switches it off)."""
    config = getattr(model, "config", None)
    configs = [config, getattr(config, "text_config", None)]
    for cfg in filter(None, configs):
        for key, value in cfg.to_dict().items():
            if ("dropout" in key or "pdrop" in key) and isinstance(value, float) and value > 0:
                return True
    return False


class AdapterTeacher:
    """teacher_new: adapter ``name`` of the student's PeftModel, run frozen and without dropout.

    The LoRA layers and dropout modules are collected once: switching the adapter and the
    dropout mode per step is then a loop over those few modules instead of two walks over the
    whole module tree (which costs as much as the forward itself on small models).
    """

    def __init__(
        self,
        peft_model: Any,
        name: str = TEACHER_NEW,
        student: str = STUDENT,
        *,
        sharded: bool = False,
    ) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.model, self.name, self.student = peft_model, name, student
        self.sharded = sharded
        self.layers = [m for m in peft_model.modules() if isinstance(m, BaseTunerLayer)]
        # modules_to_save live outside the LoRA layers: then only peft's own switch is right.
        configs = peft_model.peft_config
        self.whole_model_switch = any(getattr(configs[a], "modules_to_save", None) for a in configs)
        self.full_eval = _config_dropout(peft_model.get_base_model())
        self.dropouts = [
            m for m in peft_model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0
        ]

    def _switch(self, name: str, frozen: bool) -> None:
        # inference_mode=True keeps every adapter frozen while teacher_new is active;
        # switching back makes the student (and only it) trainable again.
        if self.sharded:
            # FSDP2 leaves the root's weights gathered after a no-grad forward; requires_grad
            # must be set on the sharded parameters, which a later all-gather copies it from.
            reshard(self.model)
        if self.whole_model_switch:
            self.model.set_adapter(name, inference_mode=frozen)
            return
        for layer in self.layers:
            layer.set_adapter(name, inference_mode=frozen)

    def __call__(
        self, batch: dict[str, Tensor], keep: Tensor | None = None
    ) -> tuple[Teacher, None]:
        return self.logits(batch, keep), None

    def logits(self, batch: dict[str, Tensor], keep: Tensor | None = None) -> Tensor:
        """(B, T, V) teacher_new logits, or (B, K, V) at the positions ``keep``; no graph."""
        m = self.model
        was_training = m.training
        modes = [d.training for d in self.dropouts]
        self._switch(self.name, frozen=True)
        if self.full_eval:
            m.eval()
        else:
            for d in self.dropouts:
                d.training = False
        try:
            with torch.no_grad():
                return forward_logits(m, batch, keep)
        finally:
            self._switch(self.student, frozen=False)
            if self.full_eval:
                m.train(was_training)
            else:
                for d, mode in zip(self.dropouts, modes, strict=True):
                    d.training = mode


class LiveOldTeacher:
    """teacher_old as a frozen model in memory: exact full-vocabulary logits."""

    def __init__(self, model: Any) -> None:
        self.model = model.eval()

    def __call__(
        self, batch: dict[str, Tensor], keep: Tensor | None = None
    ) -> tuple[Teacher, OldStats]:
        with torch.no_grad():
            logits = forward_logits(self.model, batch, keep)  # (B, K, V)
            return logits, OldStats.from_logits(logits, take_columns(batch["labels"], keep))


class CachedTeacher:
    """A teacher read from a :class:`TeacherCache` (top-k at the training temperature); used
    for teacher_old, and for teacher_new when that is cached too (its stats are then unused)."""

    def __init__(self, cache: TeacherCache, example_ids: Sequence[str]) -> None:
        self.cache, self.example_ids = cache, list(example_ids)

    def __call__(
        self, batch: dict[str, Tensor], keep: Tensor | None = None
    ) -> tuple[Teacher, OldStats]:
        ids = [self.example_ids[i] for i in batch["index"].tolist()]
        top, stats = self.cache.lookup(ids, batch["labels"])  # (B, T, k), (B, T)
        if keep is None:
            return top, stats
        columns = (slice(None), keep)
        return top.index(columns), OldStats(stats.argmax[columns], stats.label_logprob[columns])


def take_columns(x: Tensor, keep: Tensor | None) -> Tensor:
    """``x[:, keep]`` for a (B, T, ...) tensor; ``x`` itself when ``keep`` is None."""
    return x if keep is None else x[:, keep]


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


def compat_step(
    cfg: TrainCompatConfig,
    teacher_new: AdapterTeacher | CachedTeacher | None,
    teacher_old: LiveOldTeacher | CachedTeacher | None,
    vocab: int | None = None,
):
    """The loop's ``step_fn(model, batch) -> LossOutput`` for MUSCLE training."""
    use_teachers = cfg.kd_weight > 0

    def step(model: Any, batch: dict[str, Tensor]) -> LossOutput:
        if not use_teachers:
            return ce_step(model, batch)
        assert teacher_new is not None and teacher_old is not None
        # Everything below lives at the K labelled positions only (see labelled_columns).
        keep = labelled_columns(batch["labels"])
        labels = take_columns(batch["labels"], keep)  # (B, K)
        # Teachers first: their adapter switch must not happen while the student's graph is live.
        new = _cut(teacher_new(batch, keep)[0], vocab)  # (B, K, V) logits or TopK
        old, old_stats = teacher_old(batch, keep)
        old = _cut(old, vocab)
        weights = None
        if cfg.focal is not None:
            answer = take_columns(batch["answer_mask"], keep)  # (B, K)
            correct = old_correct(old_stats.argmax, labels, answer)  # (B,)
            weights = focal_weights(correct, cfg.focal.alpha, cfg.focal.beta)
        student_logits = _cut(forward_logits(model, batch, keep), vocab)  # (B, K, V)
        return compat_loss(
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

    return step
