"""Bad inputs of ``compare RUN_DIR`` / ``report`` that the report layer reads: a damaged
``noise.json`` beside the predictions, and gate conditions that match nothing.

Same contract as :mod:`test_bad_inputs`: exit code 2, stderr is exactly one ``error: `` line
naming the file and field, no traceback, and nothing the run already had is changed (the
previous metrics.json, flips and reports stay as they were).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from compatlm.cli import main


@dataclass(frozen=True)
class Case:
    id: str
    noise: str | None  # text of noise.json, None = leave it out
    argv: tuple[str, ...]  # after the run directory
    expect: tuple[str, ...]


CASES = [
    Case("noise-malformed", '{"tasks": {', (), ("noise.json", "malformed JSON")),
    Case("noise-tasks-list", '{"tasks": [1]}', (), ("noise.json", "'tasks'", "object")),
    Case("noise-negative", '{"tasks": {"t": {"noise_margin": -1}}}', (), ("'tasks.t.noise_margin'", ">= 0", "-1")),
    Case("noise-string", '{"tasks": {"t": {"noise_margin": "0.1"}}}', (), ("'tasks.t.noise_margin'", "'0.1'")),
    Case("noise-nan", '{"tasks": {"t": {"noise_margin": NaN}}}', (), ("noise.json", "NaN")),
    Case("gate-matches-nothing", None, ("--fail-if", "other_task:NFR>0.1"), ("--fail-if", "'other_task:NFR>0.1'", "matches no comparison")),
]  # fmt: skip


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    for role, flags in (("old", [1, 1, 0, 0]), ("new", [1, 0, 1, 0])):
        path = run / "predictions" / "t" / f"{role}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {"example_id": str(i), "correct": bool(c), "margin": 0.1} for i, c in enumerate(flags)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["compare", str(run), "--bootstrap", "0"]) == 0
    return run


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_report_input_is_one_error_line(case, tmp_path, capsys):
    run = _run(tmp_path)
    if case.noise is not None:
        (run / "noise.json").write_text(case.noise)
    before = _snapshot(run)
    capsys.readouterr()
    assert main(["compare", str(run), *case.argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in captured.err + captured.out
    for fragment in case.expect:
        assert fragment in err, (fragment, err)
    # Nothing of the previous set changed, nothing new (the lock file is bookkeeping).
    after = {k: v for k, v in _snapshot(run).items() if k != ".compatlm.lock"}
    assert after == {k: v for k, v in before.items() if k != ".compatlm.lock"}


def test_report_gate_matching_nothing_changes_nothing(tmp_path, capsys):
    run = _run(tmp_path)
    before = _snapshot(run)
    assert main(["report", str(run), "--fail-if", "zzz:NFR>0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "'zzz:NFR>0'" in err
    assert _snapshot(run) == before
