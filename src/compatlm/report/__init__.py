"""Reports: pure functions of a run directory -> ``report.md``, ``report.html``, ``plots/``.

A report is rendered from files alone (``metrics.json`` and ``flips/``), so ``compatlm report
RUN_DIR`` works offline, later, on another machine. The HTML page is self-contained: inline CSS,
plots as inline base64 PNG, no scripts, every piece of data escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compatlm.errors import CompatlmError, input_error
from compatlm.io import atomic_write_bytes, atomic_write_text, read_jsonl

FLIP_LIST_CAP = 200  # flipped instances shown per comparison in the HTML page
MD_FLIP_CAP = 20  # ... and in the Markdown report


@dataclass
class RunData:
    """What a report is made of: the metrics document and each comparison's flips."""

    run_dir: Path
    doc: dict[str, Any]
    flips: list[list[dict[str, Any]]]  # parallel to doc["comparisons"]


def load_run(run_dir: str | Path) -> RunData:
    """Read ``metrics.json`` and the flip files it names; errors name the file."""
    import json

    run = Path(run_dir)
    path = run / "metrics.json"
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
    for comp in comps:
        rel = comp.get("files", {}).get("flips")
        fpath = run / rel if rel else None
        if fpath is None or not fpath.is_file():
            raise CompatlmError(f"{path}: flips file {rel!r} named there is missing")
        flips.append([obj for _, obj in read_jsonl(fpath, allow_empty=True)])
    return RunData(run, doc, flips)


def render_report(run_dir: str | Path) -> list[Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png``; returns the paths written."""
    from compatlm.report.html import render_html
    from compatlm.report.markdown import render_markdown
    from compatlm.report.plots import make_plots

    data = load_run(run_dir)
    plots = make_plots(data)
    written = [atomic_write_bytes(data.run_dir / rel, png) for rel, png in plots.items()]
    # plots/ belongs to the report: a plot of a comparison that no longer exists would mislead.
    for stale in (data.run_dir / "plots").glob("*.png"):
        if stale not in written:
            stale.unlink()
    written.append(atomic_write_text(data.run_dir / "report.md", render_markdown(data, plots)))
    written.append(atomic_write_text(data.run_dir / "report.html", render_html(data, plots)))
    return written
