"""Interpolate (BCWI): exact ΔW = α·ΔW_old + (1 − α)·ΔW_new, as adapter and as merged weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from compatlm.config import build_config
from compatlm.errors import CompatlmError
from compatlm.methods.config import InterpolateConfig
from compatlm.methods.interpolate import interpolate_adapters
from compatlm.methods.registry import get_method
from compatlm.models import load_model
from compatlm.spec import ModelSpec

IDS = torch.tensor([[1, 5, 9, 12, 40, 7]])
PREFIX = "base_model.model."


def _deltas(adapter) -> dict[str, torch.Tensor]:
    """ΔW per module from the saved files: (lora_alpha / r) · B @ A (no rank/alpha patterns)."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert not cfg["rank_pattern"] and not cfg["alpha_pattern"] and not cfg["use_rslora"]
    sd = load_file(str(adapter / "adapter_model.safetensors"))
    s = cfg["lora_alpha"] / cfg["r"]
    return {
        k.removeprefix(PREFIX).removesuffix(".lora_A.weight"): s
        * sd[k.replace("lora_A", "lora_B")]
        @ sd[k]
        for k in sd
        if k.endswith(".lora_A.weight")
    }


def _expected(tiny_family, alpha):
    old, new = _deltas(tiny_family["old_adapter"]), _deltas(tiny_family["new_adapter"])
    return {n: alpha * old[n] + (1 - alpha) * new[n] for n in old}


def _direct_model(base, deltas):
    """The new base with its weights set to W + ΔW by hand."""
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    mods = dict(model.named_modules())
    with torch.no_grad():
        for name, d in deltas.items():
            mods[name].weight += d
    return model


def _cfg(tiny_family, **kw) -> InterpolateConfig:
    return InterpolateConfig(
        old=f"{tiny_family['old']}+{tiny_family['old_adapter']}",
        new=f"{tiny_family['new']}+{tiny_family['new_adapter']}",
        **kw,
    )


def test_interpolate_adapter_is_exact_in_delta_space(tiny_family, tmp_path):
    spec = get_method("interpolate").build(_cfg(tiny_family, alpha=0.3), tmp_path / "c")
    adapter = tmp_path / "c" / "adapter"
    assert spec == f"{tiny_family['new']}+{adapter}"
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"]) == (8, 8)  # rank r_old + r_new, scaling exactly 1
    got, want = _deltas(adapter), _expected(tiny_family, 0.3)
    assert sorted(got) == sorted(want) and len(want) == 8
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6)
    # The candidate, loaded like any model, equals the new base with W + ΔW set directly.
    direct = _direct_model(tiny_family["new"], want)
    with torch.no_grad():
        cand = load_model(spec).model(input_ids=IDS).logits
        ref = direct(input_ids=IDS).logits
        plain_new = load_model(str(tiny_family["new"])).model(input_ids=IDS).logits
    torch.testing.assert_close(cand, ref, rtol=0, atol=1e-5)
    assert (cand - plain_new).abs().max() > 1e-2  # the check above is not vacuous


def test_interpolate_merged_weights_are_exact(tiny_family, tmp_path):
    spec = get_method("interpolate").build(
        _cfg(tiny_family, alpha=0.6, output="merged"), tmp_path / "c"
    )
    assert spec == str(tmp_path / "c" / "model")
    want = _expected(tiny_family, 0.6)
    saved = load_file(str(tmp_path / "c" / "model" / "model.safetensors"))
    base = load_file(str(tiny_family["new"] / "model.safetensors"))
    assert sorted(saved) == sorted(base)
    for key, w in base.items():
        delta = want.get(key.removesuffix(".weight"), torch.zeros_like(w))
        torch.testing.assert_close(saved[key], w + delta, rtol=0, atol=1e-6)
    direct = _direct_model(tiny_family["new"], want)
    with torch.no_grad():
        cand = load_model(spec).model(input_ids=IDS).logits
        torch.testing.assert_close(cand, direct(input_ids=IDS).logits, rtol=0, atol=1e-5)
    assert (tmp_path / "c" / "model" / "tokenizer.json").is_file()


def test_interpolate_endpoints(tiny_family, tmp_path):
    """alpha=0 is the new adapter's ΔW, alpha=1 the old adapter's (both on the new base)."""
    for alpha, src in ((0.0, "new_adapter"), (1.0, "old_adapter")):
        out = tmp_path / f"a{alpha}"
        get_method("interpolate").build(_cfg(tiny_family, alpha=alpha), out)
        got, want = _deltas(out / "adapter"), _deltas(tiny_family[src])
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6)


def test_interpolate_alpha_out_of_range(tiny_family, tmp_path):
    with pytest.raises(CompatlmError, match=r"alpha.*\[0, 1\].*found 1.5"):
        build_config(InterpolateConfig, {"old": "a+b", "new": "c+d", "alpha": 1.5})
    with pytest.raises(CompatlmError, match=r"alpha: must be in \[0, 1\]"):
        interpolate_adapters(
            tiny_family["old_adapter"],
            tiny_family["new_adapter"],
            ModelSpec(str(tiny_family["new"])),
            tmp_path,
            alpha=-0.2,
        )
    # Explicit extrapolation is allowed and still exact.
    get_method("interpolate").build(
        _cfg(tiny_family, alpha=1.5, allow_extrapolation=True), tmp_path / "x"
    )
    got, want = _deltas(tmp_path / "x" / "adapter"), _expected(tiny_family, 1.5)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6)


def test_interpolate_module_sets_must_match_unless_zero(tiny_family, tmp_path):
    from helpers import save_lora

    q_only = save_lora(tiny_family["new"], tmp_path / "q_only", seed=5, r=2, targets=["q_proj"])
    with pytest.raises(CompatlmError, match="does not target .*missing_modules=zero"):
        interpolate_adapters(
            tiny_family["old_adapter"],
            q_only,
            ModelSpec(str(tiny_family["new"])),
            tmp_path / "e",
            alpha=0.5,
        )
    interpolate_adapters(
        tiny_family["old_adapter"],
        q_only,
        ModelSpec(str(tiny_family["new"])),
        tmp_path / "z",
        alpha=0.25,
        missing_modules="zero",
    )
    got = _deltas(tmp_path / "z" / "adapter")
    old, q = _deltas(tiny_family["old_adapter"]), _deltas(q_only)
    assert len(got) == 8
    for name, d in old.items():
        want = 0.25 * d + 0.75 * q.get(name, torch.zeros_like(d))
        torch.testing.assert_close(got[name], want, rtol=0, atol=1e-6)


def test_interpolate_refuses_adapter_of_other_size(tiny_family, tmp_path):
    with pytest.raises(CompatlmError, match="another size"):
        interpolate_adapters(
            tiny_family["wide_adapter"],
            tiny_family["new_adapter"],
            ModelSpec(str(tiny_family["new"])),
            tmp_path,
            alpha=0.5,
        )
