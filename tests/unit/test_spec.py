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
