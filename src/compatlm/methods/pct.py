"""``pct``: Positive-Congruent Training by focal distillation (Yan et al., "Positive-Congruent
Training: Towards Regression-Free Model Updates", CVPR 2021, arXiv 2011.09161), as a registry
method.

PCT trains the new model with its task loss plus a distillation term towards the old model whose
per-instance weight is α + β·1[old model correct]: instances the old model got right are the
ones a negative flip would break, so they weigh most. In compatlm's terms that is the compat
recipe (:func:`compatlm.train.recipes.compat.train_compat`) with

- ``mask: old_only`` — every loss token distils from teacher_old (teacher_new plays no part);
- ``focal`` — the instance weights, default α = 1, β = 5;
- ``0 < kd_weight < 1`` — both terms present: (1 − λ)·CE + λ·weighted KL, default λ = 0.5
  (= CE + KL with equal weights, up to an overall factor ½).

:class:`PctConfig` is the compat config with those defaults and checks; everything else (data,
budget, LoRA, starting from the new task adapter, teacher cache) is the compat recipe's, and so
is the candidate directory (``adapter/``, ``diagnostics.json``, ``budget.json``,
``candidate.json``). :func:`pct_config` turns a MUSCLE config into the PCT run with the same data
and budget.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from compatlm.config import RuntimeConfig, StrictModel
from compatlm.errors import CompatlmError
from compatlm.methods.muscle import build_trained, compat_config
from compatlm.train.config import FocalSettings, TrainCompatConfig
from compatlm.train.masks import MaskName

# The PCT settings of the demo and of `compatlm build pct` when the config leaves them out.
PCT_MASK = "old_only"
PCT_KD_WEIGHT = 0.5
PCT_FOCAL = FocalSettings(alpha=1.0, beta=5.0)


class PctConfig(TrainCompatConfig):
    """``compatlm build pct``: the compat config with PCT's defaults (see the module docstring)."""

    mask: MaskName = Field(
        PCT_MASK, description="PCT: old_only (every token follows the old model)"
    )
    kd_weight: float = Field(
        PCT_KD_WEIGHT, ge=0.0, le=1.0, description="λ of (1 − λ)·CE + λ·weighted KL, in (0, 1)"
    )
    focal: FocalSettings | None = Field(
        PCT_FOCAL, description="instance weight α + β·1[old correct] (PCT's focal distillation)"
    )

    # Field validators (not one model validator) so that errors name the field.
    @field_validator("mask")
    @classmethod
    def _old_only(cls, mask: str) -> str:
        if mask != PCT_MASK:
            raise ValueError(
                f"PCT distils every token from the old model (mask {PCT_MASK}), found"
                f" {mask!r}; other masks with focal weights are `compatlm build muscle`"
            )
        return mask

    @field_validator("kd_weight")
    @classmethod
    def _both_terms(cls, kd_weight: float) -> float:
        if not 0.0 < kd_weight < 1.0:
            raise ValueError(
                "PCT keeps both the task loss and the distillation term, so it must be in"
                f" (0, 1), found {kd_weight}"
            )
        return kd_weight

    @field_validator("focal")
    @classmethod
    def _weighted(cls, focal: FocalSettings | None) -> FocalSettings:
        if focal is None:
            raise ValueError("PCT needs its instance weights (focal.alpha, focal.beta)")
        return focal


def pct_config(cfg: TrainCompatConfig, **changes: object) -> PctConfig:
    """The PCT run of a compat (MUSCLE) config: same data, budget and runtime; PCT's mask,
    kd_weight and focal weights (``changes`` set any field explicitly)."""
    data = cfg.model_dump()
    data.update(mask=PCT_MASK, kd_weight=PCT_KD_WEIGHT, focal=PCT_FOCAL.model_dump())
    data.update(changes)
    return PctConfig.model_validate(data)


def config_cls(method: str) -> type[StrictModel]:
    return PctConfig


def build(
    method: str,
    cfg: StrictModel,
    out: Path,
    *,
    runtime: RuntimeConfig | None = None,
    resume: bool = False,
) -> str:
    """The ``pct`` registry entry: train the PCT adapter into ``out``; return its ModelSpec."""
    cfg = compat_config(cfg, method)
    if not isinstance(cfg, PctConfig):
        # A MUSCLE config would silently train MUSCLE's mask: PCT's settings must be explicit.
        raise CompatlmError(
            f"{method}: expected a PCT config, found {type(cfg).__name__}; load it with"
            " get_method('pct').config_cls or convert a compat config with pct_config()"
        )
    assert cfg.focal is not None  # PctConfig guarantees it
    return build_trained(
        method,
        cfg,
        out,
        runtime=runtime,
        resume=resume,
        details={"focal": cfg.focal.model_dump(), "kd_weight": cfg.kd_weight},
    )
