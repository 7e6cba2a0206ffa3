"""``compatlm train compat``: the MUSCLE compatibility adapter (Echterhoff et al., arXiv
2407.09435, §4), and ``compatlm cache-teacher``, which precomputes a teacher for it.

The student is a LoRA on the NEW base initialised as a copy of the new task adapter (paper,
A.1; :func:`compatlm.train.student.load_student`). It is trained by token-level distillation
(:func:`compatlm.train.step.compat_step`): where the mask (default ``student_wrong``: the
student's current argmax misses the label) is set it imitates teacher_old (old base + old task
adapter), elsewhere teacher_new (new base + new task adapter). teacher_new is a frozen second
adapter on the student's own model; teacher_old runs live or comes from the teacher cache, in
which case the old base is never loaded during training (:mod:`compatlm.train.teachers`).

Distilling token distributions needs one vocabulary: the old and new tokenizers must be
identical, or a :class:`~compatlm.errors.CompatlmError` says so.

Besides the adapter, the run directory gets ``diagnostics.json`` (how many loss tokens follow
teacher_old, and how often the student is wrong where a teacher is right) and ``budget.json``
(steps, tokens, learning-rate schedule, batch order): see :mod:`compatlm.train.diagnostics`.
The same-budget controls ``continue_ce`` (kd_weight = 0) and ``kd_new`` (mask ``new_only``) are
this very recipe with one setting changed (:mod:`compatlm.methods.controls`).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Literal

from compatlm.models import check_lora_head, load_tokenizer, preflight, require_same_tokenizer
from compatlm.rundir import check_out_dir, input_paths
from compatlm.train.cache import build_teacher_cache
from compatlm.train.card import compat_card, finish_card
from compatlm.train.checkpoint import peft_saver, start_run
from compatlm.train.config import TrainCompatConfig, preset_warnings
from compatlm.train.data import Collator, encode_task, split_train_val
from compatlm.train.diagnostics import write_run_records
from compatlm.train.distributed.sharding import make_accelerator, runtime_for
from compatlm.train.loop import run_training
from compatlm.train.step import compat_step
from compatlm.train.student import STUDENT, load_student
from compatlm.train.teachers import set_up_teachers, task_model_specs

log = logging.getLogger(__name__)

# Why a cross-tokenizer update is refused: the method's limitation, not a missing feature.
SHARED_VOCABULARY = (
    "MUSCLE (arXiv 2407.09435) distils the old and new models' next-token distributions"
    " position by position, so it applies only to updates that keep the tokenizer: its"
    " token-level distillation"
)


def train_compat(
    cfg: TrainCompatConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
) -> Path:
    """Train the compatibility adapter; returns ``out/adapter`` (load it on the new base)."""
    from accelerate.utils import set_seed

    old, new = task_model_specs(cfg)
    # Cheap checks first (specs, tokenizers, data), so a mistake leaves no half-made run directory.
    check_lora_head(new, None, cfg.runtime)  # the student continues the new task adapter
    preflight(old, cfg.runtime)
    preflight(new, cfg.runtime)
    tok = load_tokenizer(new, cfg.runtime)
    require_same_tokenizer(load_tokenizer(old, cfg.runtime), tok, why=SHARED_VOCABULARY)
    task, feats = encode_task(cfg.task, tok, cfg.data, mask_prompt=cfg.mask_prompt)
    train, val = split_train_val(feats, cfg.val_fraction, cfg.optim.seed)

    acc = make_accelerator(cfg.runtime)
    warnings = preset_warnings(cfg)
    out = start_run(acc, Path(out), cfg, overwrite=overwrite, resume=resume, warnings=warnings)
    set_seed(cfg.optim.seed)
    live_new = cfg.kd_weight > 0 and cfg.teacher_new == "live"  # else no second adapter
    model, _ = load_student(
        new, runtime_for(acc, cfg.runtime), with_teacher=live_new, init=cfg.student_init
    )
    teachers = set_up_teachers(cfg, acc, model, feats, tok, out)
    if acc.is_main_process:
        log.info("task %s: %d training and %d validation examples", task.name, len(train), len(val))

    card = compat_card(cfg, old, new, task, len(train), len(val))
    result = run_training(
        accelerator=acc,
        model=model,
        train_feats=train,
        val_feats=val,
        collate=Collator(tok.pad_token_id, [f.example_id for f in feats]),
        step_fn=partial(compat_step, cfg=cfg, teachers=teachers),
        save_adapter=peft_saver(STUDENT, card.render([])),
        optim=cfg.optim,
        out=out,
        select_by=cfg.select_by,
        resume=resume,
        progress=cfg.runtime.progress,
    )
    diag = write_run_records(acc, out, cfg, result, n_train=len(train))
    if acc.is_main_process:
        log.info("diagnostics: %s (%s)", diag["verdict"], out / "diagnostics.json")
    card.lines += ["", f"- diagnostics: {diag['verdict']} (diagnostics.json)"]
    card.add_warnings(result.warnings)
    finish_card(acc, result, card)
    return result.adapter_dir


def cache_teacher(
    cfg: TrainCompatConfig,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    teacher: Literal["old", "new"] = "old",
) -> Path:
    """``compatlm cache-teacher``: build the cache of teacher_old (or teacher_new) for
    ``cfg``'s training data."""
    out_dir = Path(out_dir)
    # --overwrite replaces only a teacher cache (its index.json), never an input or a symlink.
    check_out_dir(
        out_dir,
        kind="teacher_cache",
        overwrite=overwrite,
        inputs=input_paths(cfg),
        resumable=False,
        owned_by="index.json",
    )
    old, new = task_model_specs(cfg)
    tok = load_tokenizer(new, cfg.runtime)
    require_same_tokenizer(load_tokenizer(old, cfg.runtime), tok, why=SHARED_VOCABULARY)
    _, feats = encode_task(cfg.task, tok, cfg.data, mask_prompt=cfg.mask_prompt)
    spec = old if teacher == "old" else new
    return build_teacher_cache(spec, feats, tok, out_dir, cfg.topk, cfg.temperature, cfg.runtime)
