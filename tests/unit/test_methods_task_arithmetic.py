"""Task arithmetic: base + Σ ω·τ, exact for adapters (stacked LoRA) and full models (merged)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from compatlm.config import build_config
from compatlm.errors import CompatlmError
from compatlm.methods.config import TaskArithmeticConfig, TaskVector
from compatlm.methods.registry import get_method
from compatlm.methods.task_arithmetic import size_ratio_weight, task_arithmetic
from compatlm.spec import ModelSpec

PREFIX = "base_model.model."


def _deltas(adapter) -> dict[str, torch.Tensor]:
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    sd = load_file(str(adapter / "adapter_model.safetensors"))
    s = cfg["lora_alpha"] / cfg["r"]
    return {
        k.removeprefix(PREFIX).removesuffix(".lora_A.weight"): s
        * sd[k.replace("lora_A", "lora_B")]
        @ sd[k]
        for k in sd
        if k.endswith(".lora_A.weight")
    }


def test_task_arithmetic_of_adapters_is_exact(tiny_family, tmp_path):
    cfg = TaskArithmeticConfig(
        base=str(tiny_family["new"]),
        vectors=[
            TaskVector(adapter=str(tiny_family["old_adapter"]), weight=0.7),
            TaskVector(adapter=str(tiny_family["new_adapter"]), weight=-0.2),
        ],
    )
    spec = get_method("task_arithmetic").build(cfg, tmp_path / "c")
    assert spec == f"{tiny_family['new']}+{tmp_path / 'c' / 'adapter'}"
    old, new = _deltas(tiny_family["old_adapter"]), _deltas(tiny_family["new_adapter"])
    got = _deltas(tmp_path / "c" / "adapter")
    assert sorted(got) == sorted(old)
    for name in old:
        torch.testing.assert_close(got[name], 0.7 * old[name] - 0.2 * new[name], rtol=0, atol=1e-6)
    manifest = json.loads((tmp_path / "c" / "candidate.json").read_text())
    assert manifest["details"]["weights"] == [0.7, -0.2]
    assert manifest["artefact"] == "adapter"


def test_task_arithmetic_with_full_model_vector_is_exact(tiny_family, tmp_path):
    # A "fine-tuned" old model: the old base with a known perturbation, so τ is known exactly.
    ft = AutoModelForCausalLM.from_pretrained(tiny_family["old"])
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    ft.save_pretrained(tmp_path / "ft")
    vectors = [
        TaskVector(model=str(tmp_path / "ft"), base=str(tiny_family["old"]), weight=0.5),
        TaskVector(adapter=str(tiny_family["new_adapter"]), weight=0.25),
    ]
    spec, details = task_arithmetic(ModelSpec(str(tiny_family["new"])), vectors, tmp_path / "c")
    assert spec.format() == str(tmp_path / "c" / "model") and details["dtype"] == "float32"
    saved = load_file(str(tmp_path / "c" / "model" / "model.safetensors"))
    new = load_file(str(tiny_family["new"] / "model.safetensors"))
    old = load_file(str(tiny_family["old"] / "model.safetensors"))
    tuned = load_file(str(tmp_path / "ft" / "model.safetensors"))
    lora = _deltas(tiny_family["new_adapter"])
    assert sorted(saved) == sorted(new)
    for key, w in new.items():
        want = w + 0.5 * (tuned[key] - old[key])
        want = want + 0.25 * lora.get(key.removesuffix(".weight"), torch.zeros_like(w))
        torch.testing.assert_close(saved[key], want, rtol=0, atol=1e-6)


def test_task_arithmetic_refuses_other_architectures(tiny_family, tmp_path):
    wide = [TaskVector(model=str(tiny_family["wide"]), base=str(tiny_family["wide"]))]
    with pytest.raises(CompatlmError, match="architectures differ"):
        task_arithmetic(ModelSpec(str(tiny_family["new"])), wide, tmp_path / "w")
    wide_ad = [TaskVector(adapter=str(tiny_family["wide_adapter"]))]
    with pytest.raises(CompatlmError, match="another size"):
        task_arithmetic(ModelSpec(str(tiny_family["new"])), wide_ad, tmp_path / "a")


def test_task_arithmetic_config_errors(tiny_family, tmp_path):
    with pytest.raises(CompatlmError, match="exactly one of adapter or model"):
        build_config(TaskArithmeticConfig, {"base": "b", "vectors": [{"weight": 1.0}]})
    with pytest.raises(CompatlmError, match="needs base"):
        build_config(TaskArithmeticConfig, {"base": "b", "vectors": [{"model": "m"}]})
    with pytest.raises(CompatlmError, match="'vectors'"):
        build_config(TaskArithmeticConfig, {"base": "b", "vectors": []})
    full = [TaskVector(model=str(tiny_family["old"]), base=str(tiny_family["old"]))]
    with pytest.raises(CompatlmError, match="output: 'adapter' needs every vector"):
        task_arithmetic(ModelSpec(str(tiny_family["new"])), full, tmp_path, output="adapter")
    with_adapter = ModelSpec.parse(f"{tiny_family['new']}+{tiny_family['new_adapter']}")
    with pytest.raises(CompatlmError, match="give the bare base"):
        task_arithmetic(with_adapter, full, tmp_path)


def test_size_ratio_weight():
    assert size_ratio_weight(250, 1000) == 0.25
    with pytest.raises(CompatlmError, match="n_general > 0"):
        size_ratio_weight(10, 0)
