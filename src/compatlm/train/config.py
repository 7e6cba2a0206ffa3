"""Configs of the two training recipes: task adapters and MUSCLE compatibility adapters.

``TrainTaskConfig`` trains a LoRA task adapter on a base; ``TrainCompatConfig`` trains the
compatibility adapter of MUSCLE (Echterhoff et al., arXiv 2407.09435, §4): a LoRA on the new
base, initialised from the new task adapter, distilled per token from teacher_old (old base +
old task adapter) and teacher_new (new base + new task adapter).

``preset: paper`` fills in the hyper-parameters of the paper's appendix A.1 (LoRA on all linear
layers, r=128, α=256, dropout 0; lr 1e-4, 10 epochs, 500 warm-up steps, weight decay 0,
gradient accumulation 8) under whatever the YAML or the overrides set explicitly, and
``mask_prompt: false`` (A.1: "We learn about the entire context and answer tokens").

Preset footguns are reported, not silently fixed: :func:`preset_warnings` flags ``lora.r``
changed without ``lora.alpha`` (α stays 256, so the LoRA scale α/r is no longer the paper's 2;
the value the user asked for is kept, the warning names the α that keeps the ratio), and the
training loop flags a warm-up as long as the run. Both are logged and recorded in ``env.json``
and the adapter's model card.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from compatlm.config import RuntimeConfig, Seed, StrictModel, TaskConfig
from compatlm.spec import ModelSpecField
from compatlm.train.masks import NO_OLD_MASKS, MaskName

PAPER_LORA: dict[str, Any] = {
    "r": 128,
    "alpha": 256,
    "dropout": 0.0,
    "target_modules": "all-linear",
}
PAPER_OPTIM: dict[str, Any] = {
    "lr": 1e-4,
    "epochs": 10,
    "warmup_steps": 500,
    "weight_decay": 0.0,
    "grad_accum": 8,
}


class LoraSettings(StrictModel):
    """A fresh LoRA (ignored when training continues an existing adapter)."""

    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field(
        "all-linear",
        description='"all-linear" = every linear layer except the output head, or module names',
    )


class OptimSettings(StrictModel):
    """AdamW with linear warm-up and linear decay; ``batch_size`` is per process."""

    lr: float = Field(2e-4, gt=0)
    epochs: int = Field(3, ge=1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    batch_size: int = Field(8, ge=1, description="examples per micro-batch and process")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip gradients (null = off)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimiser steps")
    seed: Seed = 0
    checkpoint_every: int | None = Field(
        None, ge=1, description="also save a resumable checkpoint every N optimiser steps"
    )


class DataSettings(StrictModel):
    """How training examples become token sequences."""

    max_length: int = Field(512, ge=2, description="longer examples lose their oldest tokens")
    append_eos: bool | None = Field(
        None, description="end the answer with EOS (default: yes for generation, no for MC)"
    )


class _PresetMixin(StrictModel):
    preset: Literal["paper"] | None = Field(
        None, description="paper = hyper-parameters of arXiv 2407.09435 A.1 (explicit keys win)"
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") != "paper":
            return data
        data = dict(data)
        if data.get("mask_prompt") is None:  # A.1: loss on the entire context and answer
            data["mask_prompt"] = False
        sections = {"optim": PAPER_OPTIM}
        if "lora" in cls.model_fields:
            sections["lora"] = PAPER_LORA
        for section, defaults in sections.items():
            given = data.get(section) or {}
            if not isinstance(given, dict):  # let pydantic report the wrong type
                continue
            data[section] = {**defaults, **given}
        return data


def preset_warnings(cfg: _PresetMixin) -> list[str]:
    """Settings that undo part of ``preset: paper`` without saying so (see module docstring)."""
    lora = getattr(cfg, "lora", None)
    if cfg.preset != "paper" or lora is None:
        return []
    ratio = PAPER_LORA["alpha"] / PAPER_LORA["r"]
    if lora.r != PAPER_LORA["r"] and lora.alpha == PAPER_LORA["alpha"]:
        return [
            f"lora.r={lora.r} under preset paper keeps the preset's lora.alpha={lora.alpha:g}:"
            f" LoRA scale alpha/r = {lora.alpha / lora.r:g} instead of the paper's {ratio:g};"
            f" set lora.alpha={ratio * lora.r:g} to keep the paper's ratio"
        ]
    return []


class TrainTaskConfig(_PresetMixin):
    """``compatlm train task``: a LoRA task adapter on ``base``.

    When ``base`` names an adapter (``base+adapter``), training continues that adapter (and
    ``lora`` is ignored); otherwise a fresh LoRA is created from ``lora``.
    """

    base: ModelSpecField = Field(description="ModelSpec: base[@rev] or base+adapter to continue")
    task: TaskConfig = Field(description="training data; split defaults to train")
    data: DataSettings = DataSettings()
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="held out, seeded split")
    mask_prompt: bool = Field(
        True, description="loss on the answer tokens only (preset paper: false, whole sequence)"
    )
    lora: LoraSettings = LoraSettings()
    optim: OptimSettings = OptimSettings()
    runtime: RuntimeConfig = RuntimeConfig()
    out: str | None = Field(None, description="run directory (the --out flag wins)")


class FocalSettings(StrictModel):
    """PCT focal distillation (Yan et al., CVPR 2021): instance weight α + β·1[old correct]."""

    alpha: float = Field(1.0, ge=0)
    beta: float = Field(1.0, ge=0)


class TrainCompatConfig(_PresetMixin):
    """``compatlm train compat``: MUSCLE compatibility adapter (arXiv 2407.09435, §4).

    Loss = kd_weight · masked KL(teacher ‖ student at temperature T) + (1 − kd_weight) · CE,
    where the mask picks teacher_old or teacher_new per token.
    """

    old: ModelSpecField = Field(
        description="ModelSpec of the old task model: old base + old adapter"
    )
    new: ModelSpecField = Field(
        description="ModelSpec of the new task model: new base + new adapter"
    )
    task: TaskConfig = Field(description="training data; split defaults to train")
    data: DataSettings = DataSettings()
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    mask_prompt: bool = Field(
        True, description="loss on the answer tokens only (preset paper: false, whole sequence)"
    )
    mask: MaskName = Field(
        "student_wrong",
        description="which tokens follow teacher_old (new_only: none, the kd_new control)",
    )
    student_init: Literal["new_adapter", "fresh"] = Field(
        "new_adapter",
        description="new_adapter: the student starts as a copy of the new task adapter (the"
        " paper's A.1); fresh: a new LoRA of the same shape (A random, B zero), so it starts at"
        " the new base and teacher_new's gradient is not zero at step 0 (measured worse on the"
        " demo's validation split: bench/results/muscle_init.json)",
    )
    temperature: float = Field(2.0, gt=0)
    kd_weight: float = Field(1.0, ge=0.0, le=1.0, description="λ; 0 = plain fine-tuning")
    t_squared: bool = Field(
        False,
        description="scale the KL term by T² (Hinton et al.); with kd_weight 1 and AdamW only ε"
        " and gradient clipping see it (bench/results/muscle_t_squared.json)",
    )
    focal: FocalSettings | None = None
    teacher_old: Literal["live", "cache"] = Field(
        "live", description="run the old model every step, or read its precomputed top-k"
    )
    cache_dir: str | None = Field(None, description="teacher cache (default: OUT/teacher_cache)")
    teacher_new: Literal["live", "cache"] = Field(
        "live",
        description="run teacher_new as a frozen second adapter on the student's base every step,"
        " or read its precomputed top-k (saves its forward pass: faster, approximate for k < V)",
    )
    new_cache_dir: str | None = Field(
        None, description="teacher_new cache (default: OUT/teacher_new_cache)"
    )
    topk: int = Field(64, ge=1, description="tokens kept per position in the teacher caches")
    select_by: Literal["val_ce", "val_loss"] = Field(
        "val_ce", description="keep the epoch with the lowest validation CE or training loss"
    )
    optim: OptimSettings = OptimSettings()
    runtime: RuntimeConfig = RuntimeConfig()
    out: str | None = Field(None, description="run directory (the --out flag wins)")

    @model_validator(mode="after")
    def _focal_needs_old(self) -> TrainCompatConfig:
        if self.focal is not None and self.mask in NO_OLD_MASKS and self.kd_weight > 0:
            raise ValueError(
                f"focal weights need teacher_old (1[old correct]), which mask {self.mask!r}"
                " never runs; remove focal or choose another mask"
            )
        return self
