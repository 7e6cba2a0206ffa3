"""``train_task``: a LoRA task adapter on a base model (the task models M_v1, M_v2 of MUSCLE,
arXiv 2407.09435, §4, are such adapters on the old and new base).

The base is frozen; a fresh LoRA (``cfg.lora``, peft ``get_peft_model``) — or the adapter named
in ``cfg.base`` (``base+adapter``), to continue training it — learns the autoregressive loss on
prompt + answer (answer tokens only with ``mask_prompt``). Writes the run directory:
``config.yaml``, ``env.json``, ``adapter/`` (PEFT, safetensors, with a README.md model card;
loadable as ``ModelSpec("BASE+OUT/adapter")``), ``train_log.jsonl`` and ``checkpoint/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_text
from compatlm.models import load_model, load_tokenizer, preflight
from compatlm.spec import ModelSpec
from compatlm.train.checkpoint import model_card, peft_saver, start_run
from compatlm.train.config import LoraSettings, TrainTaskConfig
from compatlm.train.data import IGNORE, Collator, encode_examples, load_task, split_train_val
from compatlm.train.loop import LoopResult, run_training
from compatlm.train.losses import LossOutput, lm_loss
from compatlm.train.sharding import make_accelerator

log = logging.getLogger(__name__)


def runtime_for(acc: Any, runtime: RuntimeConfig) -> RuntimeConfig:
    """The runtime with this process's device (each process of a multi-GPU run has its own)."""
    return runtime.model_copy(update={"device": str(acc.device)})


def lora_config(lora: LoraSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        # peft's "all-linear" already leaves out the output head (lm_head).
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def labelled_columns(labels: Tensor) -> Tensor | None:
    """(K,) sequence positions where some row has a label, or None when every position has one.

    Logits are needed only there. With the prompt masked from the loss (the default) that is
    usually a minority of positions, so the LM head runs on (B, K) instead of (B, T) hidden
    states and the (B, T, V) logits tensor shrinks with it — gigabytes at real vocabulary sizes
    and context lengths.
    """
    cols = (labels != IGNORE).any(dim=0)  # (T,)
    if bool(cols.all()):
        return None
    return cols.nonzero().squeeze(-1)  # (K,)


def forward_logits(model: Any, batch: dict[str, Tensor], keep: Tensor | None = None) -> Tensor:
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


def ce_step(model: Any, batch: dict[str, Tensor]) -> LossOutput:
    """Plain fine-tuning: token-mean cross entropy on the labelled tokens."""
    labels = batch["labels"]  # (B, T)
    keep = labelled_columns(labels)
    logits = forward_logits(model, batch, keep)  # (B, K, V)
    ce = lm_loss(logits, labels if keep is None else labels[:, keep])
    zero = torch.zeros((), device=ce.device)
    n = int((labels != IGNORE).sum())
    return LossOutput(loss=ce, kd=zero, ce=ce.detach(), n_tokens=n, n_old_tokens=0)


def build_student(spec: ModelSpec, lora: LoraSettings, runtime: RuntimeConfig) -> Any:
    """The model to train: base + (loaded adapter, trainable) or base + fresh LoRA."""
    from peft import get_peft_model

    loaded = load_model(spec, trainable=True, runtime=runtime)
    model = loaded.model
    if spec.adapter is None:
        try:
            model = get_peft_model(model, lora_config(lora))
        except ValueError as err:
            first = str(err).strip().splitlines()[0]
            raise CompatlmError(f"lora.target_modules: cannot apply LoRA ({first})") from None
    elif lora != LoraSettings():
        log.warning("base names an adapter (%s): it is trained further; lora ignored", spec.adapter)
    return model, loaded.tokenizer


def train_task(
    cfg: TrainTaskConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
) -> Path:
    """Train a task adapter; returns the adapter directory (``out/adapter``)."""
    from accelerate.utils import set_seed

    spec = ModelSpec.parse(cfg.base)
    # Spec and data first: a mistake fails before a run directory or a model exists.
    preflight(spec, cfg.runtime)
    tok = load_tokenizer(spec, cfg.runtime)
    task = load_task(cfg.task)
    feats = encode_examples(
        task.examples,
        tok,
        cfg.data,
        mask_prompt=cfg.mask_prompt,
        chat_template=task.chat_template,
        name=task.name,
    )
    train, val = split_train_val(feats, cfg.val_fraction, cfg.optim.seed)
    acc = make_accelerator(cfg.runtime)
    out = start_run(acc, Path(out), cfg, overwrite=overwrite, resume=resume)
    set_seed(cfg.optim.seed)  # the fresh LoRA's initialisation
    model, _ = build_student(spec, cfg.lora, runtime_for(acc, cfg.runtime))
    if acc.is_main_process:
        log.info("task %s: %d training and %d validation examples", task.name, len(train), len(val))
    title = f"compatlm task adapter: {task.name} on {spec.base}"
    lines = [
        "Trained with `compatlm train task` (LoRA; base weights frozen).",
        "",
        f"- base: `{spec.base}`",
        f"- task: `{task.name}` ({task.kind}, {len(train)} train / {len(val)} validation)",
    ]
    result = run_training(
        accelerator=acc,
        model=model,
        train_feats=train,
        val_feats=val,
        collate=Collator(tok.pad_token_id, [f.example_id for f in feats]),
        step_fn=ce_step,
        save_adapter=peft_saver(_adapter_name(model), model_card(title, cfg, lines, [])),
        optim=cfg.optim,
        out=out,
        resume=resume,
        progress=cfg.runtime.progress,
    )
    finish_card(acc, result, model_card(title, cfg, lines, result.history))
    return result.adapter_dir


def _adapter_name(model: Any) -> str:
    return model.active_adapter if isinstance(model.active_adapter, str) else "default"


def finish_card(acc: Any, result: LoopResult, card: str) -> None:
    """Rewrite the adapter's README.md once the best epoch is known."""
    if acc.is_main_process and result.adapter_dir.is_dir():
        atomic_write_text(result.adapter_dir / "README.md", card)
    acc.wait_for_everyone()
