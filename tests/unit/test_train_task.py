"""``train_task``: the run directory, a loadable adapter with its model card, continuing an
adapter, and the run-directory refusals."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from compatlm.config import RuntimeConfig, build_config
from compatlm.errors import CompatlmError
from compatlm.models import load_model
from compatlm.paths import BOOKKEEPING
from compatlm.spec import ModelSpec
from compatlm.train.config import TrainTaskConfig
from compatlm.train.recipes.task import train_task

CPU = {"device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def gen_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "gen.jsonl"
    rows = [
        {"id": f"g{i}", "prompt": f"Alice has {i} apples. How many apples?", "reference": str(i)}
        for i in range(6)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _cfg(base, data, **kw) -> TrainTaskConfig:
    raw = {
        "base": str(base),
        "task": {"name": "apples", "path": data},
        "lora": {"r": 2, "alpha": 4},
        "optim": {"epochs": 2, "batch_size": 2, "lr": 0.05},
        "runtime": CPU,
        **kw,
    }
    return build_config(TrainTaskConfig, raw)


def test_run_directory_and_loadable_adapter(tiny_family, gen_data, tmp_path):
    adapter = train_task(_cfg(tiny_family["old"], gen_data), tmp_path)
    assert adapter == tmp_path / "adapter"
    # compatlm's bookkeeping (run marker, lock file) aside, exactly the documented files:
    assert {p.name for p in tmp_path.iterdir()} - set(BOOKKEEPING) == {
        "config.yaml",
        "env.json",
        "adapter",
        "train_log.jsonl",
        "checkpoint",
    }
    assert {p.name for p in adapter.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
    }
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["lora"]["r"] == 2 and config["val_fraction"] == 0.2
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["seed"] == 0 and env["num_processes"] == 1
    rows = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all({"train_loss", "val_ce"} <= r.keys() for r in rows)
    card = (adapter / "README.md").read_text()
    assert "## Resolved config" in card and "Best epoch" in card
    # all-linear LoRA: every projection, never the output head.
    targets = json.loads((adapter / "adapter_config.json").read_text())["target_modules"]
    assert {t.rsplit(".", 1)[-1] for t in targets} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert len(targets) == 2 * 7  # two layers
    loaded = load_model(
        ModelSpec(str(tiny_family["old"]), adapter=str(adapter)), runtime=RuntimeConfig(**CPU)
    )
    ids = torch.tensor([[1, 5, 9, 20]])
    base = load_model(ModelSpec(str(tiny_family["old"])), runtime=RuntimeConfig(**CPU)).model
    with torch.no_grad():
        assert not torch.equal(loaded.model(ids).logits, base(ids).logits)  # the adapter acts


def test_continue_an_existing_adapter(tiny_family, gen_data, tmp_path):
    base = f"{tiny_family['new']}+{tiny_family['new_adapter']}"
    train_task(_cfg(base, gen_data, lora=None), tmp_path)
    start = load_file(str(tiny_family["new_adapter"] / "adapter_model.safetensors"))
    trained = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert trained.keys() == start.keys()  # the same modules, r = 4 as saved
    assert all(trained[k].shape == start[k].shape for k in start)
    assert any(not torch.equal(trained[k], start[k]) for k in start)


def test_refuses_non_empty_out_and_changed_resume(tiny_family, gen_data, tmp_path):
    (tmp_path / "stray.txt").write_text("x")
    with pytest.raises(CompatlmError, match="not empty; pass --overwrite"):
        train_task(_cfg(tiny_family["old"], gen_data), tmp_path)
    run = tmp_path / "run"
    train_task(_cfg(tiny_family["old"], gen_data, optim={"epochs": 1, "batch_size": 2}), run)
    changed = _cfg(tiny_family["old"], gen_data, optim={"epochs": 1, "batch_size": 3})
    with pytest.raises(CompatlmError, match=r"config differs .*optim.batch_size: 2 -> 3"):
        train_task(changed, run, resume=True)
    # Resuming a finished run with the same config trains nothing more and keeps the adapter.
    before = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    same = _cfg(tiny_family["old"], gen_data, optim={"epochs": 1, "batch_size": 2})
    train_task(same, run, resume=True)
    after = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
