"""LoRA adapters as exact ΔW factors: read, combine by concatenation, write.

A PEFT LoRA on a linear module adds ΔW = scaling · B @ A, with A: (r, in), B: (out, r) and
scaling = lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA; per-module overrides through
rank_pattern / alpha_pattern). A weighted sum of such updates is again a LoRA, *exactly*, by
stacking the factors::

    Σ_i w_i · s_i · B_i @ A_i  =  [w_1 s_1 B_1, …, w_n s_n B_n] @ [A_1; …; A_n]
                                   (out, Σr)                      (Σr, in)

and writing it with scaling 1 (lora_alpha = r). PEFT's own ``add_weighted_adapter(...,
combination_type="linear")`` mixes A and B separately, which is *not* the weighted sum of the
ΔWs; ``cat`` would be, but needs the adapters loaded into one model. This module does the algebra
on the saved tensors, so no base weights are loaded at all.

Modules whose stacked rank is below the adapter's common rank are zero-padded: zero rows of A and
zero columns of B add nothing, so the written ΔW stays exact while one ``r`` fits every module.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_bytes, atomic_write_json
from compatlm.models import adapter_config

PREFIX = "base_model.model."
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")


@dataclass
class LoraModule:
    """One adapted linear module: ΔW = scaling · B @ A."""

    A: torch.Tensor  # (r, in)
    B: torch.Tensor  # (out, r)
    scaling: float

    def delta(self) -> torch.Tensor:
        """ΔW in fp32, (out, in) — (in, out) for fan_in_fan_out layers, as stored."""
        return self.scaling * (self.B.float() @ self.A.float())


@dataclass
class LoraAdapter:
    path: Path
    config: dict[str, Any]
    modules: dict[str, LoraModule]  # module name in the base, e.g. model.layers.0.self_attn.q_proj

    @property
    def fan_in_fan_out(self) -> bool:
        return bool(self.config.get("fan_in_fan_out", False))


def load_adapter_tensors(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    st = path / "adapter_model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(st), device="cpu")
        except Exception as err:  # safetensors raises several private error types
            raise CompatlmError(f"{st}: unreadable safetensors file ({err})") from None
    if (path / "adapter_model.bin").is_file():
        if not allow_pickle:
            raise CompatlmError(
                f"adapter {path}: only adapter_model.bin (pickle) found; refused —"
                " pass runtime.allow_pickle=true if you trust it"
            )
        return torch.load(path / "adapter_model.bin", map_location="cpu", weights_only=True)
    raise CompatlmError(f"adapter {path}: no adapter_model.safetensors")


def module_scaling(cfg: dict[str, Any], module: str, rank: int, path: Path) -> float:
    """PEFT's scaling for ``module``: rank/alpha patterns first, then r and lora_alpha."""
    from peft.utils.other import get_pattern_key

    rank_pattern = cfg.get("rank_pattern") or {}
    alpha_pattern = cfg.get("alpha_pattern") or {}
    r = rank_pattern.get(get_pattern_key(rank_pattern.keys(), module), cfg.get("r", 8))
    alpha = alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), module), cfg.get("lora_alpha"))
    if r != rank:
        raise CompatlmError(
            f"adapter {path}: module {module!r} has rank {rank} in its tensors but the config"
            f" says r={r}; the adapter files are inconsistent"
        )
    if alpha is None:
        alpha = 8  # PEFT's LoraConfig default
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def read_lora(path: str | Path, *, allow_pickle: bool = False, why: str) -> LoraAdapter:
    """Parse a PEFT LoRA directory into per-module factors; ``why`` names the method for
    error messages. Only plain linear LoRA is accepted: anything whose update is not
    scaling·B@A (DoRA, LoRA bias, embedding LoRA, modules_to_save, trainable tokens) is refused
    rather than silently dropped."""
    path = Path(path)
    cfg = adapter_config(path)
    if cfg.get("peft_type", "LORA") != "LORA":
        raise CompatlmError(
            f"adapter {path}: peft_type {cfg.get('peft_type')!r}; {why} needs a LoRA adapter"
        )
    if cfg.get("use_dora"):
        raise CompatlmError(f"adapter {path}: DoRA adapter; {why} needs plain LoRA (ΔW = s·B·A)")
    tensors = load_adapter_tensors(path, allow_pickle)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if m is None:
            raise CompatlmError(
                f"adapter {path}: tensor {key!r} is not a linear LoRA factor (lora_A/lora_B);"
                f" {why} supports plain linear LoRA only"
            )
        parts.setdefault(m["module"].removeprefix(PREFIX), {})[m["which"]] = value
    if not parts:
        raise CompatlmError(f"adapter {path}: contains no LoRA weights")
    modules: dict[str, LoraModule] = {}
    for name, ab in sorted(parts.items()):
        if set(ab) != {"A", "B"}:
            raise CompatlmError(f"adapter {path}: module {name!r} lacks lora_A or lora_B")
        a, b = ab["A"], ab["B"]  # (r, in), (out, r)
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise CompatlmError(
                f"adapter {path}: module {name!r} has lora_A {list(a.shape)} and lora_B"
                f" {list(b.shape)}, which do not multiply"
            )
        modules[name] = LoraModule(a, b, module_scaling(cfg, name, a.shape[0], path))
    return LoraAdapter(path=path, config=cfg, modules=modules)


