"""Task arithmetic: candidate = base + Σ_i ω_i·τ_i.

A task vector τ is the weight change fine-tuning made (Ilharco et al. 2023, "Editing Models with
Task Arithmetic"): for a LoRA adapter τ = s·B@A per module; for a fully fine-tuned model
τ = W_finetuned − W_its_base. Merge-to-Learn (Morrison et al. 2024, "Merge to Learn: Efficiently
Adding Skills to Language Models with Model Merging") trains a skill in isolation and adds its
vector to a general model; here the "general model" is the new base and the vectors are task
adapters (old, new, or several), which gives compatibility candidates such as
new base + ω_old·τ_old + ω_new·τ_new.

Choosing ω without held-out data: Merge-to-Learn proposes a heuristic based on the ratio of
dataset sizes, ω ≈ |D| / |G| — the size of the dataset the vector was trained on (D) relative to
the general training data (G) it is merged with — as a starting point when no validation set is
available; :func:`size_ratio_weight` computes it. When a validation split exists, prefer a sweep
over ω (``compatlm sweep``), which measures negative flips directly.

Exactness and output: if every vector is an adapter, the sum is written as one LoRA by stacking
the scaled factors (rank Σ r_i, exact; see :mod:`compatlm.methods.lora`). Otherwise (or with
``output: merged``) full weights are written: fp32 sum, one cast to ``runtime.dtype``. Vectors
whose architecture or shapes differ from the base are refused. A module some adapters do not
target simply gets no contribution from them (ΔW = 0), which is what the sum means.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.methods.common import check_finite, finish_candidate, start_candidate
from compatlm.methods.config import TaskArithmeticConfig, TaskVector
from compatlm.methods.lora import adapter_summary, read_lora, stack_lora, write_lora
from compatlm.methods.merge import merge_full
from compatlm.models import check_adapter_fits, meta_base
from compatlm.spec import ModelSpec

WHY = "task_arithmetic"


def size_ratio_weight(n_task: int, n_general: int) -> float:
    """Merge-to-Learn's data-size heuristic ω = |D| / |G| (task examples over general ones)."""
    if n_task < 0 or n_general <= 0:
        raise CompatlmError(
            f"size_ratio_weight: need n_task >= 0 and n_general > 0, found {n_task}, {n_general}"
        )
    return n_task / n_general


def task_arithmetic(
    base: ModelSpec,
    vectors: list[TaskVector],
    out: Path,
    *,
    output: Literal["auto", "adapter", "merged"] = "auto",
    runtime: RuntimeConfig | None = None,
) -> tuple[ModelSpec, dict]:
    """Write base + Σ ω·τ under ``out`` (``adapter/`` or ``model/``); return the ModelSpec and
    details for the manifest."""
    runtime = runtime or RuntimeConfig()
    if not vectors:
        raise CompatlmError("vectors: empty; give at least one task vector")
    for i, v in enumerate(vectors):
        check_finite(f"vectors[{i}].weight", v.weight)
    if base.adapter is not None:
        raise CompatlmError(
            f"base: {base.format()!r} has an adapter; give the bare base and list the"
            " adapter under vectors"
        )
    all_adapters = all(v.adapter is not None for v in vectors)
    if output == "auto":
        output = "adapter" if all_adapters else "merged"
    if output == "adapter" and not all_adapters:
        raise CompatlmError(
            "output: 'adapter' needs every vector to be an adapter; a full-model vector can only"
            " be merged (output: merged)"
        )
    adapters = []
    models = []
    shapes = meta_base(base, runtime) if any(v.adapter for v in vectors) else None
    for v in vectors:
        if v.adapter is not None:
            check_adapter_fits(shapes, v.adapter, allow_pickle=runtime.allow_pickle)
            ad = read_lora(v.adapter, allow_pickle=runtime.allow_pickle, why=WHY)
            adapters.append((ad, v.weight))
        else:
            models.append((str(v.model), str(v.base), v.weight))
    details: dict = {
        "weights": [v.weight for v in vectors],
        "weight_sum": math.fsum(v.weight for v in vectors),
        "adapters": [adapter_summary(ad) for ad, _ in adapters],
        "full_vectors": [m for m, _, _ in models],
    }
    if output == "adapter":
        factors = stack_lora(adapters, missing="zero", why=WHY)
        write_lora(out / "adapter", factors, template=adapters[-1][0].config, base=base.base)
        details["rank"] = max(a.shape[0] for a, _ in factors.values())
        return base.with_adapter(str(out / "adapter")), details
    details.update(
        merge_full(base, out / "model", adapters=adapters, models=models, runtime=runtime)
    )
    return ModelSpec(str(out / "model")), details


def config_cls(method: str) -> type[TaskArithmeticConfig]:
    return TaskArithmeticConfig


def build(
    method: str,
    cfg: TaskArithmeticConfig,
    out: Path,
    *,
    runtime: RuntimeConfig | None = None,
    resume: bool = False,
) -> str:
    """The ``task_arithmetic`` registry entry: write the candidate directory; return its
    ModelSpec. Training-free, so there is nothing to resume: ``resume`` is accepted and ignored."""
    runtime = runtime or cfg.runtime
    out = start_candidate(out)
    spec, details = task_arithmetic(cfg.base, cfg.vectors, out, output=cfg.output, runtime=runtime)
    return finish_candidate(
        out,
        method=method,
        cfg=cfg,
        spec=spec,
        artefact="adapter" if spec.adapter else "merged",
        sources={
            "base": cfg.base.format(),
            "vectors": [v.model_dump(exclude_none=True) for v in cfg.vectors],
        },
        warnings=[],
        details=details,
        runtime=runtime,
    )
