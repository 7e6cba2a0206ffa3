"""DeepSpeed is opt-in: without it the ZeRO tests are skipped with the reason printed, and
training (the demo's path) neither needs nor imports it.

DeepSpeed stays installed in the venv (other tests use it). Its absence is simulated by wrapping
every finder on ``sys.meta_path`` so that none of them finds the package: ``import deepspeed``
then raises ModuleNotFoundError and ``importlib.util.find_spec("deepspeed")`` returns None,
exactly as where it was never installed (accelerate and transformers ask the latter).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optional_deps import DEEPSPEED_MISSING, installed

TESTS = Path(__file__).resolve().parents[1]

HIDE = """
import sys

class Hide:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name == "deepspeed" or name.startswith("deepspeed."):
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attr):
        return getattr(self.finder, attr)

sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
"""

RUN_PYTEST = HIDE + "import pytest\nsys.exit(pytest.main(sys.argv[1:]))\n"


def _child(code: str, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_a_hidden_package_counts_as_missing():
    code = HIDE + (
        "from optional_deps import deepspeed_installed, installed\n"
        "assert installed('json') and not deepspeed_installed()\n"
        "try:\n    import deepspeed\nexcept ModuleNotFoundError:\n    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    res = _child(code, cwd=TESTS)
    assert res.returncode == 0, res.stderr[-2000:]
    assert installed("no_such_module_compatlm") is False


def test_zero_tests_skip_with_the_reason_when_deepspeed_is_missing(tmp_path):
    """The three ZeRO runs (one sharded compat run, two resumes) are reported as skipped with
    the install command; nothing is launched, so this takes seconds."""
    argv = ["-q", "-rs", "-p", "no:cacheprovider", "-m", "slow", "-k", "zero"]
    argv += [f"--rootdir={TESTS.parent}", str(TESTS / "unit" / "test_train_multiprocess.py")]
    res = _child(RUN_PYTEST, *argv, cwd=tmp_path)
    out = res.stdout
    assert res.returncode == 0, out[-3000:] + res.stderr[-3000:]
    assert "3 skipped" in out and "passed" not in out and "failed" not in out, out[-3000:]
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert skipped and all(DEEPSPEED_MISSING in line for line in skipped), out[-3000:]


def _train(tiny_family, tmp_path: Path, prelude: str) -> subprocess.CompletedProcess[str]:
    """`compatlm train task` on the tiny base in a child; exit 10 if DeepSpeed got imported."""
    tmp_path.mkdir(parents=True)
    data = tmp_path / "mc.jsonl"
    rows = [{"id": f"q{i}", "context": f"Item {i} is", "choices": [" blue", " red"], "label": i % 2}
            for i in range(4)]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "task.yaml"
    cfg.write_text(
        f"base: {tiny_family['new']}\nlora: {{r: 2, alpha: 4}}\ntask: {{name: c, path: {data}}}\n"
        "optim: {epochs: 1, batch_size: 2}\nruntime: {device: cpu, progress: false}\n"
    )
    code = prelude + (
        "from compatlm.cli import main\n"
        f"rc = main(['train', 'task', {str(cfg)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
        "sys.exit(10 if 'deepspeed' in sys.modules else rc)\n"
    )
    return _child(code)


def test_training_does_not_import_deepspeed(tiny_family, tmp_path):
    """The demo trains single-process: DeepSpeed, when installed, stays unimported (importing
    it costs seconds and logs to stdout)."""
    res = _train(tiny_family, tmp_path / "installed", "import sys\n")
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-2000:]}"
    assert "deepspeed" not in (res.stdout + res.stderr).lower()


@pytest.mark.slow
def test_training_works_without_deepspeed(tiny_family, tmp_path):
    res = _train(tiny_family, tmp_path / "missing", HIDE)
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-2000:]}"
