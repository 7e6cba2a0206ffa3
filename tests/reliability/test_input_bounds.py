"""Input bounds checked where input is read: numbers, gate units, YAML and JSON cost, devices.

Unit-level companions of ``test_cli_contract.py`` (which runs the same classes of mistakes
through the CLI): every config float is finite and every seed in numpy's range, numeric flags
are parsed by bounded ``type=`` functions, gate thresholds are in the metric's unit, YAML is
bounded in size, depth and alias expansion and refuses repeated keys, JSON lines refuse
repeated keys, deep nesting and lone surrogates, and device names are validated.
"""

from __future__ import annotations

import argparse
import math
import re

import pytest
import yaml

from compatlm import safe_yaml
from compatlm.cli import argtypes
from compatlm.config import CompareConfig, RuntimeConfig, StrictModel, build_config, parse_override
from compatlm.errors import CompatlmError
from compatlm.eval.gate import parse_condition
from compatlm.io import load_resumable, parse_json

# ---------------------------------------------------------------- numbers


def _config_classes() -> list[type[StrictModel]]:
    # Imported for their StrictModel subclasses.
    import compatlm.demo.pipeline
    import compatlm.methods.config
    import compatlm.train.config  # noqa: F401

    found, todo = [], [StrictModel]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_config_refuses_non_finite_floats():
    classes = _config_classes()
    assert len(classes) > 10
    for cls in classes:
        assert cls.model_config.get("allow_inf_nan") is False, cls.__name__


@pytest.mark.parametrize(
    "cls_path, data, field",
    [
        ("compatlm.config:CompareConfig", {"tolerance": math.inf}, "tolerance"),
        ("compatlm.config:CompareConfig", {"confidence": math.nan}, "confidence"),
        ("compatlm.config:CompareConfig", {"seed": -1}, "seed"),
        ("compatlm.config:RuntimeConfig", {"seed": 2**32}, "seed"),
        ("compatlm.train.config:OptimSettings", {"seed": -1}, "seed"),
        ("compatlm.train.config:OptimSettings", {"lr": math.inf}, "lr"),
        ("compatlm.train.config:OptimSettings", {"max_grad_norm": math.nan}, "max_grad_norm"),
        ("compatlm.train.config:FocalSettings", {"beta": math.inf}, "beta"),
        ("compatlm.methods.config:TaskVector", {"adapter": "a", "weight": -math.inf}, "weight"),
        (
            "compatlm.methods.config:InterpolateConfig",
            {"old": "a+b", "new": "c+d", "alpha": math.nan, "allow_extrapolation": True},
            "alpha",
        ),
        (
            "compatlm.methods.config:RerankConfig",
            {"old": "a", "new": "b", "task": {"name": "t"}, "temperature": math.inf},
            "temperature",
        ),
    ],
)
def test_numbers_are_checked_at_validation(cls_path, data, field):
    import importlib

    module, name = cls_path.split(":")
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(CompatlmError) as err:
        build_config(cls, data, "cfg.yaml")
    assert f"field '{field}'" in str(err.value) and "\n" not in str(err.value)
    assert build_config(cls, {k: v for k, v in data.items() if k != field}) is not None


def test_seed_bounds_are_numpys():
    import numpy as np

    top = build_config(CompareConfig, {"seed": 2**32 - 1}).seed
    np.random.default_rng(top)  # the largest accepted seed works
    np.random.RandomState(top)


