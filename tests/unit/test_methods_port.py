"""Port (PortLLM): the old adapter on the new base, ΔW scaled exactly by alpha."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from compatlm.config import build_config
from compatlm.errors import CompatlmError
from compatlm.methods.config import PortConfig
from compatlm.methods.port import port_adapter
from compatlm.methods.registry import get_method
from compatlm.models import load_model
from compatlm.spec import ModelSpec

IDS = torch.tensor([[1, 5, 9, 12, 40, 7]])


def _logits(spec: str) -> torch.Tensor:
    with torch.no_grad():
        return load_model(spec).model(input_ids=IDS).logits


def _deltas(adapter) -> dict[str, torch.Tensor]:
    """ΔW per module straight from the saved files: (lora_alpha / r) · B @ A."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    sd = load_file(str(adapter / "adapter_model.safetensors"))
    s = cfg["lora_alpha"] / cfg["r"]
    return {
        k.removesuffix(".lora_A.weight"): s * sd[k.replace("lora_A", "lora_B")] @ sd[k]
        for k in sd
        if k.endswith(".lora_A.weight")
    }


def _build(tiny_family, out, alpha) -> str:
    cfg = PortConfig(
        old=f"{tiny_family['old']}+{tiny_family['old_adapter']}",
        new=str(tiny_family["new"]),
        alpha=alpha,
    )
    return get_method("port").build(cfg, out)


def test_port_alpha_scales_delta_exactly(tiny_family, tmp_path):
    spec = _build(tiny_family, tmp_path / "c", 0.3)
    assert spec == f"{tiny_family['new']}+{tmp_path / 'c' / 'adapter'}"
    old = _deltas(tiny_family["old_adapter"])
    new = _deltas(tmp_path / "c" / "adapter")
    assert sorted(new) == sorted(old) and len(old) == 8  # 2 layers x q,k,v,o
    for name, d in old.items():
        torch.testing.assert_close(new[name], 0.3 * d, rtol=0, atol=1e-6)
    cfg = json.loads((tmp_path / "c" / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_family["new"])
    manifest = json.loads((tmp_path / "c" / "candidate.json").read_text())
    assert manifest["method"] == "port" and manifest["spec"] == spec
    assert "trained on base" in manifest["warnings"][0]  # the adapter records the old base


def test_port_alpha_one_equals_old_adapter_on_new_base(tiny_family, tmp_path):
    spec = _build(tiny_family, tmp_path / "c", 1.0)
    direct = _logits(f"{tiny_family['new']}+{tiny_family['old_adapter']}")
    torch.testing.assert_close(_logits(spec), direct, rtol=0, atol=0)


def test_port_alpha_zero_is_the_bare_new_base(tiny_family, tmp_path):
    spec = _build(tiny_family, tmp_path / "c", 0.0)
    torch.testing.assert_close(_logits(spec), _logits(str(tiny_family["new"])), rtol=0, atol=1e-6)


def test_port_of_wide_adapter_onto_new_is_refused(tiny_family, tmp_path):
    with pytest.raises(CompatlmError, match="another size"):
        port_adapter(
            tiny_family["wide_adapter"], ModelSpec(str(tiny_family["new"])), tmp_path / "a"
        )
    assert not (tmp_path / "a").exists()


def test_port_negative_alpha_is_refused(tiny_family, tmp_path):
    with pytest.raises(CompatlmError, match="alpha: must be >= 0"):
        port_adapter(
            tiny_family["old_adapter"], ModelSpec(str(tiny_family["new"])), tmp_path, alpha=-0.1
        )
    data = {"old": "a+b", "new": "c", "alpha": -1}
    with pytest.raises(CompatlmError, match="'alpha'.*greater than or equal to 0"):
        build_config(PortConfig, data)


def test_port_needs_an_old_adapter(tiny_family, tmp_path):
    cfg = PortConfig(old=str(tiny_family["old"]), new=str(tiny_family["new"]))
    with pytest.raises(CompatlmError, match="has no adapter"):
        get_method("port").build(cfg, tmp_path / "c")
