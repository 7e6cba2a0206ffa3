"""Training configs: the paper preset (arXiv 2407.09435, A.1), precedence, validation."""

from __future__ import annotations

import pytest
import yaml

from compatlm.config import build_config, load_config
from compatlm.errors import CompatlmError
from compatlm.train.config import TrainCompatConfig, TrainTaskConfig, preset_warnings

TASK = {"name": "t", "path": "x.jsonl"}


def test_defaults_are_muscle_defaults():
    cfg = build_config(TrainCompatConfig, {"old": "o+oa", "new": "n+na", "task": TASK})
    assert cfg.mask == "student_wrong"
    assert cfg.temperature == 2.0
    assert cfg.kd_weight == 1.0
    assert cfg.t_squared is False
    assert cfg.focal is None
    assert cfg.teacher_old == "live"
    assert cfg.topk == 64
    assert cfg.val_fraction == 0.2


def test_paper_preset_fills_a1_values():
    cfg = build_config(TrainTaskConfig, {"base": "b", "task": TASK, "preset": "paper"})
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (128, 256, 0.0)
    assert cfg.lora.target_modules == "all-linear"
    o = cfg.optim
    assert (o.lr, o.epochs, o.warmup_steps, o.weight_decay, o.grad_accum) == (1e-4, 10, 500, 0, 8)


def test_explicit_keys_win_over_the_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: b\ntask: {name: t, path: x.jsonl}\npreset: paper\noptim: {epochs: 2}\n")
    cfg = load_config(TrainTaskConfig, path, ["optim.lr=0.003", "lora.r=4"])
    assert cfg.optim.epochs == 2  # YAML beats the preset
    assert cfg.optim.lr == 0.003  # override beats the preset
    assert cfg.lora.r == 4
    assert cfg.lora.alpha == 256  # untouched preset value
    assert cfg.optim.grad_accum == 8


def test_compat_preset_has_no_lora_section():
    cfg = build_config(
        TrainCompatConfig, {"old": "o+a", "new": "n+b", "task": TASK, "preset": "paper"}
    )
    assert cfg.optim.lr == 1e-4 and cfg.optim.grad_accum == 8
    assert not hasattr(cfg, "lora")


def test_unknown_key_names_valid_siblings():
    with pytest.raises(CompatlmError, match=r"unknown key 'optim.learning_rate'.*lr"):
        build_config(TrainTaskConfig, {"base": "b", "task": TASK, "optim": {"learning_rate": 1}})


def test_kd_weight_range_and_teacher_choice():
    with pytest.raises(CompatlmError, match="kd_weight"):
        build_config(TrainCompatConfig, {"old": "o", "new": "n", "task": TASK, "kd_weight": 1.5})
    with pytest.raises(CompatlmError, match="teacher_old"):
        build_config(TrainCompatConfig, {"old": "o", "new": "n", "task": TASK, "teacher_old": "x"})


@pytest.mark.parametrize(
    ("name", "cls"),
    [("train_task.yaml", TrainTaskConfig), ("train_compat.yaml", TrainCompatConfig)],
)
def test_shipped_configs_load_and_name_their_command(name, cls):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / name
    first = path.read_text().splitlines()[0]
    recipe = name.removeprefix("train_").removesuffix(".yaml")
    assert first.startswith(f"# compatlm train {recipe} configs/{name} --out ")
    cfg = load_config(cls, path)
    assert cfg.preset == "paper" and cfg.optim.grad_accum == 8
    # the demo's training split, named as a file: a local JSONL has no splits to choose from
    assert str(cfg.task.path).endswith("/train.jsonl")


# --------------------------------------------------------------------------- paper preset knobs


@pytest.mark.parametrize("cls", [TrainTaskConfig, TrainCompatConfig])
def test_paper_preset_trains_on_the_whole_sequence_unless_told_otherwise(cls, tmp_path):
    """A.1: "We learn about the entire context and answer tokens" -> mask_prompt false."""
    raw = {"base": "b"} if cls is TrainTaskConfig else {"old": "o+a", "new": "n+b"}
    raw["task"] = TASK
    assert build_config(cls, raw).mask_prompt is True  # no preset: answer tokens only
    assert build_config(cls, {**raw, "preset": "paper"}).mask_prompt is False
    assert build_config(cls, {**raw, "preset": "paper", "mask_prompt": True}).mask_prompt is True
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**raw, "preset": "paper", "mask_prompt": False}))
    assert load_config(cls, path, ["mask_prompt=true"]).mask_prompt is True  # override wins


def test_preset_warns_when_r_changes_without_alpha():
    raw = {"base": "b", "task": TASK, "preset": "paper"}
    (msg,) = preset_warnings(build_config(TrainTaskConfig, {**raw, "lora": {"r": 4}}))
    assert msg == (
        "lora.r=4 under preset paper keeps the preset's lora.alpha=256: LoRA scale"
        " alpha/r = 64 instead of the paper's 2; set lora.alpha=8 to keep the paper's ratio"
    )
    assert (
        preset_warnings(build_config(TrainTaskConfig, {**raw, "lora": {"r": 4, "alpha": 8}})) == []
    )
    assert preset_warnings(build_config(TrainTaskConfig, raw)) == []  # r=128, alpha=256
    no_preset = build_config(TrainTaskConfig, {"base": "b", "task": TASK, "lora": {"r": 4}})
    assert preset_warnings(no_preset) == []
    compat = {"old": "o+a", "new": "n+b", "task": TASK, "preset": "paper"}
    assert preset_warnings(build_config(TrainCompatConfig, compat)) == []  # no LoRA of its own


def test_new_only_mask_refuses_focal_weights():
    raw = {"old": "o+a", "new": "n+b", "task": TASK, "mask": "new_only"}
    assert build_config(TrainCompatConfig, raw).mask == "new_only"
    with pytest.raises(CompatlmError, match="focal weights need teacher_old"):
        build_config(TrainCompatConfig, {**raw, "focal": {"alpha": 1, "beta": 1}})


def test_preset_footguns_are_logged_and_recorded(tiny_family, tmp_path, caplog):
    """Paper preset on a tiny data set: 500 warm-up steps outlast the run, and r=2 keeps
    alpha=256. Both land in the log, env.json and the adapter's model card."""
    import json

    from compatlm.train.recipes.task import train_task

    data = tmp_path / "gen.jsonl"
    rows = [{"id": f"g{i}", "prompt": f"{i} apples?", "reference": str(i)} for i in range(5)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = build_config(
        TrainTaskConfig,
        {
            "base": str(tiny_family["new"]),
            "task": {"name": "apples", "path": str(data)},
            "preset": "paper",
            "lora": {"r": 2},
            "optim": {"epochs": 1, "grad_accum": 1, "batch_size": 2},
            "runtime": {"device": "cpu", "progress": False},
        },
    )
    with caplog.at_level("WARNING", logger="compatlm"):
        train_task(cfg, tmp_path / "run")
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert len(env["warnings"]) == 2
    assert env["warnings"][0].startswith("lora.r=2 under preset paper")
    assert env["warnings"][1].startswith("optim.warmup_steps=500 >= the run's 2 optimiser steps")
    card = (tmp_path / "run" / "adapter" / "README.md").read_text()
    assert all(w in card for w in env["warnings"])
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert all(any(w in m for m in logged) for w in env["warnings"])
