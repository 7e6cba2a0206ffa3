"""The two teachers of MUSCLE (Echterhoff et al., arXiv 2407.09435, §4) and their set-up.

- teacher_new (M_v2 task model) shares the student's base: it is a second, frozen adapter on the
  student's own PeftModel (:class:`AdapterTeacher`), so the new base is held once. Its forward
  switches the active adapter for one no-grad pass and switches back. Optionally it is cached
  like teacher_old, which saves that forward pass (a quarter to a third of a training step).
- teacher_old (M_v1 task model) sits on the old base: either a live frozen model
  (:class:`LiveOldTeacher`, exact full logits) or the precomputed top-k cache
  (:class:`CachedTeacher`, :mod:`compatlm.train.cache`), so the old base need not be in memory
  during training.

:func:`set_up_teachers` turns a compat config into :class:`Teachers`, what
:func:`compatlm.train.step.compat_step` distils from: no teacher at all for ``kd_weight = 0``
(the ``continue_ce`` control), teacher_new only for mask ``new_only`` (the ``kd_new`` control;
the old base is then never loaded), both otherwise. A missing cache is built first, by the main
process, behind a barrier every process passes.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from compatlm.errors import CompatlmError
from compatlm.models import load_model
from compatlm.spec import ModelSpec
from compatlm.train.cache import TeacherCache, build_teacher_cache
from compatlm.train.config import TrainCompatConfig
from compatlm.train.data import Features
from compatlm.train.distributed import zero
from compatlm.train.distributed.sharding import is_sharded, reshard, runtime_for
from compatlm.train.forward import Batch, forward_logits, take_columns
from compatlm.train.losses import Teacher
from compatlm.train.masks import NO_OLD_MASKS, OldStats
from compatlm.train.student import STUDENT, TEACHER_NEW

if TYPE_CHECKING:
    from accelerate import Accelerator
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

CACHE_DIR = "teacher_cache"
NEW_CACHE_DIR = "teacher_new_cache"


class TeacherFn(Protocol):
    """A teacher: its logits (or TopK) at the positions ``keep`` (K,), and, for teacher_old,
    the summary the masks read; no graph."""

    def __call__(
        self, batch: Batch, keep: Tensor | None = None
    ) -> tuple[Teacher, OldStats | None]: ...


@dataclass(frozen=True)
class Teachers:
    """What a compat step distils from.

    new: None only when ``kd_weight = 0`` (then no teacher is used). old: None also when the
    mask never reads it (``new_only``). vocab: the common vocabulary size when the student's and
    teacher_old's embedding matrices differ in size (both sides are cut to it), else None.
    """

    new: TeacherFn | None = None
    old: TeacherFn | None = None
    vocab: int | None = None


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

    def __call__(self, batch: Batch, keep: Tensor | None = None) -> tuple[Teacher, None]:
        return self.logits(batch, keep), None

    def logits(self, batch: Batch, keep: Tensor | None = None) -> Tensor:
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

    def __call__(self, batch: Batch, keep: Tensor | None = None) -> tuple[Teacher, OldStats]:
        with torch.no_grad():
            logits = forward_logits(self.model, batch, keep)  # (B, K, V)
            return logits, OldStats.from_logits(logits, take_columns(batch["labels"], keep))


class CachedTeacher:
    """A teacher read from a :class:`TeacherCache` (top-k at the training temperature); used
    for teacher_old, and for teacher_new when that is cached too (its stats are then unused)."""

    def __init__(self, cache: TeacherCache, example_ids: Sequence[str]) -> None:
        self.cache, self.example_ids = cache, list(example_ids)

    def __call__(self, batch: Batch, keep: Tensor | None = None) -> tuple[Teacher, OldStats]:
        ids = [self.example_ids[i] for i in batch["index"].tolist()]
        top, stats = self.cache.lookup(ids, batch["labels"])  # (B, T, k), (B, T)
        if keep is None:
            return top, stats
        columns = (slice(None), keep)
        return top.index(columns), OldStats(stats.argmax[columns], stats.label_logprob[columns])


# --------------------------------------------------------------------------- set-up


def task_model_specs(cfg: TrainCompatConfig) -> tuple[ModelSpec, ModelSpec]:
    """The (old, new) task models of a compat config; each must name its adapter."""
    specs = []
    for role, spec in (("old", cfg.old), ("new", cfg.new)):
        if spec.adapter is None:
            raise CompatlmError(
                f"{role}: {spec.format()!r} names no adapter; expected the {role} task model as"
                f" base+adapter (e.g. runs/{role}_base+runs/{role}_task/adapter)"
            )
        specs.append(spec)
    return specs[0], specs[1]


def open_cached_teacher(
    acc: Accelerator,
    cfg: TrainCompatConfig,
    spec: ModelSpec,
    cache_dir: Path,
    feats: Sequence[Features],
    tokenizer: PreTrainedTokenizerBase,
) -> CachedTeacher:
    """The cache of ``spec`` over ``feats`` in ``cache_dir``, built first if missing.

    The main process builds a missing cache (the teacher's base is loaded only for this); every
    process passes the barrier, whatever it saw on disk, or they desync.
    """
    if acc.is_main_process and not (cache_dir / "index.json").exists():
        runtime = runtime_for(acc, cfg.runtime)
        with zero.whole_models(acc):
            build_teacher_cache(
                spec, feats, tokenizer, cache_dir, cfg.topk, cfg.temperature, runtime
            )
        gc.collect()
    acc.wait_for_everyone()
    cache = TeacherCache.open(
        cache_dir,
        teacher=spec,
        tokenizer=tokenizer,
        k=cfg.topk,
        temperature=cfg.temperature,
        examples=feats,
    )
    return CachedTeacher(cache, [f.example_id for f in feats])


def set_up_teachers(
    cfg: TrainCompatConfig,
    acc: Accelerator,
    student: PeftModel,
    feats: Sequence[Features],
    tokenizer: PreTrainedTokenizerBase,
    out: Path,
) -> Teachers:
    """teacher_new and teacher_old for ``cfg`` (see the module docstring); ``student`` is the
    PeftModel of :func:`compatlm.train.student.load_student`, ``feats`` every training and
    validation example (a cache covers both), ``out`` the run directory (default cache place)."""
    if cfg.kd_weight == 0:
        log.warning("kd_weight=0: plain fine-tuning of the student; the teachers are not used")
        return Teachers()
    old, new = task_model_specs(cfg)
    student_vocab = int(zero.full_shape(student.get_output_embeddings().weight)[0])

    teacher_new: TeacherFn
    if cfg.teacher_new == "cache":
        new_dir = Path(cfg.new_cache_dir) if cfg.new_cache_dir else out / NEW_CACHE_DIR
        teacher_new = open_cached_teacher(acc, cfg, new, new_dir, feats, tokenizer)
    else:
        teacher_new = AdapterTeacher(student, sharded=is_sharded(acc))

    teacher_old: TeacherFn | None = None
    if cfg.mask in NO_OLD_MASKS:  # kd_new: no token follows teacher_old, never load it
        old_vocab = student_vocab
    elif cfg.teacher_old == "cache":
        old_dir = Path(cfg.cache_dir) if cfg.cache_dir else out / CACHE_DIR
        cached = open_cached_teacher(acc, cfg, old, old_dir, feats, tokenizer)
        teacher_old, old_vocab = cached, cached.cache.vocab_size
    else:
        with zero.whole_models(acc):
            old_model = load_model(old, runtime=runtime_for(acc, cfg.runtime)).model
        teacher_old = LiveOldTeacher(old_model)
        old_vocab = int(old_model.get_output_embeddings().weight.shape[0])
    vocab = min(student_vocab, old_vocab) if old_vocab != student_vocab else None
    return Teachers(new=teacher_new, old=teacher_old, vocab=vocab)
