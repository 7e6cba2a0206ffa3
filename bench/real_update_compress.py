"""The "new" base of ``bench/real_update.py``: the old base compressed for deployment.

Owns building, once, a local Hugging Face safetensors directory from a base directory by
compressing every MLP weight ``W`` (``gate_proj``, ``up_proj``, ``down_proj``): optionally its
best rank-``r`` approximation ``U_r S_r V_rᵀ`` (truncated SVD; PELA, Guo et al. 2023, arXiv
2310.10700, compresses pretrained models this way before a short distillation), then optionally
unstructured magnitude pruning (the smallest ``prune`` fraction of |w| per matrix set to 0, the
usual 50%-sparsity deployment target).

Why this update: it is what a team does to ship a base on smaller hardware, it keeps the
tokenizer, the architecture and every tensor shape (factors are multiplied back and pruned
weights stay as zeros, so a LoRA trained on the old base loads on the new one: port /
interpolate / task arithmetic apply), and it changes the model's knowledge unevenly — the flips
MUSCLE is meant to reduce. Without PELA's distillation the SVD is harsh on SmolLM2 (its MLP
spectra are flat: rank 288 of 576 leaves 40-49% relative Frobenius error per matrix), which is
why the study prunes by default (measured numbers in ``bench/real_update.py``).

The directory keeps the source's tokenizer files byte for byte and its ``tie_word_embeddings``
(SmolLM2 ties its output head to the input embeddings, so task LoRAs there must not target
``lm_head``; compatlm refuses it). ``compression.json`` records the recipe and, per matrix, the
relative Frobenius error; a directory whose recipe differs is rebuilt, the same one reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

MLP_NAMES = ("gate_proj", "up_proj", "down_proj")
RECIPE_VERSION = 1
_WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".gguf")
# Written anew (config) or describing the source, not this directory (compatlm's GGUF manifest).
_NOT_COPIED = ("config.json", "manifest.json", "compression.json", "model.safetensors.index.json")


def low_rank(weight: Any, rank: int) -> Any:
    """The best rank-``rank`` approximation of ``weight`` (out, in) in Frobenius norm."""
    import torch

    w = weight.detach().to(torch.float64)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)  # (out, k) (k,) (k, in)
    r = min(rank, s.numel())
    return ((u[:, :r] * s[:r]) @ vh[:r]).to(weight.dtype)  # (out, in)


def magnitude_prune(weight: Any, fraction: float) -> Any:
    """``weight`` with its smallest ``fraction`` of entries by |w| set to zero."""
    import torch

    if fraction <= 0:
        return weight
    k = int(weight.numel() * fraction)
    if k == 0:
        return weight
    threshold = weight.abs().flatten().kthvalue(k).values
    return torch.where(weight.abs() <= threshold, torch.zeros_like(weight), weight)


def recipe(source: Path, rank: int | None, prune: float) -> dict[str, Any]:
    config = (source / "config.json").read_bytes()
    return {
        "version": RECIPE_VERSION,
        "source": str(source.resolve()),
        "source_config_sha256": hashlib.sha256(config).hexdigest(),
        "method": "+".join(
            (["truncated_svd_mlp"] if rank else []) + (["magnitude_prune_mlp"] if prune else [])
        ),
        "rank": rank,
        "prune": prune,
    }


def compress_base(source: Path, out: Path, *, rank: int | None, prune: float = 0.0) -> Path:
    """Build (or reuse) the compressed copy of the base directory ``source`` at ``out``
    (``rank`` None: no SVD; ``prune`` 0: no pruning; at least one of them)."""
    if not rank and not prune:
        raise ValueError("give an SVD rank, a prune fraction or both")
    want = recipe(source, rank, prune)
    manifest = out / "compression.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("recipe") == want:
        return out
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    errors: dict[str, float] = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] not in MLP_NAMES:
                continue
            w = module.weight  # (out, in)
            new = magnitude_prune(low_rank(w, rank) if rank else w, prune)
            errors[name] = float((new - w).norm() / w.norm())
            w.copy_(new)
    if not errors:
        raise ValueError(f"{source}: no MLP projections named {', '.join(MLP_NAMES)}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # Tokenizer and other side files byte for byte (the same tokenizer, not a re-saved one).
    for f in sorted(source.iterdir()):
        skip = f.name.endswith(_WEIGHT_FILES) or f.name in _NOT_COPIED
        if f.is_file() and not skip:
            shutil.copy2(f, tmp / f.name)
    model.save_pretrained(tmp, safe_serialization=True)
    rel = sorted(errors.values())
    doc = {
        "recipe": want,
        "tie_word_embeddings": bool(model.config.tie_word_embeddings),
        "matrices": len(errors),
        "relative_frobenius_error": {
            "min": rel[0],
            "median": rel[len(rel) // 2],
            "max": rel[-1],
        },
        "per_matrix": errors,
    }
    (tmp / "compression.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
