"""The method registry: the one list of everything compatlm can build beside old and new.

Each :class:`Method` names a method (``muscle``, ``port`` ...), cites its paper, says what a build
yields (``produces``) and points at the module that implements it. The CLI (``compatlm build``,
``compatlm methods``, help texts), sweeps and the demo all choose methods here by name, never by
import path, so a method exists exactly once.

``produces``:

- ``adapter`` — a LoRA on the new base; the returned ModelSpec is ``new_base+DIR/adapter``
  (``interpolate`` and ``task_arithmetic`` write full weights instead with ``output: merged``);
- ``model`` — full weights (``DIR/model``);
- ``predictions`` — no model at all: prediction lines ``compatlm compare`` reads like any
  candidate's (``rerank``); ``build`` returns the predictions file.

An implementing module (``compatlm.methods.<module>``) provides ``config_cls(method)`` and
``build(method, cfg, out, *, runtime, resume)``; it is imported on first use, so listing the
methods (and ``compatlm --help``) imports neither torch nor the training code.
"""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from compatlm.errors import CompatlmError

if TYPE_CHECKING:
    from compatlm.config import RuntimeConfig, StrictModel

Produces = Literal["adapter", "model", "predictions"]


class MethodModule(Protocol):
    """What ``compatlm.methods.<module>`` provides for the methods it implements."""

    def config_cls(self, method: str) -> type[StrictModel]: ...

    def build(
        self,
        method: str,
        cfg: StrictModel,
        out: Path,
        *,
        runtime: RuntimeConfig | None = None,
        resume: bool = False,
    ) -> str: ...


@dataclass(eq=False)
class Method:
    """One registered method. ``runtime`` given to :meth:`build` wins over ``cfg.runtime``;
    ``resume`` continues an interrupted training run (training-free methods rebuild)."""

    name: str
    pretty_name: str
    reference: str  # paper, venue and arXiv id
    produces: Produces
    summary: str  # one line for help texts
    module: str  # compatlm.methods.<module> implements it

    @property
    def config_cls(self) -> type[StrictModel]:
        return self._impl().config_cls(self.name)

    def build(
        self,
        cfg: StrictModel,
        out: str | Path,
        *,
        runtime: RuntimeConfig | None = None,
        resume: bool = False,
    ) -> str:
        """Build the candidate into ``out``; return its ModelSpec (predictions: the file)."""
        return self._impl().build(self.name, cfg, Path(out), runtime=runtime, resume=resume)

    def _impl(self) -> MethodModule:
        return importlib.import_module(f"compatlm.methods.{self.module}")  # type: ignore[return-value]


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry; a name registered twice is a programming error."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    if method.produces not in get_args(Produces):
        raise ValueError(
            f"method {method.name!r}: produces must be one of {get_args(Produces)},"
            f" found {method.produces!r}"
        )
    METHODS[method.name] = method
    return method


def method_names() -> list[str]:
    """Every registered name, sorted."""
    return sorted(METHODS)


def candidate_names() -> list[str]:
    """Methods whose build is a model candidate (``compatlm build``, sweeps), in list order."""
    return [n for n, m in METHODS.items() if m.produces != "predictions"]


def control_names() -> list[str]:
    """MUSCLE's same-budget controls (:mod:`compatlm.methods.controls`), in list order."""
    return [n for n, m in METHODS.items() if m.module == "controls"]


def get_method(name: str) -> Method:
    """The registered method ``name``; an unknown name gets a did-you-mean and the valid ones."""
    if name in METHODS:
        return METHODS[name]
    close = difflib.get_close_matches(name.lower(), list(_words()), n=1, cutoff=0.6)
    hint = f" (did you mean {_words()[close[0]]!r}?)" if close else ""
    raise CompatlmError(
        f"unknown method {name!r}{hint}; valid methods: {', '.join(method_names())}"
    )


