"""Same-budget controls for a compatibility adapter: ``continue_ce`` and ``kd_new``.

MUSCLE (arXiv 2407.09435, §4) starts the student as a copy of the new task adapter and trains it
further. Part of any change in negative flips can come from that extra training alone, not from
the old model; on the tokens MUSCLE's mask sends to teacher_new (most of them, see
``diagnostics.json``) the student is distilled towards where it started. A reduction claim
therefore needs, beside it, the same training without the old model:

- ``continue_ce`` — the new task adapter trained further with plain cross entropy
  (``kd_weight = 0``; no teacher is loaded);
- ``kd_new`` — distillation from teacher_new only (mask ``new_only``: no token follows
  teacher_old, which is never loaded).

Each control takes the MUSCLE config itself (a ``TrainCompatConfig``) and runs the very same
recipe with that one setting changed (focal weights dropped: they need teacher_old). Data,
mask_prompt, seed, batch order, optimiser, number of steps and learning-rate schedule are
therefore those of the MUSCLE run by construction; ``budget.json`` in both run directories
records them so the claim can be checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compatlm.config import RuntimeConfig, StrictModel
from compatlm.errors import CompatlmError

# A control is configured by the MUSCLE config it controls: muscle's config_cls serves both.
from compatlm.methods.muscle import build_trained, compat_config, config_cls

__all__ = ["CONTROLS", "build", "build_control", "config_cls", "control_config"]

if TYPE_CHECKING:
    from compatlm.train.config import TrainCompatConfig


# Per control: the settings changed relative to the MUSCLE config (descriptions and references
# live in the registry).
CONTROLS: dict[str, dict[str, Any]] = {
    "continue_ce": {"kd_weight": 0.0, "focal": None},
    "kd_new": {"mask": "new_only", "focal": None},
}


def control_config(cfg: TrainCompatConfig, name: str) -> TrainCompatConfig:
    """The ``name`` control of the MUSCLE config ``cfg`` (everything else unchanged)."""
    if name not in CONTROLS:
        raise CompatlmError(f"unknown control {name!r}; valid: {', '.join(CONTROLS)}")
    if name == "kd_new" and cfg.kd_weight == 0:
        raise CompatlmError(
            "kd_new: kd_weight is 0, so there is no distillation to take from teacher_new"
            " (that run is continue_ce); set kd_weight > 0"
        )
    # The changed values are valid settings of the same config class: no revalidation needed.
    return cfg.model_copy(update=CONTROLS[name])


def build_control(
    name: str,
    cfg: TrainCompatConfig,
    out: Path,
    *,
    runtime: RuntimeConfig | None = None,
    resume: bool = False,
) -> str:
    """Train the ``name`` control of ``cfg`` into ``out``; return its ModelSpec."""
    changes = {k: v for k, v in CONTROLS[name].items() if v is not None}
    return build_trained(
        name,
        control_config(cfg, name),
        out,
        runtime=runtime,
        resume=resume,
        details={"control_of": "muscle", "changed": changes},
    )


def build(
    method: str,
    cfg: StrictModel,
    out: Path,
    *,
    runtime: RuntimeConfig | None = None,
    resume: bool = False,
) -> str:
    """The registry entries ``continue_ce`` and ``kd_new``."""
    return build_control(method, compat_config(cfg, method), out, runtime=runtime, resume=resume)
