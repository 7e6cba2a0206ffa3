"""The input of every report: :class:`RunData`, read from a run directory by
:func:`load_run` — ``metrics.json``, the flip files it names (only inside the run directory)
and ``env.json`` — and how many flipped instances each page lists.

It sits below the renderers (:mod:`compatlm.report.html`, :mod:`compatlm.report.markdown`)
and below the package :mod:`compatlm.report`, which re-exports these names and whose
``render_report`` feeds the renderers from :func:`load_run`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compatlm.errors import input_error
from compatlm.io import read_jsonl
from compatlm.paths import INCOMPLETE
from compatlm.report.context import read_env

FLIP_LIST_CAP = 200  # flipped instances shown per comparison in the HTML page
MD_FLIP_CAP = 20  # ... and in the Markdown report


@dataclass
class RunData:
    """What a report is made of: the metrics document and each comparison's flips."""

    run_dir: Path
    doc: dict[str, Any]
    flips: list[list[dict[str, Any]]]  # parallel to doc["comparisons"]
    env: dict[str, Any] = field(default_factory=dict)  # context.read_env of the run directory


def load_run(run_dir: str | Path, env_dir: str | Path | None = None) -> RunData:
    """Read ``metrics.json`` and the flip files it names; errors name the file. ``env.json``
    is read from ``env_dir`` (default: the run directory; compare renders in a staging
    directory beside the run's env.json)."""
    run = Path(run_dir)
    path = run / "metrics.json"
    if (run / INCOMPLETE).exists():
        # compare_io swaps flips/, metrics.json and the reports in as a set; this marker means
        # a swap was cut short, so they may describe different comparisons.
        raise input_error(
            "the last compare was interrupted while replacing flips/, metrics.json and the"
            " reports, which may not match; rerun that compare (or eval --resume) first",
            run / INCOMPLETE,
        )
    if not path.is_file():
        raise input_error("not found (run `compatlm compare` first)", path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise input_error(f"not valid JSON ({err})", path) from None
    if not isinstance(doc, dict) or doc.get("schema_version") != 1:
        found = doc.get("schema_version") if isinstance(doc, dict) else type(doc).__name__
        raise input_error(
            f"expected schema_version 1, found {found!r}", path, field="schema_version"
        )
    comps = doc.get("comparisons")
    if not isinstance(comps, list):
        raise input_error("expected a list", path, field="comparisons")
    flips = []
    for k, comp in enumerate(comps):
        field = f"comparisons[{k}].files.flips"
        files = comp.get("files") if isinstance(comp, dict) else None
        rel = files.get("flips") if isinstance(files, dict) else None
        if not isinstance(rel, str) or not rel:
            raise input_error(f"expected a relative path, found {rel!r}", path, field=field)
        fpath = _inside(run, rel, path, field)
        if not fpath.is_file():
            raise input_error(f"flips file {rel!r} named there is missing", path, field=field)
        flips.append([obj for _, obj in read_jsonl(fpath, allow_empty=True)])
    return RunData(run, doc, flips, read_env(Path(env_dir) if env_dir is not None else run))


def _inside(run: Path, rel: str, path: Path, field: str) -> Path:
    """``run / rel`` if it stays inside ``run`` once resolved, else a one-line error."""
    root = run.resolve()
    try:
        target = (root / rel).resolve()
    except (OSError, ValueError) as err:  # a NUL byte, a symlink loop
        raise input_error(f"path {rel!r} cannot be resolved ({err})", path, field=field) from None
    if Path(rel).is_absolute() or not target.is_relative_to(root):
        raise input_error(
            f"path {rel!r} points outside the run directory {run}; a report reads only files"
            " inside it",
            path,
            field=field,
        )
    return target
