"""``compatlm train task``: a LoRA task adapter on a base model (the task models M_v1, M_v2 of
MUSCLE, arXiv 2407.09435, §4, are such adapters on the old and new base).

The base is frozen; a fresh LoRA (``cfg.lora``) — or the adapter named in ``cfg.base``
(``base+adapter``), to continue training it — learns the autoregressive loss on prompt + answer
(answer tokens only with ``mask_prompt``; :func:`compatlm.train.step.ce_step`). Writes the run
directory: ``config.yaml``, ``env.json``, ``adapter/`` (PEFT, safetensors, with a README.md
model card; loadable as ``ModelSpec("BASE+OUT/adapter")``), ``train_log.jsonl`` and
``checkpoint/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from compatlm.models import check_lora_head, load_tokenizer, preflight
from compatlm.train.card import finish_card, task_card
from compatlm.train.checkpoint import peft_saver, start_run
from compatlm.train.config import TrainTaskConfig, preset_warnings
from compatlm.train.data import Collator, encode_task, split_train_val
from compatlm.train.distributed.sharding import make_accelerator, runtime_for
from compatlm.train.loop import run_training
from compatlm.train.step import ce_step
from compatlm.train.student import adapter_name, build_student

log = logging.getLogger(__name__)


def train_task(
    cfg: TrainTaskConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
) -> Path:
    """Train a task adapter; returns the adapter directory (``out/adapter``)."""
    from accelerate.utils import set_seed

    spec = cfg.base
    # Spec and data first: a mistake fails before a run directory or a model exists.
    check_lora_head(spec, cfg.lora.target_modules, cfg.runtime)
    preflight(spec, cfg.runtime)
    tok = load_tokenizer(spec, cfg.runtime)
    task, feats = encode_task(cfg.task, tok, cfg.data, mask_prompt=cfg.mask_prompt)
    train, val = split_train_val(feats, cfg.val_fraction, cfg.optim.seed)
    # The preset's LoRA values matter only for a fresh LoRA (a continued adapter keeps its own).
    warnings = preset_warnings(cfg) if spec.adapter is None else []

    acc = make_accelerator(cfg.runtime)
    for w in warnings if acc.is_main_process else []:
        log.warning("%s", w)
    out = start_run(acc, Path(out), cfg, overwrite=overwrite, resume=resume, warnings=warnings)
    set_seed(cfg.optim.seed)  # the fresh LoRA's initialisation
    model, _ = build_student(spec, cfg.lora, runtime_for(acc, cfg.runtime))
    if acc.is_main_process:
        log.info("task %s: %d training and %d validation examples", task.name, len(train), len(val))

    card = task_card(cfg, spec, task, len(train), len(val))
    result = run_training(
        accelerator=acc,
        model=model,
        train_feats=train,
        val_feats=val,
        collate=Collator(tok.pad_token_id, [f.example_id for f in feats]),
        step_fn=ce_step,
        save_adapter=peft_saver(adapter_name(model), card.render([])),
        optim=cfg.optim,
        out=out,
        resume=resume,
        progress=cfg.runtime.progress,
    )
    card.add_warnings([*warnings, *result.warnings])
    finish_card(acc, result, card)
    return result.adapter_dir
