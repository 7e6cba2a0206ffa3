"""Interpolate: ΔW = alpha·ΔW_old + (1 − alpha)·ΔW_new on the new base.

BCWI (Schumann et al. 2023, "Backward Compatibility During Data Updates by Weight
Interpolation") interpolates between the weights of the old and the new fine-tuned model to trade
the new model's accuracy gain against negative flips. With task adapters on a shared new base
(the old adapter ported as in PortLLM) the interpolation happens between the two updates:

    W_candidate = W_new + alpha·s_old·B_old@A_old + (1 − alpha)·s_new·B_new@A_new

alpha is the weight of the OLD adapter: 0 is the new model, 1 the port of the old adapter.

Exactness: the default output is a LoRA of rank r_old + r_new whose factors are the stacked,
pre-scaled factors of both adapters (see :mod:`compatlm.methods.lora`), so its ΔW equals the
formula above to float rounding; ``output: merged`` writes full weights instead (fp32 sum, one
cast to ``runtime.dtype``). Interpolating A and B separately, as PEFT's ``linear`` weighted
adapter does, would give (α·B_old + …)(α·A_old + …) — cross terms included — and is not used.

Module sets: both adapters must target the same modules (``missing_modules: error``, default,
because a mismatch usually means the adapters were configured differently by mistake);
``missing_modules: zero`` treats a module one adapter lacks as ΔW = 0 for that adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.methods.common import (
    check_finite,
    finish_candidate,
    require_adapter,
    start_candidate,
)
from compatlm.methods.config import InterpolateConfig
from compatlm.methods.lora import adapter_summary, read_lora, stack_lora, write_lora
from compatlm.methods.merge import merge_full
from compatlm.models import check_adapter_fits, meta_base
from compatlm.spec import ModelSpec

WHY = "interpolate"


def check_alpha(alpha: float, allow_extrapolation: bool = False) -> None:
    check_finite("alpha", alpha)
    if not allow_extrapolation and not 0.0 <= alpha <= 1.0:
        raise CompatlmError(
            f"alpha: must be in [0, 1] (weight of the old adapter), found {alpha};"
            " set allow_extrapolation=true to extrapolate on purpose"
        )


def interpolate_adapters(
    old_adapter: str | Path,
    new_adapter: str | Path,
    new_base: ModelSpec,
    out: Path,
    *,
    alpha: float,
    output: Literal["adapter", "merged"] = "adapter",
    missing_modules: Literal["error", "zero"] = "error",
    allow_extrapolation: bool = False,
    runtime: RuntimeConfig | None = None,
) -> tuple[ModelSpec, dict]:
    """Write the interpolated candidate under ``out`` (``adapter/`` or ``model/``); return its
    ModelSpec and details for the manifest."""
    runtime = runtime or RuntimeConfig()
    check_alpha(alpha, allow_extrapolation)
    base = new_base.with_adapter(None)
    shapes = meta_base(base, runtime)
    for adapter in (old_adapter, new_adapter):
        check_adapter_fits(shapes, adapter, allow_pickle=runtime.allow_pickle)
    old = read_lora(old_adapter, allow_pickle=runtime.allow_pickle, why=WHY)
    new = read_lora(new_adapter, allow_pickle=runtime.allow_pickle, why=WHY)
    terms = [(old, alpha), (new, 1.0 - alpha)]
    # Stack even for merged output: it enforces the module-set policy in one place.
    factors = stack_lora(terms, missing=missing_modules, why=WHY)
    details = {"alpha": alpha, "old": adapter_summary(old), "new": adapter_summary(new)}
    if output == "adapter":
        write_lora(out / "adapter", factors, template=new.config, base=base.base)
        details["rank"] = max(a.shape[0] for a, _ in factors.values())
        return base.with_adapter(str(out / "adapter")), details
    details.update(merge_full(base, out / "model", adapters=terms, runtime=runtime))
    return ModelSpec(str(out / "model")), details


def config_cls(method: str) -> type[InterpolateConfig]:
    return InterpolateConfig


def build(
    method: str,
    cfg: InterpolateConfig,
    out: Path,
    *,
    runtime: RuntimeConfig | None = None,
    resume: bool = False,
) -> str:
    """The ``interpolate`` registry entry: write the candidate directory; return its ModelSpec.
    Training-free, so there is nothing to resume: ``resume`` is accepted and ignored."""
    runtime = runtime or cfg.runtime
    old, new = cfg.old, cfg.new
    old_adapter = require_adapter(old, "old", "old")
    new_adapter = require_adapter(new, "new", "new")
    out = start_candidate(out)
    spec, details = interpolate_adapters(
        old_adapter,
        new_adapter,
        new.with_adapter(None),
        out,
        alpha=cfg.alpha,
        output=cfg.output,
        missing_modules=cfg.missing_modules,
        allow_extrapolation=cfg.allow_extrapolation,
        runtime=runtime,
    )
    return finish_candidate(
        out,
        method=method,
        cfg=cfg,
        spec=spec,
        artefact=cfg.output,
        sources={"old_adapter": old_adapter, "new_adapter": new_adapter, "new_base": new.base},
        warnings=[],
        details=details,
        runtime=runtime,
    )