def _words() -> dict[str, str]:
    """Word -> method name, for did-you-mean: the names and the words of the pretty names that
    belong to one method only, so `merge`, `bcwi` or `portllm` find their method."""
    owners: dict[str, set[str]] = {}
    for m in METHODS.values():
        for word in re.findall(r"[a-z0-9]+", m.pretty_name.lower()):
            owners.setdefault(word, set()).add(m.name)
    words = {
        w: next(iter(o))
        for w, o in owners.items()
        if len(o) == 1 and len(w) > 2 and w not in ("from", "new", "old")
    }
    return {**words, **{n: n for n in METHODS}}


def get_candidate_method(name: str) -> Method:
    """``get_method`` for the places that need a model candidate (``build``, sweeps): a method
    that produces predictions is pointed to its own command."""
    method = get_method(name)
    if method.produces == "predictions":
        raise CompatlmError(
            f"method {name!r} produces predictions, not a model candidate; run it with"
            f" `compatlm {name} CONFIG --out DIR`"
        )
    return method


def describe(method: Method) -> dict[str, Any]:
    """The listing row of ``compatlm methods`` (also its ``--json`` form)."""
    return {
        "name": method.name,
        "pretty_name": method.pretty_name,
        "produces": method.produces,
        "reference": method.reference,
        "summary": method.summary,
    }


MUSCLE_REF = "Echterhoff et al., MUSCLE: A Model Update Strategy for Compatible LLM Evolution, EMNLP Findings 2024, arXiv 2407.09435"

CONTROL_REF = "compatlm's same-budget control of MUSCLE (arXiv 2407.09435, §4 recipe)"

# Order = order of `compatlm build --help` and `compatlm methods`.
for _method in (
    Method(
        "port",
        "PortLLM",
        "Khan et al., PortLLM: Personalizing Evolving Large Language Models with Training-Free"
        " and Portable Model Patches, ICLR 2025, arXiv 2410.10870",
        "adapter",
        "the old adapter on the new base, ΔW scaled by alpha (PortLLM)",
        "port",
    ),
    Method(
        "interpolate",
        "BCWI (weight interpolation)",
        "Schumann et al., Backward Compatibility During Data Updates by Weight"
        " Interpolation, EACL 2024, arXiv 2301.10546",
        "adapter",
        "alpha·ΔW_old + (1 − alpha)·ΔW_new on the new base, exact (BCWI)",
        "interpolate",
    ),
    Method(
        "task_arithmetic",
        "Task arithmetic / Merge-to-Learn",
        "Ilharco et al., Editing Models with Task Arithmetic, ICLR 2023, arXiv 2212.04089;"
        " Morrison et al., Merge to Learn, EMNLP Findings 2024, arXiv 2410.12937",
        "adapter",
        "base + Σ ω·τ over adapters or full fine-tuned models (Merge-to-Learn)",
        "task_arithmetic",
    ),
    Method(
        "muscle",
        "MUSCLE (masked distillation)",
        MUSCLE_REF,
        "adapter",
        "compatibility LoRA by masked distillation (same as `compatlm train compat`)",
        "muscle",
    ),
    Method(
        "pct",
        "PCT (focal distillation)",
        "Yan et al., Positive-Congruent Training: Towards Regression-Free Model Updates,"
        " CVPR 2021, arXiv 2011.09161",
        "adapter",
        "CE + KL to the old model, instances weighted α + β·1[old correct] (PCT)",
        "pct",
    ),
    Method(
        "continue_ce",
        "Continued CE (same-budget control)",
        CONTROL_REF,
        "adapter",
        "same-budget control of muscle: the new adapter trained further, CE only",
        "controls",
    ),
    Method(
        "kd_new",
        "Distillation from new (same-budget control)",
        CONTROL_REF,
        "adapter",
        "same-budget control of muscle: distillation from the new task model only",
        "controls",
    ),
    Method(
        "rerank",
        "BCR (backward-congruent re-ranking)",
        "Cai et al., Measuring and Reducing Model Update Regression in Structured"
        " Prediction for NLP, NeurIPS 2022, arXiv 2202.02976",
        "predictions",
        "sample k outputs from the new model, keep the one the old model scores highest (BCR)",
        "rerank",
    ),
):
    register(_method)
del _method