def test_argtypes():
    tol = argtypes.non_negative_float
    assert tol("0") == 0.0 and tol("1e-3") == 0.001
    for bad in ("inf", "-inf", "nan", "-0.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=f"found {bad!r}"):
            tol(bad)
    conf = argtypes.finite_float(0.0, 1.0, low_open=True, high_open=True)
    assert conf("0.9") == 0.9
    for bad in ("0", "1", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="> 0 and < 1"):
            conf(bad)
    assert argtypes.seed("4294967295") == 2**32 - 1
    for bad in ("-1", "4294967296", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 4294967295\]"):
            argtypes.seed(bad)


# ---------------------------------------------------------------- gate names and units


@pytest.mark.parametrize(
    "text, name, threshold",
    [
        ("NFR>0.05", "negative_flip_rate", 0.05),
        ("nfr>=0.05", "negative_flip_rate", 0.05),
        ("piqa:old_vs_new:Pfr<0.1", "positive_flip_rate", 0.1),
        ("btc<0.9", "backward_trust_compatibility", 0.9),
        ("BEC<0.5", "backward_error_compatibility", 0.5),
        ("Negative_Flip_Rate>1", "negative_flip_rate", 1.0),
        ("accuracy_delta<-0.05", "accuracy_delta", -0.05),
        ("negative_flip_rate_change_percent>-20", "negative_flip_rate_change_percent", -20.0),
        ("negative_flips>3", "negative_flips", 3.0),
    ],
)
def test_gate_aliases_and_units_accepted(text, name, threshold):
    cond = parse_condition(text)
    assert (cond.name, cond.threshold, cond.text) == (name, threshold, text)


def test_gate_hint_names_the_fraction():
    with pytest.raises(CompatlmError, match=r"did you mean 0\.02\?"):
        parse_condition("negative_flip_rate>2")
    with pytest.raises(CompatlmError) as err:
        parse_condition("negative_flip_rate>250")  # not a percent either: no guess
    assert "did you mean" not in str(err.value) and "in [0, 1]" in str(err.value)


# ---------------------------------------------------------------- YAML bounds


def test_yaml_anchors_and_merge_keys_still_work():
    text = (
        "base: &base {batch_size: 4, device: cpu}\n"
        "runtime:\n  <<: *base\n  batch_size: 8\n"  # an explicit key over a merged one
        "tasks: &t [a, b]\nmore: *t\n"
    )
    data = safe_yaml.load(text)
    assert data["runtime"] == {"batch_size": 8, "device": "cpu"}
    assert data["more"] == ["a", "b"]


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first on line 1)"),
        ("x:\n  y: {k: 1, k: 2}\n", 2, "duplicate key 'k'"),
        ("a: " + "[" * 70 + "]" * 70 + "\n", 1, "nested deeper than 64"),
        ("a: &a [1]\n" + "".join(f"l{i}: &l{i} [*{'a' if i == 0 else f'l{i - 1}'}]\n" for i in range(70)), None, "nested deeper than 64 levels (with aliases)"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(f"b{i}: &b{i} [{', '.join([f'*{prev}'] * 10)}]\n" for i, prev in enumerate(["a", "b0", "b1", "b2", "b3", "b4"])), None, "alias bomb"),
        ("a: &a\n  b: *a\n", 1, "contains it"),
    ],
)  # fmt: skip
def test_yaml_bounds(text, line, fragment):
    with pytest.raises(safe_yaml.YamlLimitError) as err:
        safe_yaml.load(text)
    assert fragment in err.value.problem
    if line is not None:
        assert err.value.problem_mark.line + 1 == line


def test_yaml_file_size_bound(tmp_path, monkeypatch):
    from compatlm.config import read_yaml

    path = tmp_path / "big.yaml"
    path.write_text("old: a\n" + "# padding\n" * 20)
    monkeypatch.setattr(safe_yaml, "MAX_BYTES", 100)
    with pytest.raises(CompatlmError, match=r"big.yaml: config is 207 bytes; the limit is 100"):
        read_yaml(path)


def test_override_values_use_the_bounded_loader():
    assert parse_override("compare.fail_if=[a, b]") == (["compare", "fail_if"], ["a", "b"])
    with pytest.raises(CompatlmError, match="nested deeper than 64"):
        parse_override("a=" + "[" * 100 + "]" * 100)
    assert isinstance(yaml.safe_load("a: 1"), dict)  # the plain loader is left untouched


# ---------------------------------------------------------------- JSON bounds


def test_parse_json_accepts_what_is_text():
    obj = parse_json('{"a": "caf\\u00e9 \\ud83d\\ude00", "b": [[1]]}', "f.jsonl", 1)
    assert obj == {"a": "café 😀", "b": [[1]]}  # a surrogate *pair* is one character


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('{"a": {"k": 1, "k": 2}}', "f.jsonl:4: duplicate key 'k' in one JSON object"),
        ('{"a": 1, "b": {"\\udc00": 2}}', "f.jsonl:4: field 'b': a key contains a lone surrogate"),
        ('{"a": ["x", "\\ud800"]}', "f.jsonl:4: field 'a': contains a lone surrogate"),
        ("[" * 100000 + "]" * 100000, "f.jsonl:4: JSON nested deeper than 64 levels"),
        ('{"a": ' + "[" * 64 + "]" * 64 + "}", "f.jsonl:4: field 'a': JSON nested deeper than 64"),
    ],
)
def test_parse_json_refusals(text, fragment):
    with pytest.raises(CompatlmError) as err:
        parse_json(text, "f.jsonl", 4)
    assert str(err.value).startswith(fragment)


def test_resumable_rows_are_parsed_strictly(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": 1}\n{"a": 1, "a": 2}\n')
    with pytest.raises(CompatlmError, match=r"p.jsonl:2: duplicate key 'a'"):
        load_resumable(path)


# ---------------------------------------------------------------- devices


def test_device_names_are_validated_in_the_config():
    assert build_config(RuntimeConfig, {"device": "cuda:3"}).device == "cuda:3"
    for bad in ("xla", "meta", "gpu", "cuda:", "cpu:0", "CUDA"):
        with pytest.raises(CompatlmError, match=re.escape("expected auto | cpu | cuda | cuda:N")):
            build_config(RuntimeConfig, {"device": bad})
