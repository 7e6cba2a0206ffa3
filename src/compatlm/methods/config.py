"""Configs of the candidate builders (``compatlm build METHOD CONFIG``) and of re-ranking.

Every method config is a :class:`~compatlm.config.StrictModel` (frozen, unknown keys are errors)
with a ``runtime`` section. Models are named by ModelSpec strings exactly as in ``compatlm eval``
configs (``old: base+adapter``), so a user can copy the two lines from one file into the other;
they are :data:`~compatlm.spec.ModelSpecField` s, parsed when the config loads.
Knobs that a sweep varies (``alpha``, ``vectors[i].weight``) are plain top-level numbers so that
``alpha=0.3`` overrides work from the command line.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from compatlm.config import RuntimeConfig, StrictModel, TaskConfig
from compatlm.spec import ModelSpecField


class MethodConfig(StrictModel):
    """Fields every method config has."""

    runtime: RuntimeConfig = RuntimeConfig()


class PortConfig(MethodConfig):
    """PortLLM: the old task adapter, unchanged (optionally scaled), on the new base."""

    old: ModelSpecField = Field(
        description="old version: base+adapter; its adapter is the patch ported"
    )
    new: ModelSpecField = Field(description="new version: base[+adapter]; only its base is used")
    alpha: float = Field(
        1.0, ge=0.0, description="scale of the ported patch: ΔW' = alpha·ΔW_old (1 = unchanged)"
    )


class InterpolateConfig(MethodConfig):
    """BCWI: ΔW = alpha·ΔW_old + (1 − alpha)·ΔW_new on the new base."""

    old: ModelSpecField = Field(description="old version: base+adapter")
    new: ModelSpecField = Field(
        description="new version: base+adapter; the candidate lives on this base"
    )
    alpha: float = Field(0.5, description="weight of the OLD adapter's ΔW, in [0, 1]")
    allow_extrapolation: bool = Field(
        False, description="accept alpha outside [0, 1] (extrapolation along the segment)"
    )
    missing_modules: Literal["error", "zero"] = Field(
        "error",
        description="a module only one adapter targets: error, or treat its ΔW as 0 in the other",
    )
    output: Literal["adapter", "merged"] = Field(
        "adapter",
        description="adapter: exact rank-(r_old+r_new) LoRA (small); merged: full weights",
    )

    @model_validator(mode="after")
    def _alpha_range(self) -> InterpolateConfig:
        if not self.allow_extrapolation and not 0.0 <= self.alpha <= 1.0:
            raise ValueError(
                f"alpha must be in [0, 1], found {self.alpha}; set allow_extrapolation=true"
                " to extrapolate on purpose"
            )
        return self


class TaskVector(StrictModel):
    """One task vector τ: a LoRA adapter's ΔW, or a full fine-tuned model minus its base."""

    adapter: str | None = Field(None, description="PEFT LoRA adapter directory: τ = B·A·scaling")
    model: str | None = Field(None, description="full fine-tuned model directory (with base)")
    base: str | None = Field(None, description="the model `model` was fine-tuned from")
    weight: float = Field(1.0, description="ω: the vector enters as ω·τ")

    @model_validator(mode="after")
    def _one_source(self) -> TaskVector:
        if (self.adapter is None) == (self.model is None):
            raise ValueError("give exactly one of adapter or model")
        if self.model is not None and self.base is None:
            raise ValueError("a full-model task vector needs base (τ = model − base)")
        if self.adapter is not None and self.base is not None:
            raise ValueError("base is only used with model (an adapter's τ is its own ΔW)")
        return self


class TaskArithmeticConfig(MethodConfig):
    """Task arithmetic / Merge-to-Learn: base + Σ ω_i·τ_i."""

    base: ModelSpecField = Field(
        description="the base the vectors are added to (usually the new base)"
    )
    vectors: list[TaskVector] = Field(min_length=1)
    output: Literal["auto", "adapter", "merged"] = Field(
        "auto", description="auto: a LoRA when every vector is an adapter, else full weights"
    )


class RerankConfig(MethodConfig):
    """BCR: sample k outputs from the new model, keep the one the old model likes best."""

    old: ModelSpecField = Field(description="old version: base[+adapter] (the scorer)")
    new: ModelSpecField = Field(description="new version: base[+adapter] (the sampler)")
    task: TaskConfig
    k: int = Field(8, ge=1, description="samples per prompt")
    temperature: float = Field(1.0, gt=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    score: Literal["sum", "mean"] = Field(
        "mean", description="old model's log-likelihood of the output: sum, or per-token mean"
    )
    include_greedy: bool = Field(
        False, description="add the new model's greedy output to the k samples"
    )
    role: str = Field(
        "rerank",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="role name of the predictions written (file-safe; not old/new)",
    )

    @model_validator(mode="after")
    def _role_not_reserved(self) -> RerankConfig:
        if self.role in ("old", "new") or "_vs_" in self.role:
            raise ValueError(f"role {self.role!r} is reserved; choose another name")
        return self


# The sweep's config lives with the sweep; imported here so `compatlm.methods.config` keeps
# naming every method-level config.
from compatlm.methods.sweep_config import SweepConfig  # noqa: E402, F401
