"""The CLI's bad-input contract, checked the same way by every reliability test.

A refused input means: exit code 2 (unless a test says otherwise), exactly one line on stderr
that starts with ``error: `` and contains the case's distinctive substrings, no traceback on
either stream, and (when the test names it) no ``--out`` created — nothing partial is left.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template

from compatlm.cli import main


def templated(argv: str, places: Mapping[str, str], out: Path) -> list[str]:
    """A shell-like argv template (``${old}``, ``${out}`` …) filled in and split."""
    return [Template(a).substitute(places, out=str(out)) for a in shlex.split(argv)]


def refused(
    argv: Sequence[object],
    capsys,
    expect: Sequence[str],
    *,
    out: Path | None = None,
    prefix: str = "error: ",
    code: int = 2,
) -> str:
    """Run the CLI on ``argv``; assert the contract above and return the error line."""
    got = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {captured.err!r}"
    assert lines[0].startswith(prefix), lines[0]
    for part in expect:
        assert part in lines[0], f"{part!r} not in {lines[0]!r}"
    assert got == code
    if out is not None:
        assert not out.exists(), f"--out was created: {sorted(p.name for p in out.rglob('*'))}"
    return lines[0]
