"""ModelSpec grammar: base[@rev][+adapter[@rev]]."""

from __future__ import annotations

import pytest

from compatlm.errors import CompatlmError
from compatlm.spec import ModelSpec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("org/model", ModelSpec("org/model")),
        ("org/model@v2", ModelSpec("org/model", "v2")),
        ("org/model@main+runs/a/adapter", ModelSpec("org/model", "main", "runs/a/adapter")),
        ("org/m+org/lora@abc123", ModelSpec("org/m", None, "org/lora", "abc123")),
        ("./base+./ad", ModelSpec("./base", None, "./ad")),
    ],
)
def test_parse_and_format_roundtrip(text, expected):
    spec = ModelSpec.parse(text)
    assert spec == expected
    assert ModelSpec.parse(spec.format()) == spec


def test_existing_local_path_with_at_is_not_a_revision(tmp_path):
    d = tmp_path / "model@2024"
    d.mkdir()
    assert ModelSpec.parse(str(d)) == ModelSpec(str(d))
    assert ModelSpec.parse(f"{d}+x").base == str(d)


@pytest.mark.parametrize("bad", ["", "   ", "+adapter", "base+", "a+b+c", "model@"])
def test_bad_specs(bad):
    with pytest.raises(CompatlmError):
        ModelSpec.parse(bad)


def test_with_adapter():
    assert ModelSpec.parse("b").with_adapter("ad").format() == "b+ad"


# ---- ModelSpecField: config fields that name a model ----------------------------------------

SPEC_YAML = """\
old: org/old@v1+runs/old/adapter
new: org/new
candidates:
  compat: org/new+runs/compat/adapter@abc
tasks:
  - name: piqa
    path: data/piqa.jsonl
    kind: multiple_choice
    models:
      new: org/new+runs/piqa_new/adapter
"""


def _write(tmp_path, text: str):
    path = tmp_path / "eval.yaml"
    path.write_text(text)
    return path


def test_spec_fields_are_parsed_when_the_config_loads(tmp_path):
    from compatlm.config import EvalConfig, load_config

    cfg = load_config(EvalConfig, _write(tmp_path, SPEC_YAML))
    assert cfg.old == ModelSpec("org/old", "v1", "runs/old/adapter")
    assert cfg.new == ModelSpec("org/new")
    assert cfg.candidates["compat"] == ModelSpec("org/new", None, "runs/compat/adapter", "abc")
    assert cfg.tasks[0].models["new"].adapter == "runs/piqa_new/adapter"


def test_spec_fields_dump_back_to_the_same_strings(tmp_path):
    import yaml

    from compatlm.config import EvalConfig, dump_config, load_config

    cfg = load_config(EvalConfig, _write(tmp_path, SPEC_YAML))
    dumped = yaml.safe_load(dump_config(cfg))
    written = yaml.safe_load(SPEC_YAML)
    assert dumped["old"] == written["old"] and dumped["new"] == written["new"]
    assert dumped["candidates"] == written["candidates"]
    assert dumped["tasks"][0]["models"] == written["tasks"][0]["models"]
    # python-mode dumps are strings too, so a dict built from a config validates again
    assert cfg.model_dump()["old"] == "org/old@v1+runs/old/adapter"
    assert EvalConfig.model_validate(cfg.model_dump()) == cfg
    again = load_config(EvalConfig, _write(tmp_path, dump_config(cfg)))
    assert dump_config(again) == dump_config(cfg)


@pytest.mark.parametrize(
    ("override", "field", "why"),
    [
        ("old=a+b+c", "'old'", "more than one '+'"),
        ("candidates.x=base+", "'candidates.x'", "missing adapter after '+'"),
        ("tasks.0.models.new=m@", "'tasks.0.models.new'", "empty revision"),
        ("new=5", "'new'", "expected a model spec string"),
    ],
)
def test_a_bad_spec_fails_at_load_naming_the_field(tmp_path, override, field, why):
    from compatlm.config import EvalConfig, load_config

    with pytest.raises(CompatlmError) as err:
        load_config(EvalConfig, _write(tmp_path, SPEC_YAML), [override])
    msg = str(err.value)
    assert "\n" not in msg
    assert f"eval.yaml: field {field}: " in msg and why in msg, msg


def test_method_and_train_configs_parse_their_specs():
    from compatlm.config import build_config
    from compatlm.methods.config import PortConfig
    from compatlm.train.config import TrainTaskConfig

    port = build_config(PortConfig, {"old": "o+o_ad", "new": "n"})
    assert port.old.adapter == "o_ad" and port.new == ModelSpec("n")
    with pytest.raises(CompatlmError, match="field 'base': model spec 'b\\+\\+a'"):
        build_config(TrainTaskConfig, {"base": "b++a", "task": {"name": "piqa"}}, "train.yaml")