def stack_lora(
    terms: list[tuple[LoraAdapter, float]],
    *,
    missing: Literal["error", "zero"] = "zero",
    why: str,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Factors (A', B') with B' @ A' = Σ w·s·B@A per module (scaling 1), fp32.

    ``missing="error"`` refuses adapters that target different module sets; ``"zero"`` treats a
    module an adapter lacks as ΔW = 0 for that adapter (which is what the sum means anyway).
    """
    if not terms:
        raise CompatlmError(f"{why}: no adapters to combine")
    fifo = {ad.fan_in_fan_out for ad, _ in terms}
    if len(fifo) > 1:
        raise CompatlmError(
            f"{why}: adapters disagree on fan_in_fan_out; they are for other layers"
        )
    names = sorted(set().union(*(ad.modules for ad, _ in terms)))
    if missing == "error":
        for ad, _ in terms:
            lacking = [n for n in names if n not in ad.modules]
            if lacking:
                raise CompatlmError(
                    f"{why}: adapter {ad.path} does not target {lacking[0]!r}"
                    f" ({len(lacking)} module(s) differ); set missing_modules=zero to treat"
                    " them as ΔW = 0"
                )
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name in names:
        a_parts, b_parts = [], []
        shape = None
        for ad, w in terms:
            mod = ad.modules.get(name)
            if mod is None:
                continue
            this = (mod.B.shape[0], mod.A.shape[1])  # (out, in)
            if shape is not None and this != shape:
                raise CompatlmError(
                    f"{why}: module {name!r} is (out, in)={shape} in one adapter and {this} in"
                    f" {ad.path}; the adapters are for bases of different sizes"
                )
            shape = this
            a_parts.append(mod.A.float())  # (r_i, in)
            b_parts.append(w * mod.scaling * mod.B.float())  # (out, r_i)
        out[name] = (torch.cat(a_parts, 0), torch.cat(b_parts, 1))  # (Σr, in), (out, Σr)
    return out


def write_lora(
    path: Path,
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    template: dict[str, Any],
    base: str,
) -> Path:
    """Write ``factors`` as a PEFT adapter whose per-module ΔW is exactly B @ A (scaling 1).

    Every module gets the same rank r = max stacked rank (zero-padded), and lora_alpha = r, so
    PEFT's scaling lora_alpha / r is exactly 1.0 with no rank/alpha patterns needed.
    """
    r = max(a.shape[0] for a, _ in factors.values())
    tensors: dict[str, torch.Tensor] = {}
    for name, (a, b) in factors.items():
        pad = r - a.shape[0]
        if pad:
            a = torch.cat([a, a.new_zeros(pad, a.shape[1])], 0)  # (r, in)
            b = torch.cat([b, b.new_zeros(b.shape[0], pad)], 1)  # (out, r)
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b.contiguous()
    cfg = dict(template)
    cfg.update(
        base_model_name_or_path=base,
        r=r,
        lora_alpha=r,
        use_rslora=False,
        use_dora=False,
        rank_pattern={},
        alpha_pattern={},
        # Full module names: the written modules are exactly the ones with factors, whatever
        # suffixes or layer filters the source adapters used.
        target_modules=sorted(factors),
        layers_to_transform=None,
        layers_pattern=None,
        exclude_modules=None,
        modules_to_save=None,
        inference_mode=True,
        peft_type="LORA",
    )
    save_tensors(path / "adapter_model.safetensors", tensors)
    atomic_write_json(path / "adapter_config.json", cfg)
    return path


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save(tensors, metadata={"format": "pt"}))


def copy_adapter(
    src: Path, dst: Path, *, base: str, scale: float = 1.0, allow_pickle: bool = False
) -> Path:
    """Copy an adapter to ``dst`` for ``base``; with ``scale`` ≠ 1 every lora_B (and LoRA bias)
    tensor is multiplied by ``scale``, which scales each module's ΔW = s·B@A (+ bias) exactly."""
    cfg = adapter_config(src)
    tensors = load_adapter_tensors(src, allow_pickle)
    if scale != 1.0:
        if cfg.get("use_dora"):
            raise CompatlmError(
                f"adapter {src}: DoRA rescales weight norms, so scaling lora_B does not scale"
                " its update; only alpha=1 is supported for DoRA adapters"
            )
        for key in tensors:
            if "lora_" not in key:
                raise CompatlmError(
                    f"adapter {src}: tensor {key!r} is a full module copy (modules_to_save or"
                    " trainable tokens), not a ΔW; only alpha=1 is supported for it"
                )
        tensors = {
            k: (v.float() * scale).to(v.dtype)
            if (".lora_B." in k or "lora_embedding_B" in k)
            else v
            for k, v in tensors.items()
        }
    cfg["base_model_name_or_path"] = base
    save_tensors(dst / "adapter_model.safetensors", tensors)
    atomic_write_json(dst / "adapter_config.json", cfg)
    return dst


def adapter_summary(ad: LoraAdapter) -> dict[str, Any]:
    ranks = sorted({m.A.shape[0] for m in ad.modules.values()})
    return {"path": str(ad.path), "modules": len(ad.modules), "ranks": ranks}
