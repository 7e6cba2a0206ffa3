"""The demo's alternatives are registry methods: looked up by name, built by the method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compatlm.config import RuntimeConfig
from compatlm.demo import alternatives as alt
from compatlm.demo.pipeline import DemoConfig
from compatlm.errors import CompatlmError
from compatlm.methods.registry import METHODS, Method, control_names


def _text(spec: Any) -> str:
    return spec if isinstance(spec, str) else spec.format()


def test_every_alternative_the_demo_runs_is_a_registered_method():
    assert set(DemoConfig().alternatives) <= set(alt.ALTERNATIVES)
    for name in alt.ALTERNATIVES:
        assert alt.method_of(name) is METHODS[alt.REGISTRY_NAMES[name]], name
    assert alt.method_of("merge").name == "task_arithmetic"
    assert [n for n in alt.ALTERNATIVES if alt.method_of(n).name != n] == ["merge"]
    assert list(alt.CONTROLS) == control_names()
    assert {alt.method_of(n).produces for n in alt.WEIGHT_SPACE} == {"adapter"}
    assert alt.method_of("rerank").produces == "predictions"
    with pytest.raises(CompatlmError, match="unknown alternative 'bcwi'; valid: continue_ce"):
        alt.method_of("bcwi")


@pytest.fixture
def built(monkeypatch) -> list[tuple[str, Any, Path, dict[str, Any]]]:
    calls: list[tuple[str, Any, Path, dict[str, Any]]] = []

    def build(self: Method, cfg: Any, out: Any, **kwargs: Any) -> str:
        calls.append((self.name, cfg, Path(out), kwargs))
        return f"spec-of-{self.name}"

    monkeypatch.setattr(Method, "build", build)
    return calls


def test_training_free_alternatives_are_built_by_their_registry_method(tmp_path, built):
    runtime = RuntimeConfig(seed=3)
    old, new = "old-base+old-adapter", "new-base+new-adapter"
    specs = [alt.build_alternative(n, old, new, tmp_path / n, runtime) for n in alt.WEIGHT_SPACE]
    assert specs == ["spec-of-port", "spec-of-interpolate", "spec-of-task_arithmetic"]
    assert [(name, out.name, kw) for name, _, out, kw in built] == [
        (m, n, {"runtime": runtime})
        for m, n in (("port", "port"), ("interpolate", "interpolate"), ("task_arithmetic", "merge"))
    ]
    port, interpolate, merge = (cfg for _, cfg, _, _ in built)
    assert type(port) is METHODS["port"].config_cls
    assert (_text(port.old), _text(port.new), port.runtime) == (old, new, runtime)
    assert interpolate.alpha == 0.5 and _text(interpolate.old) == old
    assert type(merge) is METHODS["task_arithmetic"].config_cls and _text(merge.base) == "new-base"
    assert [(v.adapter, v.weight) for v in merge.vectors] == [
        ("new-adapter", 1.0),
        ("old-adapter", 0.5),
    ]
    with pytest.raises(CompatlmError, match="unknown alternative 'pct'; valid: port"):
        alt.build_alternative("pct", old, new, tmp_path / "x", runtime)


def test_controls_are_trained_by_their_registry_method(tmp_path, built):
    cfg = object()  # passed through untouched to the method
    assert alt.train_control("kd_new", cfg, tmp_path / "kd") == "spec-of-kd_new"
    assert built == [("kd_new", cfg, tmp_path / "kd", {"resume": True})]
    with pytest.raises(CompatlmError, match="'port' is not a control"):
        alt.train_control("port", cfg, tmp_path / "p")
