"""``train_compat``: the MUSCLE compatibility adapter (Echterhoff et al., arXiv 2407.09435, §4).

The student is a LoRA on the NEW base initialised as a copy of the new task adapter (paper,
A.1). It is trained by token-level distillation: where the mask (default ``student_wrong``:
the student's current argmax misses the label) is set it imitates teacher_old (old base + old
task adapter), elsewhere teacher_new (new base + new task adapter); see
:func:`compatlm.train.losses.compat_loss`. One PeftModel holds the new base once with two
adapters, "student" (trainable) and "teacher_new" (frozen). teacher_old runs live or comes from
the teacher cache (:mod:`compatlm.train.cache`), in which case the old base is never loaded
during training.

Distilling token distributions needs one vocabulary: the old and new tokenizers must be
identical, or a :class:`~compatlm.errors.CompatlmError` says so.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.models import load_model, load_tokenizer, preflight, require_same_tokenizer
from compatlm.spec import ModelSpec
from compatlm.train import zero
from compatlm.train.cache import TeacherCache, build_teacher_cache
from compatlm.train.checkpoint import model_card, peft_saver, start_run
from compatlm.train.config import TrainCompatConfig
from compatlm.train.data import Collator, Features, encode_examples, load_task, split_train_val
from compatlm.train.loop import run_training
from compatlm.train.sharding import is_sharded, make_accelerator
from compatlm.train.task import finish_card, runtime_for
from compatlm.train.teachers import (
    STUDENT,
    TEACHER_NEW,
    AdapterTeacher,
    CachedTeacher,
    LiveOldTeacher,
    compat_step,
)

log = logging.getLogger(__name__)

CACHE_DIR = "teacher_cache"
NEW_CACHE_DIR = "teacher_new_cache"


def _task_spec(text: str, role: str) -> ModelSpec:
    spec = ModelSpec.parse(text)
    if spec.adapter is None:
        raise CompatlmError(
            f"{role}: {text!r} names no adapter; expected the {role} task model as"
            f" base+adapter (e.g. runs/{role}_base+runs/{role}_task/adapter)"
        )
    return spec


def load_student(
    new: ModelSpec, runtime: RuntimeConfig, *, with_teacher: bool = True
) -> tuple[Any, Any]:
    """New base + new adapter twice: "student" (trainable copy) and "teacher_new" (frozen;
    not loaded when teacher_new comes from a cache)."""
    loaded = load_model(new, trainable=True, runtime=runtime, adapter_name=STUDENT)
    model = loaded.model
    if with_teacher:
        model.load_adapter(new.adapter, adapter_name=TEACHER_NEW, is_trainable=False)
    model.set_adapter(STUDENT)
    return model, loaded.tokenizer


def compat_features(cfg: TrainCompatConfig, tokenizer: Any) -> tuple[list[Features], str, Any]:
    task = load_task(cfg.task)
    feats = encode_examples(
        task.examples,
        tokenizer,
        cfg.data,
        mask_prompt=cfg.mask_prompt,
        chat_template=task.chat_template,
        name=task.name,
    )
    return feats, task.name, task


def cache_teacher(
    cfg: TrainCompatConfig, out_dir: str | Path, *, overwrite: bool = False, teacher: str = "old"
) -> Path:
    """``compatlm cache-teacher``: build the cache of teacher_old (or teacher_new) for ``cfg``'s
    training data."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise CompatlmError(
            f"--out {out_dir}: directory is not empty; pass --overwrite to replace it"
        )
    old, new = _task_spec(cfg.old, "old"), _task_spec(cfg.new, "new")
    tok = load_tokenizer(new, cfg.runtime)
    require_same_tokenizer(load_tokenizer(old, cfg.runtime), tok, why="token-level distillation")
    feats, _, _ = compat_features(cfg, tok)
    spec = old if teacher == "old" else new
    return build_teacher_cache(spec, feats, tok, out_dir, cfg.topk, cfg.temperature, cfg.runtime)


