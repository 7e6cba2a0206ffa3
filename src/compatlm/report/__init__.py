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

from pathlib import Path

from compatlm.io import atomic_write_bytes, atomic_write_text
from compatlm.report.run import FLIP_LIST_CAP, MD_FLIP_CAP, RunData, load_run

__all__ = ["FLIP_LIST_CAP", "MD_FLIP_CAP", "RunData", "load_run", "render_report"]


def render_report(run_dir: str | Path, env_dir: str | Path | None = None) -> list[Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png``; returns the paths written."""
    # Lazy on purpose: the renderers draw with matplotlib, which ``import compatlm.report``
    # (load_run, or any submodule such as compatlm.report.fmt) should not load.
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
