"""Plots for the reports, drawn with matplotlib's Agg canvas (no display, no global backend).

Owns: the overview chart (one panel per task, a row of horizontal bars per model: its primary
negative and positive flip rates with bootstrap CIs — sNFR/sPFR for similarity tasks), the
four-quadrant picture per comparison (both right / positive flip / negative flip / both wrong;
for a similarity task the three outcomes of the score), the per-slice flip-rate bars and the
demo page's NFR-vs-accuracy panels. Figures have a fixed width and a capped height. Every plot is returned as PNG bytes keyed by its path relative to the
run directory; the HTML page inlines them, the Markdown report links the files.

Labels are data: a ``$`` in a task name would otherwise start mathtext (an unbalanced one
crashes the report after metrics.json is written), and a matplotlibrc with ``text.usetex`` would
hand names to LaTeX. So every text artist that shows data gets ``usetex=False`` and
``parse_math=False`` (:data:`TEXT`), the figures are drawn under an rc context that turns both
off for everything else (tick numbers), and labels are clipped with invisible characters shown
(:func:`label`). A glyph missing from the font is drawn as a box, without a warning on stderr.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from compatlm.paths import plot_relpath
from compatlm.report.fmt import plain
from compatlm.report.primary import is_similarity, rates, slice_rates

GREEN, RED, BLUE, GREY, ORANGE = "#3a9a5b", "#c8413b", "#3b6fb6", "#9a9a9a", "#d9822b"
TEXT: dict[str, Any] = {"usetex": False, "parse_math": False}  # kwargs of every data text artist
LABEL_CAP = 40  # characters of one name on a plot
BAR_CAP = 30  # bars groups per chart: a run with thousands of slices must still fit a figure
TASK_CAP = 12  # panels (tasks) in the overview
WIDTH = 7.5  # inches (750 px at 100 dpi): fits the report column without scaling text down
MAX_HEIGHT = 14.0  # inches: the cap of any figure's height


def label(value: Any, cap: int = LABEL_CAP) -> str:
    """A data value as plot text: clipped, control/bidi characters shown as escapes."""
    return plain(value, cap)


@contextmanager
def drawing() -> Iterator[None]:
    """The context every report figure is drawn in: no mathtext, no LaTeX, no glyph noise."""
    rc = {"text.usetex": False, "text.parse_math": False}
    with matplotlib.rc_context(rc), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing", category=UserWarning)
        # Cosmetic: long labels that do not fit are clipped by the figure edge instead.
        warnings.filterwarnings("ignore", message="Tight layout not applied")
        yield


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # Fixed metadata keeps the bytes reproducible across renders of the same run.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def plot_key(comp: dict[str, Any], what: str) -> str:
    return plot_relpath(comp, what)


def quadrant_png(comp: dict[str, Any], similarity: bool = False) -> bytes:
    """2×2 picture: rows = reference right/wrong, columns = other right/wrong. For a
    similarity task, where "right" is only a pass threshold, the three outcomes of the score
    instead: fell by more than τ, within τ, rose by more than τ."""
    if similarity:
        return _similarity_png(comp)
    c = comp["counts"]
    n = max(c["n"], 1)
    cells = (
        ((c["both_correct"], "both right", GREEN), (c["negative_flips"], "negative flip", RED)),
        ((c["positive_flips"], "positive flip", BLUE), (c["both_wrong"], "both wrong", GREY)),
    )
    fig = Figure(figsize=(4.2, 3.6))
    ax = fig.add_subplot()
    for r, row in enumerate(cells):
        for col, (count, what, color) in enumerate(row):
            # Opacity grows with the share so the eye finds the big cells; never fully blank.
            alpha = 0.25 + 0.75 * count / n
            ax.add_patch(_rect(col, 1 - r, color, alpha))
            ax.text(
                col + 0.5,
                1.5 - r,
                f"{what}\n{count} ({100 * count / n:.1f}%)",
                ha="center",
                va="center",
                fontsize=9,
                **TEXT,
            )
    ax.set_xlim(0, 2)
    ax.set_ylim(0, 2)
    ref, other = label(comp["reference"]), label(comp["other"])
    ax.set_xticks([0.5, 1.5], [f"{other} right", f"{other} wrong"], **TEXT)
    ax.set_yticks([1.5, 0.5], [f"{ref}\nright", f"{ref}\nwrong"], **TEXT)
    ax.set_title(f"{label(comp['task'])}: {ref} → {other} (N={c['n']})", fontsize=10, **TEXT)
    fig.tight_layout()
    return png_bytes(fig)


def _similarity_png(comp: dict[str, Any]) -> bytes:
    sim = comp["similarity"]
    n = max(comp["n"], 1)
    fell = sim["counts"]["similarity_negative_flips"]
    rose = sim["counts"]["similarity_positive_flips"]
    same = comp["n"] - fell - rose
    tol = f"{sim['tolerance']:g}"
    cells = ((fell, f"score fell > {tol}", RED), (same, f"within ±{tol}", GREY),
             (rose, f"score rose > {tol}", BLUE))  # fmt: skip
    fig = Figure(figsize=(4.6, 2.2))
    ax = fig.add_subplot()
    for col, (count, what, color) in enumerate(cells):
        ax.add_patch(_rect(col, 0, color, 0.25 + 0.75 * count / n))
        ax.text(col + 0.5, 0.5, f"{what}\n{count} ({100 * count / n:.1f}%)", ha="center",
                va="center", fontsize=9, **TEXT)  # fmt: skip
    ax.set_xlim(0, 3)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    ref, other = label(comp["reference"]), label(comp["other"])
    ax.set_title(f"{label(comp['task'])}: {ref} → {other} (N={comp['n']})", fontsize=10, **TEXT)
    fig.tight_layout()
    return png_bytes(fig)


def _rect(x: float, y: float, color: str, alpha: float) -> Rectangle:
    return Rectangle((x, y), 1, 1, facecolor=color, alpha=alpha, edgecolor="white", linewidth=2)


def _hbars(ax, labels: list[str], series: list[tuple[str, list[dict | None], str]]) -> None:
    """Horizontal grouped bars of rate metrics (in %), first label on top, CI whiskers where
    the metric has one; an undefined rate gets no bar but an "n/a" mark."""
    height = 0.8 / len(series)
    for s, (_, metrics, color) in enumerate(series):
        ys = [i + (s - (len(series) - 1) / 2) * height for i in range(len(labels))]
        for y, m in zip(ys, metrics, strict=True):
            if not m or m.get("value") is None:
                ax.text(0, y, " n/a", va="center", fontsize=8, color=GREY, **TEXT)
                continue
            v = 100 * m["value"]
            err = None
            if m.get("ci"):
                err = [[max(0.0, v - 100 * m["ci"][0])], [max(0.0, 100 * m["ci"][1] - v)]]
            ax.barh(y, v, height, color=color, xerr=err, capsize=2,
                    error_kw={"elinewidth": 0.8, "ecolor": "#444"})  # fmt: skip
    ax.set_yticks(range(len(labels)), labels, fontsize=9, **TEXT)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first label on top
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)


def _legend(fig: Figure, similarity: bool | None) -> None:
    """One legend for the figure, above the panels (inside an axes it would hide bars)."""
    neg = {True: "sNFR", False: "NFR", None: "NFR (sNFR on similarity tasks)"}[similarity]
    pos = {True: "sPFR", False: "PFR", None: "PFR (sPFR on similarity tasks)"}[similarity]
    handles = [Patch(color=RED, label=f"negative flips: {neg}"),
               Patch(color=BLUE, label=f"positive flips: {pos}")]  # fmt: skip
    fig.legend(handles=handles, loc="upper right", ncol=2, fontsize=8, frameon=False)


def _shown(total: int) -> str:
    return f", first {BAR_CAP} of {total}" if total > BAR_CAP else ""


def _panel_height(rows: int) -> float:
    return 0.8 + 0.42 * max(rows, 1)


def overview_png(
    comps: list[dict[str, Any]],
    confidence: float,
    reference: str | None = None,
    env_tasks: dict[str, Any] | None = None,
) -> bytes:
    """One panel per task: each model compared with ``reference`` is a row of horizontal bars
    (its primary negative and positive flip rates, with CIs). Similarity tasks show sNFR and
    sPFR. At most :data:`TASK_CAP` panels and :data:`BAR_CAP` rows each; the figure is capped
    at :data:`MAX_HEIGHT` inches so a run with many tasks still gives a readable image."""
    tasks = list(dict.fromkeys(c["task"] for c in comps))
    shown_tasks = tasks[:TASK_CAP]
    panels = []
    for task in shown_tasks:
        rows = [c for c in comps if c["task"] == task and c["reference"] == reference]
        rows = rows or [c for c in comps if c["task"] == task]
        panels.append((task, rows[:BAR_CAP], len(rows)))
    heights = [_panel_height(len(rows)) for _, rows, _ in panels]
    fig = Figure(figsize=(WIDTH, min(sum(heights) + 0.5, MAX_HEIGHT)))
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (task, rows, total) in zip(axes[:, 0], panels, strict=True):
        sim = bool(rows) and is_similarity(rows[0], env_tasks)
        neg, pos = ("sNFR", "sPFR") if sim else ("NFR", "PFR")
        labels = [
            label(c["other"])
            if c["reference"] == reference
            else label(f"{c['reference']}→{c['other']}")
            for c in rows
        ]
        pairs = [rates(c, sim) for c in rows]
        _hbars(ax, labels, [(neg, [p[0] for p in pairs], RED), (pos, [p[1] for p in pairs], BLUE)])
        kind = "similarity flips" if sim else "flips"
        vs = f" vs {label(reference)}" if reference and rows[0]["reference"] == reference else ""
        ax.set_title(f"{label(task)}: {kind}{vs}{_shown(total)}", fontsize=10, loc="left", **TEXT)
    axes[-1, 0].set_xlabel(f"% of instances ({100 * confidence:g}% bootstrap CI)", fontsize=9)
    if len(tasks) > TASK_CAP:
        fig.suptitle(f"first {TASK_CAP} of {len(tasks)} tasks", fontsize=9, x=0.02, ha="left")
    kinds = {is_similarity(rows[0], env_tasks) for _, rows, _ in panels if rows}
    _legend(fig, kinds.pop() if len(kinds) == 1 else None)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return png_bytes(fig)


def slices_png(comp: dict[str, Any], env_tasks: dict[str, Any] | None = None) -> bytes | None:
    """Per-slice primary flip rates (horizontal bars); None when no slice has a defined rate
    (an empty chart says nothing)."""
    sim = is_similarity(comp, env_tasks)
    slices = comp["slices"]
    # The largest slices carry the most evidence: they are the ones drawn when there are many.
    names = sorted(slices, key=lambda s: -slices[s]["n"])[:BAR_CAP]
    pairs = [slice_rates(slices[s], sim) for s in names]
    if not any(m and m.get("value") for p in pairs for m in p):
        return None
    fig = Figure(figsize=(WIDTH, min(_panel_height(len(names)) + 0.5, MAX_HEIGHT)))
    ax = fig.add_subplot()
    neg, pos = ("sNFR", "sPFR") if sim else ("NFR", "PFR")
    _hbars(
        ax,
        [f"{label(s)} (N={slices[s]['n']})" for s in names],
        [(neg, [p[0] for p in pairs], RED), (pos, [p[1] for p in pairs], BLUE)],
    )
    title = (
        f"{label(comp['task'])}: {label(comp['reference'])} → {label(comp['other'])} per slice"
        + (f" (largest {BAR_CAP} of {len(slices)})" if len(slices) > BAR_CAP else "")
    )
    ax.set_title(title, fontsize=10, loc="left", **TEXT)
    ax.set_xlabel("% of the slice's instances", fontsize=9)
    _legend(fig, sim)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return png_bytes(fig)


def make_plots(data: Any) -> dict[str, bytes]:
    """All plots of a run: ``{"plots/<name>.png": png_bytes}``."""
    with drawing():
        return _all_plots(data)


def _all_plots(data: Any) -> dict[str, bytes]:
    comps = data.doc["comparisons"]
    settings = data.doc.get("settings", {})
    env_tasks = (getattr(data, "env", None) or {}).get("tasks") or {}
    reference = settings.get("reference") or (comps[0]["reference"] if comps else None)
    out: dict[str, bytes] = {}
    if comps:
        out["plots/overview.png"] = overview_png(
            comps, settings.get("confidence", 0.95), reference, env_tasks
        )
    for comp in comps:
        out[plot_key(comp, "quadrants")] = quadrant_png(comp, is_similarity(comp, env_tasks))
        if comp.get("slices"):
            png = slices_png(comp, env_tasks)
            if png is not None:
                out[plot_key(comp, "slices")] = png
    return out


STYLE = {  # kind -> (colour, marker, legend label)
    "new": (RED, "s", "new (vanilla update)"),
    "candidate": (BLUE, "o", "candidate"),
    "control": (ORANGE, "D", "same-budget control"),
}


def front_panels_png(panels: list[dict[str, Any]]) -> bytes:
    """One scatter panel per task: the primary negative flip rate (x) against accuracy or the
    mean score (y) of every model, with the seeds' intervals as error bars. ``panels`` items:
    ``{"title", "xlabel", "ylabel", "points": [(label, x, xerr, y, yerr, kind)]}`` with kind
    one of :data:`STYLE`; at most :data:`TASK_CAP` panels, two per row."""
    with drawing():
        return _front_panels(panels[:TASK_CAP])


def _front_panels(panels: list[dict[str, Any]]) -> bytes:
    cols = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(WIDTH + 2.5 if cols == 2 else WIDTH, min(3.6 * rows + 0.4, MAX_HEIGHT)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        drawn = [p for p in panel["points"] if None not in (p[1], p[3])]
        for kind, (color, marker, _) in STYLE.items():
            for _, x, xerr, y, yerr, _ in (p for p in drawn if p[5] == kind):
                ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker, color=color, capsize=2,
                            markersize=6, elinewidth=0.8, alpha=0.85, zorder=3)  # fmt: skip
        # Models at the same point (a candidate equal to new) share one label, not a smear.
        spots: dict[tuple[float, float], list[str]] = {}
        for name, x, _, y, _, _ in drawn:
            spots.setdefault((round(x, 6), round(y, 6)), []).append(label(name, 24))
        for (x, y), names in spots.items():
            ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(6, 4),
                        fontsize=8, **TEXT)  # fmt: skip
        ax.set_title(label(panel["title"], 60), fontsize=10, loc="left", **TEXT)
        ax.set_xlabel(panel["xlabel"], fontsize=9)
        ax.set_ylabel(panel["ylabel"], fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(color="#e5e5e5", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.margins(x=0.25, y=0.2)  # room for the labels beside the points
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_axis_off()
    handles = [
        Line2D([], [], color=c, marker=m, linestyle="none", label=text)
        for c, m, text in STYLE.values()
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return png_bytes(fig)
