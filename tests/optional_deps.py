"""Optional dependencies of the test suite: whether each is installed, and the skip marks.

DeepSpeed is opt-in (`make install-deepspeed`, or `pip install --no-build-isolation
'compatlm[deepspeed]'`): it is slow to build and `make install` leaves it out. The tests that
launch ZeRO runs carry :data:`needs_deepspeed`, so without it they are reported as skipped with
the reason and the command that installs it (pytest's ``-ra`` summary, on in pyproject.toml)
instead of failing inside a launched process.

Availability is decided with :func:`importlib.util.find_spec`, never by importing the package:
importing DeepSpeed takes seconds and prints warnings, and the check runs at every collection.
"""

from __future__ import annotations

import importlib.util

import pytest

DEEPSPEED_MISSING = (
    "DeepSpeed is not installed; the ZeRO tests need it: make install-deepspeed"
    " (or pip install --no-build-isolation 'compatlm[deepspeed]')"
)


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it.

    A finder may refuse a module by raising ImportError from ``find_spec`` (that is how an
    import blocker on ``sys.meta_path`` simulates a missing package): that counts as absent."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module in sys.modules without a spec
        return False


def deepspeed_installed() -> bool:
    return installed("deepspeed")


needs_deepspeed = pytest.mark.skipif(not deepspeed_installed(), reason=DEEPSPEED_MISSING)
