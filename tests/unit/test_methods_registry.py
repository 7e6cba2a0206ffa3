"""Method registry and the `compatlm build` command."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from compatlm.cli import main
from compatlm.cli.methods import METHOD_NAMES
from compatlm.errors import CompatlmError
from compatlm.methods.registry import Method, get_method, method_names


def test_registry_names_and_protocol():
    assert method_names() == ["interpolate", "muscle", "port", "task_arithmetic"]
    assert tuple(method_names()) == METHOD_NAMES  # the CLI's literal list stays in sync
    for name in method_names():
        method = get_method(name)
        assert isinstance(method, Method) and method.name == name


def test_unknown_method_lists_valid_names():
    with pytest.raises(CompatlmError) as err:
        get_method("merge")
    assert str(err.value) == (
        "unknown method 'merge'; valid methods: interpolate, muscle, port, task_arithmetic"
    )


def test_rerank_is_pointed_to_its_own_command():
    with pytest.raises(CompatlmError, match="produces predictions.*compatlm rerank"):
        get_method("rerank")


def test_muscle_points_to_train_compat_when_recipe_missing(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "compatlm.train.compat" else real(name, *a),
    )
    method = get_method("muscle")
    with pytest.raises(CompatlmError, match="compatlm train compat"):
        method.build(object(), tmp_path)  # type: ignore[arg-type]


def test_cli_build_prints_spec_and_refuses_nonempty_out(tiny_family, tmp_path, capsys):
    cfg = tmp_path / "interp.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "old": f"{tiny_family['old']}+{tiny_family['old_adapter']}",
                "new": f"{tiny_family['new']}+{tiny_family['new_adapter']}",
                "alpha": 0.9,
            }
        )
    )
    out = tmp_path / "cand"
    assert main(["build", "interpolate", str(cfg), "alpha=0.25", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    spec = f"{tiny_family['new']}+{out / 'adapter'}"
    assert captured.out.strip().splitlines() == [spec]
    assert f"wrote {out / 'candidate.json'}" in captured.err
    manifest = json.loads((out / "candidate.json").read_text())
    assert manifest["details"]["alpha"] == 0.25  # the override beat the YAML's 0.9
    assert yaml.safe_load((out / "config.yaml").read_text())["alpha"] == 0.25

    assert main(["build", "interpolate", str(cfg), "--out", str(out)]) == 2
    assert "directory is not empty" in capsys.readouterr().err
    assert main(["build", "interpolate", str(cfg), "--out", str(out), "--overwrite"]) == 0

    assert main(["build", "nope", str(cfg), "--out", str(tmp_path / "x")]) == 2
    assert "valid methods: interpolate" in capsys.readouterr().err
    assert main(["build", "port", str(cfg), "beta=1", "--out", str(tmp_path / "y")]) == 2
    assert "unknown key 'beta'" in capsys.readouterr().err


def test_muscle_builds_through_the_registry(tiny_family, tmp_path):
    from compatlm.config import build_config
    from compatlm.models import load_model

    data = tmp_path / "train.jsonl"
    row = {"prompt": "Question: what color is the sky? Answer:", "reference": " blue"}
    data.write_text("".join(json.dumps({"id": f"g{i}", **row}) + "\n" for i in range(4)))
    method = get_method("muscle")
    cfg = build_config(
        method.config_cls,
        {
            "old": f"{tiny_family['old']}+{tiny_family['old_adapter']}",
            "new": f"{tiny_family['new']}+{tiny_family['new_adapter']}",
            "task": {"name": "toy", "path": str(data), "kind": "generation"},
            "optim": {"max_steps": 1, "batch_size": 2},
            "val_fraction": 0.25,
            "runtime": {"progress": False},
        },
    )
    spec = method.build(cfg, tmp_path / "m")
    assert spec == f"{tiny_family['new']}+{tmp_path / 'm' / 'adapter'}"
    assert json.loads((tmp_path / "m" / "candidate.json").read_text())["method"] == "muscle"
    assert load_model(spec).spec.adapter == str(tmp_path / "m" / "adapter")


@pytest.mark.parametrize("name", ["port", "interpolate", "task_arithmetic", "rerank", "sweep"])
def test_example_configs_are_valid_and_say_how_to_run(name):
    from pathlib import Path

    from compatlm.config import load_config
    from compatlm.methods.config import RerankConfig, SweepConfig

    path = Path(__file__).parents[2] / "configs" / f"{name}.yaml"
    first = path.read_text().splitlines()[0]
    if name in ("rerank", "sweep"):
        cls = RerankConfig if name == "rerank" else SweepConfig
        assert first == f"# compatlm {name} configs/{name}.yaml --out runs/{name}"
    else:
        cls = get_method(name).config_cls
        assert first == f"# compatlm build {name} configs/{name}.yaml --out runs/{name}"
    assert isinstance(load_config(cls, path), cls)
