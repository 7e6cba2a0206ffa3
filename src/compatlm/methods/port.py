"""Port: the old task adapter applied, unchanged, to the new base.

PortLLM (Khan et al. 2024, "PortLLM: Personalizing Evolving Large Language Models with
Training-Free Portable Model Patches") treats the fine-tuning update of the old version as a
portable patch: M_v2^C = W_v2 + ΔW_v1. It needs no training and no data, so it is the cheapest
baseline a compatibility adapter must beat. The patch can be scaled: ΔW' = alpha·ΔW_old, written
by multiplying every lora_B by alpha (ΔW = s·B@A is linear in B, so this is exact, including a
LoRA bias on B). alpha=0 gives the bare new base; alpha=1 the unchanged patch.

The adapter must fit the new base module for module and shape for shape; a base of another size
or architecture is refused with a one-line error before anything is written.
"""

from __future__ import annotations

import logging
from pathlib import Path

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.methods.common import (
    check_finite,
    finish_candidate,
    require_adapter,
    start_candidate,
)
from compatlm.methods.config import PortConfig
from compatlm.methods.lora import copy_adapter
from compatlm.models import check_adapter_fits, meta_base, warn_if_other_base
from compatlm.spec import ModelSpec

log = logging.getLogger(__name__)


def port_adapter(
    adapter: str | Path,
    new_base: ModelSpec,
    out_adapter: Path,
    *,
    alpha: float = 1.0,
    runtime: RuntimeConfig | None = None,
) -> list[str]:
    """Write ``adapter`` (ΔW scaled by ``alpha``) into ``out_adapter`` as an adapter of
    ``new_base``; returns the warnings raised on the way."""
    runtime = runtime or RuntimeConfig()
    check_finite("alpha", alpha)
    if alpha < 0:
        raise CompatlmError(f"alpha: must be >= 0 (a scale of the ported patch), found {alpha}")
    base = new_base.with_adapter(None)
    check_adapter_fits(meta_base(base, runtime), adapter, allow_pickle=runtime.allow_pickle)
    warnings = []
    msg = warn_if_other_base(base.with_adapter(str(adapter)))
    if msg:
        warnings.append(msg)
    copy_adapter(
        Path(adapter), out_adapter, base=base.base, scale=alpha, allow_pickle=runtime.allow_pickle
    )
    return warnings


def config_cls(method: str) -> type[PortConfig]:
    return PortConfig


def build(
    method: str,
    cfg: PortConfig,
    out: Path,
    *,
    runtime: RuntimeConfig | None = None,
    resume: bool = False,
) -> str:
    """The ``port`` registry entry: write the candidate directory; return its ModelSpec.
    Training-free, so there is nothing to resume: ``resume`` is accepted and ignored."""
    runtime = runtime or cfg.runtime
    old, new = cfg.old, cfg.new
    adapter = require_adapter(old, "old", "old")
    if new.adapter is not None:
        log.info("port: the new spec's adapter %s is not used (only its base)", new.adapter)
    out = start_candidate(out)
    warnings = port_adapter(adapter, new, out / "adapter", alpha=cfg.alpha, runtime=runtime)
    spec = ModelSpec(new.base, new.base_revision, str(out / "adapter"))
    return finish_candidate(
        out,
        method=method,
        cfg=cfg,
        spec=spec,
        artefact="adapter",
        sources={"adapter": adapter, "new_base": new.base},
        warnings=warnings,
        details={"alpha": cfg.alpha},
        runtime=runtime,
    )
