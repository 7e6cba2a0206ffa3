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
