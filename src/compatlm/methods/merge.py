"""Full-weight merges: W = W_base + Σ ω_i·τ_i, computed in fp32 and cast once at the end.

Used when a candidate cannot stay a LoRA: a task vector that is a full fine-tuned model minus its
base (Ilharco et al. 2023, "Editing models with task arithmetic"), or when the user asks for
merged weights. Summing in fp32 and casting once avoids the rounding a bf16 running sum would
accumulate over several vectors.

Memory: the base, and per full-model vector its fine-tuned model and that model's base, are held
in fp32 on the CPU at the same time (three models at peak).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.methods.lora import LoraAdapter
from compatlm.models import load_base, load_tokenizer, resolve_dtype
from compatlm.spec import ModelSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

CPU = torch.device("cpu")


def _params(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    # named_parameters() lists a tied weight once, so a tied lm_head is updated exactly once.
    return dict(model.named_parameters())


def add_lora_delta(model: PreTrainedModel, adapter: LoraAdapter, weight: float) -> int:
    """W += weight · s · B@A for every module of ``adapter``; returns the number of modules."""
    modules = dict(model.named_modules())
    for name, mod in adapter.modules.items():
        target = modules.get(name)
        w = getattr(target, "weight", None)
        if w is None:
            raise CompatlmError(
                f"adapter {adapter.path}: targets module {name!r} which the base"
                f" ({type(model).__name__}) does not have"
            )
        delta = mod.delta()  # (out, in)
        if adapter.fan_in_fan_out:
            delta = delta.T  # Conv1D-style layers store (in, out)
        if delta.shape != w.shape:
            raise CompatlmError(
                f"adapter {adapter.path}: module {name!r} gives ΔW of shape {list(delta.shape)}"
                f" but the base weight is {list(w.shape)}; the adapter is for another base size"
            )
        with torch.no_grad():
            w.add_(weight * delta)
    return len(adapter.modules)


def add_model_delta(
    model: PreTrainedModel,
    finetuned: PreTrainedModel,
    ft_base: PreTrainedModel,
    weight: float,
    names: tuple[str, str],
) -> int:
    """W += weight · (W_finetuned − W_ft_base) for every parameter; architectures must match."""
    p_new, p_ft, p_b = _params(model), _params(finetuned), _params(ft_base)
    for label, other in ((names[0], p_ft), (names[1], p_b)):
        extra = sorted(set(other) - set(p_new))
        lacking = sorted(set(p_new) - set(other))
        if extra or lacking:
            first = (extra or lacking)[0]
            raise CompatlmError(
                f"task vector {label}: parameter {first!r} is "
                f"{'not in the target base' if extra else 'missing'}; the architectures differ"
            )
    for name, p in p_new.items():
        if p_ft[name].shape != p.shape or p_b[name].shape != p.shape:
            raise CompatlmError(
                f"task vector {names[0]}: parameter {name!r} has shape {list(p_ft[name].shape)}"
                f" (its base {list(p_b[name].shape)}) but the target base has {list(p.shape)};"
                " the architectures differ"
            )
    with torch.no_grad():
        for name, p in p_new.items():
            p.add_(weight * (p_ft[name].float() - p_b[name].float()))
    return len(p_new)


def merge_full(
    base: ModelSpec,
    out: Path,
    *,
    adapters: list[tuple[LoraAdapter, float]] | None = None,
    models: list[tuple[str, str, float]] | None = None,
    runtime: RuntimeConfig | None = None,
) -> dict[str, Any]:
    """Write ``base + Σ`` deltas as a full model (safetensors + tokenizer) into ``out``.

    ``adapters``: (adapter, ω) pairs; ``models``: (fine-tuned dir, its base dir, ω) triples.
    Returns details for the manifest (dtype written, counts).
    """
    runtime = runtime or RuntimeConfig()
    adapters, models = adapters or [], models or []
    model = load_base(base, runtime, CPU, torch.float32)
    tokenizer = load_tokenizer(base, runtime)
    n_modules = 0
    for ad, w in adapters:
        n_modules += add_lora_delta(model, ad, w)
    for ft_dir, ft_base_dir, w in models:
        ft = load_base(ModelSpec.parse(ft_dir), runtime, CPU, torch.float32)
        ftb = load_base(ModelSpec.parse(ft_base_dir), runtime, CPU, torch.float32)
        add_model_delta(model, ft, ftb, w, (ft_dir, ft_base_dir))
        del ft, ftb  # free two full models before the next vector
    dtype = resolve_dtype(runtime.dtype, CPU)
    model = model.to(dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    log.info("merged weights written to %s (%s)", out, dtype)
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "lora_modules_merged": n_modules,
        "full_vectors": len(models),
    }
