"""load_model guard rails on tiny offline models."""

from __future__ import annotations

import shutil

import pytest
import torch

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.models import (
    first_tokenizer_difference,
    load_model,
    require_same_tokenizer,
    tokenizer_fingerprint,
)


def _logits(loaded, ids):
    with torch.no_grad():
        return loaded.model(input_ids=ids).logits


def test_load_with_adapter_changes_outputs_and_is_fresh(tiny_family):
    ids = torch.tensor([[1, 5, 9, 12]])
    plain = load_model(str(tiny_family["new"]))
    with_ad = load_model(f"{tiny_family['new']}+{tiny_family['new_adapter']}")
    again = load_model(f"{tiny_family['new']}+{tiny_family['new_adapter']}")
    assert not torch.allclose(_logits(plain, ids), _logits(with_ad, ids))
    assert torch.equal(_logits(with_ad, ids), _logits(again, ids))
    assert with_ad.model is not again.model
    assert not any(p.requires_grad for p in with_ad.model.parameters())


def test_trainable_only_lora(tiny_family):
    loaded = load_model(f"{tiny_family['new']}+{tiny_family['new_adapter']}", trainable=True)
    names = [n for n, p in loaded.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)


def test_missing_base_path(tmp_path):
    with pytest.raises(CompatlmError, match="does not exist"):
        load_model(str(tmp_path / "nope"))


def test_adapter_of_other_size_is_refused(tiny_family):
    with pytest.raises(CompatlmError, match="shape"):
        load_model(f"{tiny_family['new']}+{tiny_family['wide_adapter']}")


def test_adapter_dir_without_config(tiny_family, tmp_path):
    with pytest.raises(CompatlmError, match="adapter_config.json"):
        load_model(f"{tiny_family['new']}+{tmp_path}")


def test_adapter_for_other_architecture(tiny_family, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "gpt_adapter"
    shutil.copytree(tiny_family["new_adapter"], bad)
    sd = load_file(bad / "adapter_model.safetensors")
    renamed = {k.replace("self_attn.q_proj", "attn.c_attn"): v for k, v in sd.items()}
    save_file(renamed, bad / "adapter_model.safetensors")
    with pytest.raises(CompatlmError, match="another architecture"):
        load_model(f"{tiny_family['new']}+{bad}")


def test_pickle_weights_refused_by_default(tiny_family, tmp_path):
    from safetensors.torch import load_file

    # transformers >= 5 only writes safetensors, so build the legacy layout by hand.
    d = tmp_path / "pickled"
    d.mkdir()
    for f in tiny_family["old"].iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, d / f.name)
    state = load_file(tiny_family["old"] / "model.safetensors")
    torch.save(state, d / "pytorch_model.bin")
    with pytest.raises(CompatlmError, match="pickle"):
        load_model(str(d))
    assert load_model(str(d), runtime=RuntimeConfig(allow_pickle=True)).model is not None


def test_adapter_recorded_on_other_base_only_warns(tiny_family, caplog):
    # old adapter on the new base: same shapes, other recorded base -> a warning, not an error
    loaded = load_model(f"{tiny_family['new']}+{tiny_family['old_adapter']}")
    assert loaded.model is not None
    assert any("porting" in r.getMessage() for r in caplog.records)


def test_tokenizer_difference_is_named(tiny_tokenizer):
    from helpers import make_tokenizer

    other = make_tokenizer(vocab_size=300)
    assert first_tokenizer_difference(tiny_tokenizer, tiny_tokenizer) is None
    diff = first_tokenizer_difference(tiny_tokenizer, other)
    assert diff is not None
    assert tokenizer_fingerprint(tiny_tokenizer) != tokenizer_fingerprint(other)
    with pytest.raises(CompatlmError, match="token-level distillation needs a shared vocabulary"):
        require_same_tokenizer(tiny_tokenizer, other, "token-level distillation")
