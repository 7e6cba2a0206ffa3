"""Reports: pure functions of a run directory -> ``report.md``, ``report.html``, ``plots/``.

A report is rendered from files alone (``metrics.json``, ``flips/`` and, when the run has one,
``env.json``), so ``compatlm report RUN_DIR`` works offline, later, on another machine. Every
report opens with the same header (:mod:`compatlm.report.header`: what was compared, the
decision metric, code version, date, the gate's outcome, one verdict sentence per task). The
HTML page is self-contained: inline CSS, plots as inline base64 PNG, no scripts (the flip
viewer's filter is CSS), every piece of data escaped.

``metrics.json`` is input like any other: a flips path it names is read only if it resolves
(symlinks followed) to a file inside the run directory, so a doctored ``files.flips`` of
``../../secret`` or ``/etc/passwd`` cannot be embedded into a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compatlm.errors import input_error
from compatlm.io import atomic_write_bytes, atomic_write_text, read_jsonl
from compatlm.paths import INCOMPLETE

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
    import json

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
    from compatlm.report.context import read_env

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


def render_report(run_dir: str | Path, env_dir: str | Path | None = None) -> list[Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png``; returns the paths written."""
    from compatlm.report.html import render_html
    from compatlm.report.markdown import render_markdown
    from compatlm.report.plots import make_plots

    data = load_run(run_dir, env_dir)
    plots = make_plots(data)
    written = [atomic_write_bytes(data.run_dir / rel, png) for rel, png in plots.items()]
    # plots/ belongs to the report: a plot of a comparison that no longer exists would mislead.
    for stale in (data.run_dir / "plots").glob("*.png"):
        if stale not in written:
            stale.unlink()
    written.append(atomic_write_text(data.run_dir / "report.md", render_markdown(data, plots)))
    written.append(atomic_write_text(data.run_dir / "report.html", render_html(data, plots)))
    return written
