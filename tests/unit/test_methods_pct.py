"""PCT (focal distillation) as a registry method: its config is the compat recipe with PCT's
mask, kd_weight and focal weights; it refuses settings that are not PCT; it builds a candidate
whose every loss token follows the old model."""

from __future__ import annotations

import json

import pytest
import yaml
from pydantic import ValidationError

from compatlm.config import build_config, dump_config
from compatlm.errors import CompatlmError
from compatlm.methods.pct import PctConfig, pct_config
from compatlm.methods.registry import get_method
from compatlm.train.config import TrainCompatConfig

BASE = {"old": "o+a", "new": "n+b", "task": {"name": "t", "path": "x"}}


def test_defaults_are_the_demo_settings():
    cfg = build_config(get_method("pct").config_cls, BASE)
    assert isinstance(cfg, PctConfig) and isinstance(cfg, TrainCompatConfig)
    assert (cfg.mask, cfg.kd_weight) == ("old_only", 0.5)
    assert cfg.focal is not None and (cfg.focal.alpha, cfg.focal.beta) == (1.0, 5.0)
    # The MUSCLE defaults differ in exactly those three settings.
    muscle = build_config(TrainCompatConfig, BASE).model_dump()
    diff = {k for k, v in cfg.model_dump().items() if muscle[k] != v}
    assert diff == {"mask", "kd_weight", "focal"}


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"mask": "student_wrong"}, "field 'mask': PCT distils every token from the old model"),
        ({"kd_weight": 1.0}, "field 'kd_weight': PCT keeps both the task loss"),
        ({"kd_weight": 0.0}, "must be in (0, 1), found 0.0"),
    ],
)
def test_settings_that_are_not_pct_are_refused(override, fragment):
    with pytest.raises(CompatlmError) as err:
        build_config(PctConfig, {**BASE, **override}, "pct.yaml")
    assert str(err.value).startswith("pct.yaml: field")
    assert fragment in str(err.value)
    with pytest.raises(ValidationError, match="PCT needs its instance weights"):
        PctConfig.model_validate({**BASE, "focal": None})


def test_pct_config_of_a_muscle_config_keeps_data_and_budget():
    muscle = build_config(
        TrainCompatConfig,
        {**BASE, "mask": "old_correct", "kd_weight": 1.0, "optim": {"lr": 0.02, "epochs": 3}},
    )
    pct = pct_config(muscle)
    assert isinstance(pct, PctConfig)
    before, after = muscle.model_dump(), pct.model_dump()
    assert list(before) == list(after)  # same keys, same order: config.yaml reads alike
    assert {k for k in before if before[k] != after[k]} == {"mask", "kd_weight", "focal"}
    assert pct_config(muscle, focal={"alpha": 0.0, "beta": 2.0}).focal.beta == 2.0
    assert yaml.safe_load(dump_config(pct))["mask"] == "old_only"


def test_build_refuses_a_muscle_config(tmp_path):
    with pytest.raises(CompatlmError, match="pct: expected a PCT config, found TrainCompatConfig"):
        get_method("pct").build(build_config(TrainCompatConfig, BASE), tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_pct_builds_through_the_registry(tiny_family, tmp_path):
    from compatlm.models import load_model

    data = tmp_path / "train.jsonl"
    row = {"prompt": "Question: what color is the sky? Answer:", "reference": " blue"}
    data.write_text("".join(json.dumps({"id": f"g{i}", **row}) + "\n" for i in range(4)))
    method = get_method("pct")
    cfg = build_config(
        method.config_cls,
        {
            "old": f"{tiny_family['old']}+{tiny_family['old_adapter']}",
            "new": f"{tiny_family['new']}+{tiny_family['new_adapter']}",
            "task": {"name": "toy", "path": str(data), "kind": "generation"},
            "optim": {"max_steps": 1, "batch_size": 2},
            "val_fraction": 0.25,
            "focal": {"alpha": 1.0, "beta": 3.0},
            "runtime": {"progress": False, "device": "cpu"},
        },
    )
    out = tmp_path / "pct"
    spec = method.build(cfg, out)
    assert spec == f"{tiny_family['new']}+{out / 'adapter'}"
    manifest = json.loads((out / "candidate.json").read_text())
    assert manifest["method"] == "pct" and manifest["artefact"] == "adapter"
    assert manifest["details"]["focal"] == {"alpha": 1.0, "beta": 3.0}
    assert manifest["details"]["kd_weight"] == 0.5
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert (recorded["mask"], recorded["focal"]["beta"]) == ("old_only", 3.0)
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["settings"]["focal"] == {"alpha": 1.0, "beta": 3.0}
    share = diag["total"]["old_share"]
    assert share["denominator"] > 0 and share["numerator"] == share["denominator"]  # old_only
    assert load_model(spec).spec.adapter == str(out / "adapter")
