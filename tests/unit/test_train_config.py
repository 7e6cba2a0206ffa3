"""Training configs: the paper preset (arXiv 2407.09435, A.1), precedence, validation."""

from __future__ import annotations

import pytest

from compatlm.config import build_config, load_config
from compatlm.errors import CompatlmError
from compatlm.train.config import TrainCompatConfig, TrainTaskConfig

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
    assert cfg.preset == "paper" and cfg.optim.grad_accum == 8 and cfg.task.split == "train"
