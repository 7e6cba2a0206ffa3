"""``muscle``: the MUSCLE compatibility adapter as a registry method (Echterhoff et al. 2024,
arXiv 2407.09435): a LoRA on the new base trained by masked distillation from the old and new
task models. Training lives in :mod:`compatlm.train.recipes.compat`; this entry lets ``compatlm build``
and sweeps build it like the training-free methods, with the same candidate directory
(``adapter/``, ``config.yaml``, ``env.json``, ``candidate.json``, plus the run's
``diagnostics.json`` and ``budget.json``).

:func:`build_trained` is shared with the same-budget controls (:mod:`compatlm.methods.controls`),
which are this recipe with one setting changed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compatlm.config import RuntimeConfig, StrictModel
from compatlm.errors import CompatlmError
from compatlm.methods.common import write_manifest

if TYPE_CHECKING:
    from compatlm.train.config import TrainCompatConfig


def compat_config(cfg: object, method: str) -> TrainCompatConfig:
    """``cfg`` as a TrainCompatConfig, after checking the training recipe is installed."""
    if importlib.util.find_spec("compatlm.train.recipes.compat") is None:
        raise CompatlmError(
            f"{method}: the training recipe is not available in this build; train the"
            " compatibility adapter with `compatlm train compat CONFIG --out DIR`"
        )
    from compatlm.train.config import TrainCompatConfig

    if not isinstance(cfg, TrainCompatConfig):
        raise CompatlmError(f"{method}: expected a train-compat config, found {type(cfg).__name__}")
    return cfg


def _run_warnings(out: Path) -> list[str]:
    env = out / "env.json"
    if not env.is_file():
        return []
    return list(json.loads(env.read_text(encoding="utf-8")).get("warnings") or [])


def build_trained(
    method: str,
    cfg: TrainCompatConfig,
    out: Path,
    *,
    runtime: RuntimeConfig | None = None,
    resume: bool = False,
    details: dict[str, Any] | None = None,
) -> str:
    """Train ``cfg`` into ``out`` with ``train_compat`` and write ``candidate.json``; return the
    candidate's ModelSpec (new base + the trained adapter)."""
    from compatlm.train.diagnostics import load_diagnostics
    from compatlm.train.recipes.compat import train_compat

    if runtime is not None:
        cfg = cfg.model_copy(update={"runtime": runtime})
    out = Path(out)
    adapter = train_compat(cfg, out, resume=resume)
    spec = cfg.new.with_adapter(str(adapter))
    diag = load_diagnostics(out)
    # train_compat wrote config.yaml, env.json, diagnostics.json and budget.json.
    return write_manifest(
        out,
        method=method,
        spec=spec,
        artefact="adapter",
        sources={"old": cfg.old.format(), "new": cfg.new.format()},
        warnings=_run_warnings(out),
        details={**(details or {}), "verdict": None if diag is None else diag["verdict"]},
    )


def config_cls(method: str) -> type[StrictModel]:
    # Lazy: the training config pulls in torch.
    from compatlm.train.config import TrainCompatConfig

    return TrainCompatConfig


def build(
    method: str,
    cfg: StrictModel,
    out: Path,
    *,
    runtime: RuntimeConfig | None = None,
    resume: bool = False,
) -> str:
    """The ``muscle`` registry entry: masked distillation from teacher_old and teacher_new."""
    return build_trained(method, compat_config(cfg, method), out, runtime=runtime, resume=resume)
