"""Shared end-to-end fixtures: one quick demo per test session.

`compatlm demo --quick` takes the better part of a minute on 2 cores; the demo's own tests
(test_demo.py) and the configs that run after it (test_configs.py) share one run of it, and one
of the ``--family continued`` demo. They are session-scoped and requested only by tests marked
``slow``, so the fast tier never builds them.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from compatlm.cli import main


def _trap_test_reads(mp: pytest.MonkeyPatch, out: Path) -> list[tuple[str, bool]]:
    """Record every opening of a family's ``tasks/<task>/test.jsonl`` for reading once the
    family is built and verified (verifying hashes every file's bytes), with whether
    ``seed0/selection/<task>.json`` (the fixed winner) existed at that moment."""
    import compatlm.demo.family as family

    reads: list[tuple[str, bool]] = []
    armed = []

    def check(file: object, mode: str) -> None:
        if not armed or not isinstance(file, (str, os.PathLike)) or any(c in mode for c in "wax+"):
            return
        path = Path(file)
        if path.name == "test.jsonl" and path.parent.parent.name == "tasks":
            task = path.parent.name
            reads.append((task, (out / "seed0" / "selection" / f"{task}.json").is_file()))

    real_path_open, real_open = Path.open, builtins.open
    real_build = family.build_or_load_family

    def path_open(self, mode="r", *args, **kwargs):
        check(self, mode)
        return real_path_open(self, mode, *args, **kwargs)

    def any_open(file, mode="r", *args, **kwargs):
        check(file, mode)
        return real_open(file, mode, *args, **kwargs)

    def build(*args, **kwargs):
        fam = real_build(*args, **kwargs)
        armed.append(True)  # from here on every reader of a test file is the demo's
        return fam

    mp.setattr(Path, "open", path_open)
    mp.setattr(builtins, "open", any_open)
    mp.setattr(family, "build_or_load_family", build)
    return reads


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """Stands for the working directory of a user who ran the demos: ``runs/demo`` (``make
    demo``), ``runs/demo_continued`` (``--family continued``) and the family cache, ``cache``."""
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="session")
def demo_run(demo_root):
    """(exit code, run directory, test-file reads) of one quick demo into
    ``demo_root/runs/demo``, with the family cache in ``demo_root/cache`` (``COMPATLM_CACHE``,
    for the whole session: the reruns in test_demo.py find the family there)."""
    mp, trap = pytest.MonkeyPatch(), pytest.MonkeyPatch()
    mp.setenv("COMPATLM_CACHE", str(demo_root / "cache"))
    out = demo_root / "runs" / "demo"
    reads = _trap_test_reads(trap, out)
    try:
        code = main(["demo", "--quick", "--out", str(out), "runtime.progress=false"])
    finally:
        trap.undo()  # the file traps cover the first run only; the cache stays for the reruns
    yield code, out, reads
    mp.undo()


@pytest.fixture(scope="session")
def continued_run(demo_root):
    """(exit code, run directory) of a quick ``--family continued`` demo (same-shape bases, so
    port, interpolate and merge apply) on two tasks, into ``demo_root/runs/demo_continued``."""
    out = demo_root / "runs" / "demo_continued"
    argv = ["demo", "--quick", "--family", "continued", "--out", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPATLM_CACHE", str(demo_root / "cache"))
        code = main([*argv, "--tasks", "demo_piqa", "demo_gsm8k", "runtime.progress=false"])
    return code, out
