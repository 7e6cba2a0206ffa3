"""Fixtures of the reliability suite (the tiny family comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from workloads import eval_yaml, write_mc_task


@pytest.fixture(scope="session")
def small_eval_config(tiny_family, tmp_path_factory) -> Path:
    """An eval config over 16 examples: a few seconds of CPU per run."""
    root = tmp_path_factory.mktemp("small_eval")
    task = write_mc_task(root / "mc.jsonl", 16)
    cfg = root / "eval.yaml"
    cfg.write_text(eval_yaml(tiny_family, task, batch_size=8))
    return cfg


def _trap(*args, **kwargs):
    raise AssertionError("work started before the bad input was detected")


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if any model's weights are loaded: bad input must be caught before that."""
    import compatlm.models

    monkeypatch.setattr(compatlm.models, "load_base", _trap)


@pytest.fixture
def nothing_built(monkeypatch, no_model_loads):
    """Also fail the test if a registered method builds a candidate."""
    from compatlm.methods.registry import METHODS

    for method in METHODS.values():
        monkeypatch.setattr(method, "build", _trap)
