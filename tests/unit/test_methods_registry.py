"""Method registry, `compatlm build` and `compatlm methods`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import yaml

from compatlm.cli import main
from compatlm.errors import CompatlmError
from compatlm.methods import registry
from compatlm.methods.registry import (
    METHODS,
    Method,
    get_candidate_method,
    get_method,
    method_names,
    register,
)

ALL = [
    "continue_ce",
    "interpolate",
    "kd_new",
    "muscle",
    "pct",
    "port",
    "rerank",
    "task_arithmetic",
]


def test_registry_names_and_entries():
    assert method_names() == ALL
    for name in method_names():
        method = get_method(name)
        assert isinstance(method, Method) and method.name == name
        assert method.produces in ("adapter", "model", "predictions")
        assert method.pretty_name and method.summary
        # Every paper is cited with its arXiv id; the controls cite the recipe they control.
        assert "arXiv 2" in method.reference, name
        assert method.config_cls.__name__.endswith("Config"), name
    assert get_method("rerank").produces == "predictions"
    assert get_method("pct").config_cls.__name__ == "PctConfig"
    assert registry.control_names() == ["continue_ce", "kd_new"]


def test_register_rejects_duplicates_and_unknown_outputs(monkeypatch):
    monkeypatch.setattr(registry, "METHODS", dict(METHODS))
    extra = Method("extra", "Extra", "Someone et al., arXiv 0000.00000", "model", "x", "port")
    assert register(extra) is extra and registry.get_method("extra") is extra
    with pytest.raises(ValueError, match="method 'extra' is already registered"):
        register(Method("extra", "Other", "ref", "adapter", "y", "port"))
    with pytest.raises(ValueError, match="method 'port' is already registered"):
        register(Method("port", "Port again", "ref", "adapter", "y", "port"))
    with pytest.raises(ValueError, match="produces must be one of"):
        register(Method("weird", "Weird", "ref", "weights", "z", "port"))  # type: ignore[arg-type]
    assert registry.get_method("extra") is extra and "weird" not in registry.METHODS
    assert "extra" not in METHODS  # the real registry was never touched


def test_unknown_method_lists_valid_names_with_a_did_you_mean():
    with pytest.raises(CompatlmError) as err:
        get_method("nope")
    assert str(err.value) == f"unknown method 'nope'; valid methods: {', '.join(ALL)}"
    for typo, meant in [
        ("interpolat", "interpolate"),
        ("merge", "task_arithmetic"),  # the word of its pretty name
        ("BCWI", "interpolate"),
        ("focal", "pct"),
        ("musle", "muscle"),
    ]:
        with pytest.raises(CompatlmError, match=rf"\(did you mean '{meant}'\?\)"):
            get_method(typo)


def test_rerank_is_pointed_to_its_own_command(tmp_path, capsys):
    assert get_method("rerank").name == "rerank"  # registered like any method ...
    with pytest.raises(CompatlmError, match="produces predictions.*`compatlm rerank CONFIG"):
        get_candidate_method("rerank")  # ... but it is not a model candidate
    cfg = tmp_path / "r.yaml"
    cfg.write_text("k: 2\n")
    assert main(["build", "rerank", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert "compatlm rerank" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_lists_and_help_come_from_the_registry(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = capsys.readouterr().out
    candidates = [n for n in ALL if n != "rerank"]
    assert " | ".join(candidates) in " ".join(text.split())  # the METHOD choices (wrapped)
    for name in candidates:
        assert f"  {name:<17}{METHODS[name].summary}" in text
    assert "rerank" not in text.split("examples:")[0]
    with pytest.raises(SystemExit):
        main(["train", "compat", "--help"])
    assert "{continue_ce,kd_new}" in capsys.readouterr().out


def test_methods_command_prints_every_entry(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "METHOD", "PRODUCES", "REFERENCE"]
    assert [line.split()[0] for line in lines[1:]] == list(METHODS)
    for line, method in zip(lines[1:], METHODS.values(), strict=True):
        assert method.pretty_name in line and method.produces in line
        assert line.endswith(method.reference)
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(METHODS)
    assert rows[4] == {
        "name": "pct",
        "pretty_name": METHODS["pct"].pretty_name,
        "produces": "adapter",
        "reference": METHODS["pct"].reference,
        "summary": METHODS["pct"].summary,
    }


def test_listing_methods_imports_no_torch():
    code = (
        "import sys; from compatlm.cli import build_parser, main; build_parser();"
        " from compatlm.methods import METHODS; [m.reference for m in METHODS.values()];"
        " main(['methods']); print(sorted(m for m in ('torch', 'pydantic')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[-1] == "[]"


def test_muscle_points_to_train_compat_when_recipe_missing(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "compatlm.train.recipes.compat" else real(name, *a),
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
    assert "valid methods: continue_ce, interpolate" in capsys.readouterr().err
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


@pytest.mark.parametrize(
    "name", ["port", "interpolate", "task_arithmetic", "pct", "rerank", "sweep"]
)
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
