"""Same-budget controls (continue_ce, kd_new): derived from the MUSCLE config by one setting,
trained with exactly the MUSCLE run's steps, tokens, batch order and learning rates, registered
and buildable like any candidate, and built by the demo beside MUSCLE."""

from __future__ import annotations

import json

import pytest
import yaml

from compatlm.cli import main
from compatlm.config import build_config
from compatlm.errors import CompatlmError
from compatlm.methods.controls import CONTROLS, control_config
from compatlm.methods.registry import get_method
from compatlm.models import load_model
from compatlm.train.config import TrainCompatConfig
from compatlm.train.diagnostics import load_diagnostics


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mc.jsonl"
    rows = [
        {
            "id": f"q{i}",
            "context": f"Question: what color is item {i}? Answer:",
            "choices": ["blue", "red"],
            "label": i % 2,
        }
        for i in range(8)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _raw(fam, data, **kw) -> dict:
    return {
        "old": f"{fam['old']}+{fam['old_adapter']}",
        "new": f"{fam['new']}+{fam['new_adapter']}",
        "task": {"name": "mc", "path": data},
        "teacher_old": "cache",
        "mask_prompt": False,
        # Warm-up and accumulation make the schedule and the step count non-trivial.
        "optim": {"epochs": 2, "batch_size": 2, "grad_accum": 2, "warmup_steps": 2, "lr": 0.05},
        "runtime": {"device": "cpu", "progress": False},
        **kw,
    }


def _cfg(fam, data, **kw) -> TrainCompatConfig:
    return build_config(TrainCompatConfig, _raw(fam, data, **kw))


def test_a_control_is_the_muscle_config_with_one_setting_changed():
    cfg = build_config(
        TrainCompatConfig,
        {
            "old": "o+a",
            "new": "n+b",
            "task": {"name": "t", "path": "x"},
            "focal": {"alpha": 1, "beta": 2},
            "preset": "paper",
        },
    )
    base = cfg.model_dump()
    for name, changed in (("continue_ce", {"kd_weight": 0.0}), ("kd_new", {"mask": "new_only"})):
        got = control_config(cfg, name).model_dump()
        assert got["focal"] is None  # focal weights need teacher_old
        diff = {k for k in base if base[k] != got[k]}
        assert diff == {*changed, "focal"}, name
        assert all(got[k] == v for k, v in changed.items())
    with pytest.raises(CompatlmError, match="kd_new: kd_weight is 0"):
        control_config(cfg.model_copy(update={"kd_weight": 0.0}), "kd_new")
    with pytest.raises(CompatlmError, match="unknown control 'nope'; valid: continue_ce, kd_new"):
        control_config(cfg, "nope")


def test_controls_have_the_muscle_budget(tiny_family, data, tmp_path):
    cfg = _cfg(tiny_family, data)
    runs = {}
    for name in ("muscle", *CONTROLS):
        spec = get_method(name).build(cfg, tmp_path / name)
        runs[name] = tmp_path / name
        assert spec == f"{tiny_family['new']}+{tmp_path / name / 'adapter'}"
        manifest = json.loads((tmp_path / name / "candidate.json").read_text())
        assert manifest["method"] == name and manifest["artefact"] == "adapter"
        assert load_model(spec).spec.adapter == str(tmp_path / name / "adapter")
        for f in ("config.yaml", "env.json", "diagnostics.json", "budget.json"):
            assert (tmp_path / name / f).is_file(), (name, f)

    budgets = {n: json.loads((p / "budget.json").read_text()) for n, p in runs.items()}
    ref = budgets["muscle"]
    # 6 training rows at batch 2 → 3 micro-batches → 2 optimiser steps per epoch.
    assert ref["optimizer_steps"] == 4
    lrs = ref["lr_schedule"]["per_step"]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(0.025) and len(set(lrs)) > 2
    for name in CONTROLS:
        b = budgets[name]
        for key in ("optimizer_steps", "train_tokens", "epochs", "batch_order_fingerprint"):
            assert b[key] == ref[key], (name, key)
        assert b["lr_schedule"]["per_step"] == lrs, name
        assert b["lr_schedule"]["fingerprint"] == ref["lr_schedule"]["fingerprint"]

    recorded = {n: yaml.safe_load((p / "config.yaml").read_text()) for n, p in runs.items()}
    assert recorded["continue_ce"]["kd_weight"] == 0.0 and recorded["kd_new"]["mask"] == "new_only"
    assert recorded["continue_ce"]["mask_prompt"] is False  # the same training tokens

    diags = {n: load_diagnostics(p) for n, p in runs.items()}
    assert diags["muscle"]["objective"] == "muscle"
    assert diags["continue_ce"]["objective"] == "continue_ce"
    assert diags["kd_new"]["objective"] == "kd_new"
    assert diags["kd_new"]["total"]["old_share"]["numerator"] == 0
    assert diags["kd_new"]["total"]["student_wrong_old_right"]["value"] is None
    assert diags["kd_new"]["total"]["student_wrong_new_right"]["value"] is not None
    assert diags["muscle"]["total"]["old_share"]["numerator"] > 0
    # No teacher is loaded by the controls: only MUSCLE built teacher_old's cache.
    assert (runs["muscle"] / "teacher_cache").is_dir()
    assert not any((runs[n] / "teacher_cache").exists() for n in CONTROLS)


def test_cli_train_compat_control_and_build(tiny_family, data, tmp_path, capsys):
    raw = _raw(tiny_family, data, optim={"epochs": 1, "batch_size": 3})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "ce"
    assert main(["train", "compat", str(path), "--out", str(out), "--control", "continue_ce"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "diagnostics.json") in printed and str(out / "budget.json") in printed
    assert load_diagnostics(out)["objective"] == "continue_ce"
    code = main(["train", "compat", str(path), "--out", str(tmp_path / "x"), "--control", "nope"])
    assert code == 2

    assert main(["build", "kd_new", str(path), "--out", str(tmp_path / "kd")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(str(tmp_path / "kd/adapter"))


def test_build_help_lists_the_controls(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = capsys.readouterr().out
    assert "continue_ce" in text and "kd_new" in text


def test_demo_builds_continue_ce_beside_muscle_by_default():
    from compatlm.demo.alternatives import ALTERNATIVES
    from compatlm.demo.pipeline import DemoConfig, compat_mask_prompt, muscle_config

    cfg = DemoConfig()
    assert "continue_ce" in cfg.alternatives and "kd_new" not in cfg.alternatives
    assert "kd_new" in ALTERNATIVES  # opt-in
    family = _FakeFamily()
    tuned = build_config(
        DemoConfig,
        {"t_squared": True, "training": {"mask_prompt": True, "compat_mask_prompt": False}},
    )
    assert compat_mask_prompt(tuned) is False and compat_mask_prompt(cfg) is True
    m = muscle_config(tuned, family, "o+a", "n+b", "demo_piqa", 3)
    assert (m.mask_prompt, m.t_squared, m.optim.seed) == (False, True, 3)
    ce = control_config(m, "continue_ce")
    assert ce.kd_weight == 0.0 and ce.optim == m.optim and ce.task == m.task


class _FakeFamily:
    def task_kind(self, task: str) -> str:
        return "multiple_choice"

    def task_dir(self, task: str):
        from pathlib import Path

        return Path("/nonexistent") / task
