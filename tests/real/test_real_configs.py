"""The real-model example configs (configs/real_*.yaml) validate as written, without a model.

They name the GGUF files ``make install-real`` links under runs/real, so running them is the
job of test_real_models.py; here each one is only resolved and checked by ``compatlm
validate`` (keys, types, task files, gate conditions) from the repository root, with model
loading made to fail so that the check provably loads none.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from compatlm.cli import main

ROOT = Path(__file__).resolve().parents[2]
REAL_CONFIGS = sorted((ROOT / "configs").glob("real_*.yaml"))

pytestmark = pytest.mark.real


def test_there_are_real_configs():
    assert REAL_CONFIGS, "configs/real_*.yaml: none found"


@pytest.mark.parametrize("path", REAL_CONFIGS, ids=lambda p: p.stem)
def test_real_config_validates_without_loading_a_model(path, monkeypatch, capsys):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError(f"{path.name}: validate loaded a model")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.chdir(ROOT)  # the config's paths are relative to the repository root
    header = path.read_text(encoding="utf-8").splitlines()[0]
    argv = shlex.split(header.split("compatlm ", 1)[1])
    assert argv[:2] == ["eval", f"configs/{path.name}"], f"{path.name}: header {header!r}"
    assert main(["validate", f"configs/{path.name}"]) == 0, capsys.readouterr().err
    resolved = yaml.safe_load(capsys.readouterr().out)
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert (resolved["old"], resolved["new"]) == (written["old"], written["new"])
    assert [t["name"] for t in resolved["tasks"]] == [t["name"] for t in written["tasks"]]
