"""Config precedence, overrides and one-line errors."""

from __future__ import annotations

import pytest

from compatlm.config import (
    EvalConfig,
    RuntimeConfig,
    apply_overrides,
    dump_config,
    load_config,
    parse_override,
)
from compatlm.errors import CompatlmError

YAML = """\
old: base_old+adapter_old
new: base_new+adapter_new
tasks:
  - name: piqa
    path: data/piqa.jsonl
    kind: multiple_choice
runtime:
  batch_size: 4
  progress: true
"""


@pytest.fixture
def cfg_file(tmp_path):
    p = tmp_path / "eval.yaml"
    p.write_text(YAML)
    return p


def test_defaults_yaml_overrides_precedence(cfg_file):
    cfg = load_config(EvalConfig, cfg_file, ["runtime.batch_size=8", "runtime.progress=false"])
    assert cfg.runtime.batch_size == 8  # override beats YAML
    assert cfg.runtime.progress is False  # false overrides a YAML true
    assert cfg.runtime.dtype == "float32"  # default survives
    assert cfg.tasks[0].kind == "multiple_choice"


def test_override_values_are_yaml_and_split_on_first_equals():
    assert parse_override("a.b=8") == (["a", "b"], 8)
    assert parse_override("a=x=y") == (["a"], "x=y")
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=null") == (["a"], None)


def test_override_into_list_item(cfg_file):
    cfg = load_config(EvalConfig, cfg_file, ["tasks.0.limit=5"])
    assert cfg.tasks[0].limit == 5


def test_null_means_not_given(cfg_file):
    cfg = load_config(EvalConfig, cfg_file, ["runtime.batch_size=null"])
    assert cfg.runtime.batch_size == RuntimeConfig().batch_size


def test_unknown_key_names_valid_siblings(cfg_file):
    with pytest.raises(CompatlmError) as err:
        load_config(EvalConfig, cfg_file, ["runtime.batchsize=8"])
    msg = str(err.value)
    assert "'runtime.batchsize'" in msg and "batch_size" in msg and "\n" not in msg


def test_unknown_key_inside_list(cfg_file):
    with pytest.raises(CompatlmError, match=r"tasks\[0\]\.nme"):
        load_config(EvalConfig, cfg_file, ["tasks.0.nme=x"])


def test_type_error_names_field_and_value(cfg_file):
    with pytest.raises(CompatlmError, match=r"runtime.batch_size.*'many'"):
        load_config(EvalConfig, cfg_file, ["runtime.batch_size=many"])


def test_bad_yaml_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("old: a\nnew: [b\n")
    with pytest.raises(CompatlmError, match=r"bad.yaml"):
        load_config(EvalConfig, p)


@pytest.mark.parametrize("text", ["", "- a\n- b\n"])
def test_empty_or_non_mapping_yaml(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(CompatlmError):
        load_config(EvalConfig, p)


def test_configs_are_frozen(cfg_file):
    cfg = load_config(EvalConfig, cfg_file)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is internal
        cfg.runtime.batch_size = 3  # type: ignore[misc]


def test_dump_roundtrip(cfg_file, tmp_path):
    cfg = load_config(EvalConfig, cfg_file, ["runtime.seed=3"])
    out = tmp_path / "resolved.yaml"
    out.write_text(dump_config(cfg))
    assert load_config(EvalConfig, out) == cfg


def test_apply_overrides_does_not_mutate_input():
    data = {"runtime": {"batch_size": 1}}
    apply_overrides(data, ["runtime.batch_size=2"])
    assert data == {"runtime": {"batch_size": 1}}


def test_override_without_equals():
    with pytest.raises(CompatlmError, match="section.key=value"):
        parse_override("runtime.batch_size")
