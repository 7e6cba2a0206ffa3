"""What every candidate builder shares: the candidate directory and the shape-only base.

A candidate directory (``compatlm build ... --out DIR``) holds the artefact (``adapter/`` or
``model/``), ``config.yaml`` (the resolved method config), ``env.json`` and ``candidate.json``
(method, ModelSpec, sources, warnings). The ModelSpec string is what ``compatlm eval`` loads, so
evaluation never knows which method produced a candidate.

Adapters are checked against a *meta-device* instance of the target base: module names and
weight shapes come from its config alone, so checking a 7B base costs no memory and no weights.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from compatlm.config import RuntimeConfig, StrictModel, dump_config
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_json, atomic_write_text, env_info
from compatlm.rundir import prepare_out_dir
from compatlm.spec import ModelSpec

log = logging.getLogger(__name__)

MANIFEST = "candidate.json"


def require_adapter(spec: ModelSpec, role: str, field: str) -> str:
    """The adapter path of ``spec``; a spec without one is a config mistake."""
    if spec.adapter is None:
        raise CompatlmError(
            f"{field}: {role} spec {spec.format()!r} has no adapter; expected base+adapter"
        )
    return spec.adapter


def check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise CompatlmError(f"{name}: expected a finite number, found {value!r}")


def start_candidate(out: str | Path) -> Path:
    """Create the candidate directory; a non-empty one is refused (the CLI's --overwrite
    empties it first)."""
    return prepare_out_dir(out, kind="candidate", resumable=False)


def write_manifest(
    out: Path,
    *,
    method: str,
    spec: ModelSpec,
    artefact: str,
    sources: dict[str, Any],
    warnings: list[str],
    details: dict[str, Any] | None = None,
) -> str:
    """Write ``candidate.json``; return the candidate's ModelSpec string."""
    text = spec.format()
    atomic_write_json(
        out / MANIFEST,
        {
            "method": method,
            "spec": text,
            "artefact": artefact,
            "sources": sources,
            "warnings": warnings,
            "details": details or {},
        },
    )
    return text


def finish_candidate(
    out: Path,
    *,
    method: str,
    cfg: StrictModel,
    spec: ModelSpec,
    artefact: str,
    sources: dict[str, Any],
    warnings: list[str],
    details: dict[str, Any] | None = None,
    runtime: RuntimeConfig | None = None,
) -> str:
    """Write config.yaml, env.json and candidate.json; return the candidate's ModelSpec string."""
    runtime = runtime or RuntimeConfig()
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    atomic_write_json(
        out / "env.json", env_info(seed=runtime.seed, device="cpu", dtype=runtime.dtype)
    )
    return write_manifest(
        out,
        method=method,
        spec=spec,
        artefact=artefact,
        sources=sources,
        warnings=warnings,
        details=details,
    )