def train_compat(
    cfg: TrainCompatConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
) -> Path:
    """Train the compatibility adapter; returns ``out/adapter`` (load it on the new base)."""
    from accelerate.utils import set_seed

    old, new = _task_spec(cfg.old, "old"), _task_spec(cfg.new, "new")
    # Cheap checks first (specs, tokenizers, data), so a mistake leaves no half-made run directory.
    preflight(old, cfg.runtime)
    preflight(new, cfg.runtime)
    tok = load_tokenizer(new, cfg.runtime)
    require_same_tokenizer(load_tokenizer(old, cfg.runtime), tok, why="token-level distillation")
    feats, task_name, task = compat_features(cfg, tok)
    train, val = split_train_val(feats, cfg.val_fraction, cfg.optim.seed)
    acc = make_accelerator(cfg.runtime)
    out = start_run(acc, Path(out), cfg, overwrite=overwrite, resume=resume)
    set_seed(cfg.optim.seed)
    runtime = runtime_for(acc, cfg.runtime)
    with_teacher = cfg.kd_weight > 0 and cfg.teacher_new == "live"
    model, _ = load_student(new, runtime, with_teacher=with_teacher)
    ids = [f.example_id for f in feats]
    student_vocab = int(zero.full_shape(model.get_output_embeddings().weight)[0])

    teacher_new = teacher_old = None
    vocab = None
    if cfg.kd_weight > 0:

        def cached(spec: ModelSpec, given: str | None, default: str) -> CachedTeacher:
            cache_dir = Path(given) if given else out / default
            # The main process builds a missing cache (the teacher's base is loaded only for
            # this); every process passes the barrier, whatever it saw on disk, or they desync.
            if acc.is_main_process and not (cache_dir / "index.json").exists():
                with zero.whole_models(acc):
                    build_teacher_cache(
                        spec, feats, tok, cache_dir, cfg.topk, cfg.temperature, runtime
                    )
                gc.collect()
            acc.wait_for_everyone()
            cache = TeacherCache.open(
                cache_dir,
                teacher=spec,
                tokenizer=tok,
                k=cfg.topk,
                temperature=cfg.temperature,
                examples=feats,
            )
            return CachedTeacher(cache, ids)

        if cfg.teacher_new == "cache":
            teacher_new = cached(new, cfg.new_cache_dir, NEW_CACHE_DIR)
        else:
            teacher_new = AdapterTeacher(model, sharded=is_sharded(acc))
        if cfg.teacher_old == "cache":
            teacher_old = cached(old, cfg.cache_dir, CACHE_DIR)
            old_vocab = teacher_old.cache.vocab_size
        else:
            with zero.whole_models(acc):
                old_model = load_model(old, runtime=runtime).model
            teacher_old = LiveOldTeacher(old_model)
            old_vocab = int(old_model.get_output_embeddings().weight.shape[0])
        vocab = min(student_vocab, old_vocab) if old_vocab != student_vocab else None
    else:
        log.warning("kd_weight=0: plain fine-tuning of the student; the teachers are not used")

    if acc.is_main_process:
        log.info("task %s: %d training and %d validation examples", task_name, len(train), len(val))
    title = f"compatlm compatibility adapter (MUSCLE): {task_name} on {new.base}"
    lines = [
        "Trained with `compatlm train compat`: masked token-level distillation from the old and"
        " new task models (MUSCLE, arXiv 2407.09435). Load it on the NEW base.",
        "",
        f"- new (student base, teacher_new): `{new.format()}`",
        f"- old (teacher_old, {cfg.teacher_old}): `{old.format()}`; teacher_new {cfg.teacher_new}",
        f"- mask `{cfg.mask}`, temperature {cfg.temperature}, kd_weight {cfg.kd_weight}",
        f"- task: `{task_name}` ({task.kind}, {len(train)} train / {len(val)} validation)",
    ]
    result = run_training(
        accelerator=acc,
        model=model,
        train_feats=train,
        val_feats=val,
        collate=Collator(tok.pad_token_id, ids),
        step_fn=compat_step(cfg, teacher_new, teacher_old, vocab),
        save_adapter=peft_saver(STUDENT, model_card(title, cfg, lines, [])),
        optim=cfg.optim,
        out=out,
        select_by=cfg.select_by,
        resume=resume,
        progress=cfg.runtime.progress,
    )
    finish_card(acc, result, model_card(title, cfg, lines, result.history))
    return result.adapter_dir
