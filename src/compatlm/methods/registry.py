"""The method registry: name → candidate builder.

Every weight-space method turns a config into a candidate directory and returns the candidate's
ModelSpec string, so ``compatlm eval`` loads it like any other model. Methods are chosen by
registry name (``compatlm build interpolate ...``), never by import path.

``rerank`` (BCR) is not a weight-space method: it produces predictions, not a model, and is run
with ``compatlm rerank``; asking ``build`` for it says so.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

from compatlm.config import RuntimeConfig, StrictModel
from compatlm.errors import CompatlmError
from compatlm.methods.common import write_manifest
from compatlm.methods.interpolate import InterpolateMethod
from compatlm.methods.port import PortMethod
from compatlm.methods.task_arithmetic import TaskArithmeticMethod
from compatlm.spec import ModelSpec

log = logging.getLogger(__name__)


@runtime_checkable
class Method(Protocol):
    """A candidate builder. ``runtime`` wins over ``cfg.runtime`` when given."""

    name: str
    config_cls: type[StrictModel]
    summary: str

    def build(
        self, cfg: StrictModel, out: Path, *, runtime: RuntimeConfig | None = None
    ) -> str: ...


class MuscleMethod:
    """MUSCLE (Echterhoff et al. 2024, arXiv 2407.09435): a compatibility LoRA trained on the new
    base by masked distillation. Training lives in ``compatlm.train.compat``; this entry lets the
    registry (and sweeps) build it like the training-free methods."""

    name = "muscle"
    summary = "compatibility LoRA trained by masked distillation (`compatlm train compat`)"

    @property
    def config_cls(self) -> type[StrictModel]:
        from compatlm.train.config import TrainCompatConfig

        return TrainCompatConfig

    def build(self, cfg: StrictModel, out: Path, *, runtime: RuntimeConfig | None = None) -> str:
        if importlib.util.find_spec("compatlm.train.compat") is None:
            raise CompatlmError(
                "muscle: the training recipe is not available in this build; train the"
                " compatibility adapter with `compatlm train compat CONFIG --out DIR`"
            )
        from compatlm.train.compat import train_compat

        if runtime is not None:
            cfg = cfg.model_copy(update={"runtime": runtime})
        out = Path(out)
        adapter = train_compat(cfg, out)  # type: ignore[arg-type]
        spec = ModelSpec.parse(cfg.new).with_adapter(str(adapter))  # type: ignore[attr-defined]
        # train_compat wrote config.yaml and env.json; only the manifest is added.
        return write_manifest(
            out,
            method=self.name,
            spec=spec,
            artefact="adapter",
            sources={"old": cfg.old, "new": cfg.new},  # type: ignore[attr-defined]
            warnings=[],
        )


METHODS: dict[str, Method] = {
    m.name: m for m in (PortMethod(), InterpolateMethod(), TaskArithmeticMethod(), MuscleMethod())
}

# Methods that produce predictions instead of a model: name -> how to run them.
PREDICTION_METHODS = {"rerank": "compatlm rerank CONFIG --out DIR"}


def method_names() -> list[str]:
    return sorted(METHODS)


def get_method(name: str) -> Method:
    """The registered method ``name``; unknown names list the valid ones."""
    if name in METHODS:
        return METHODS[name]
    if name in PREDICTION_METHODS:
        raise CompatlmError(
            f"method {name!r} produces predictions, not a model candidate; run it with"
            f" `{PREDICTION_METHODS[name]}`"
        )
    raise CompatlmError(f"unknown method {name!r}; valid methods: {', '.join(method_names())}")
