"""Plots for the reports, drawn with matplotlib's Agg canvas (no display, no global backend).

Owns: the overview chart (NFR and PFR per comparison, with bootstrap CIs), the four-quadrant
picture per comparison (both right / positive flip / negative flip / both wrong) and the
per-slice flip-rate bars. Every plot is returned as PNG bytes keyed by its path relative to the
run directory; the HTML page inlines them, the Markdown report links the files.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from compatlm.eval.compare import safe_name

GREEN, RED, BLUE, GREY = "#3a9a5b", "#c8413b", "#3b6fb6", "#9a9a9a"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # Fixed metadata keeps the bytes reproducible across renders of the same run.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def plot_key(comp: dict[str, Any], what: str) -> str:
    name = f"{safe_name(comp['task'])}_{safe_name(comp['reference'])}_vs_{safe_name(comp['other'])}"
    return f"plots/{name}_{what}.png"


def quadrant_png(comp: dict[str, Any]) -> bytes:
    """2×2 picture: rows = reference right/wrong, columns = other right/wrong."""
    c = comp["counts"]
    n = max(c["n"], 1)
    cells = (
        ((c["both_correct"], "both right", GREEN), (c["negative_flips"], "negative flip", RED)),
        ((c["positive_flips"], "positive flip", BLUE), (c["both_wrong"], "both wrong", GREY)),
    )
    fig = Figure(figsize=(4.2, 3.6))
    ax = fig.add_subplot()
    for r, row in enumerate(cells):
        for col, (count, label, color) in enumerate(row):
            # Opacity grows with the share so the eye finds the big cells; never fully blank.
            alpha = 0.25 + 0.75 * count / n
            ax.add_patch(_rect(col, 1 - r, color, alpha))
            ax.text(
                col + 0.5,
                1.5 - r,
                f"{label}\n{count} ({100 * count / n:.1f}%)",
                ha="center",
                va="center",
                fontsize=9,
            )
    ax.set_xlim(0, 2)
    ax.set_ylim(0, 2)
    ax.set_xticks([0.5, 1.5], [f"{comp['other']} right", f"{comp['other']} wrong"])
    ax.set_yticks([1.5, 0.5], [f"{comp['reference']}\nright", f"{comp['reference']}\nwrong"])
    ax.set_title(f"{comp['task']}: {comp['reference']} → {comp['other']} (N={c['n']})", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _rect(x: float, y: float, color: str, alpha: float):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), 1, 1, facecolor=color, alpha=alpha, edgecolor="white", linewidth=2)


def _bars(ax, labels: list[str], series: list[tuple[str, list[dict[str, Any]], str]]) -> None:
    """Grouped bars of rate metrics (in %), with CI whiskers where the metric has one."""
    width = 0.8 / len(series)
    for s, (name, metrics, color) in enumerate(series):
        xs = [i + (s - (len(series) - 1) / 2) * width for i in range(len(labels))]
        vals = [100 * (m["value"] or 0.0) for m in metrics]
        lo = [
            v - 100 * m["ci"][0] if m.get("ci") else 0.0 for v, m in zip(vals, metrics, strict=True)
        ]
        hi = [
            100 * m["ci"][1] - v if m.get("ci") else 0.0 for v, m in zip(vals, metrics, strict=True)
        ]
        ax.bar(xs, vals, width, label=name, color=color, yerr=[lo, hi], capsize=3)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("% of instances")
    ax.legend(fontsize=8)


def overview_png(comps: list[dict[str, Any]], confidence: float) -> bytes:
    fig = Figure(figsize=(max(4.0, 1.3 * len(comps) + 2), 3.4))
    ax = fig.add_subplot()
    labels = [f"{c['task']}\n{c['reference']}→{c['other']}" for c in comps]
    _bars(
        ax,
        labels,
        [
            ("NFR", [c["metrics"]["negative_flip_rate"] for c in comps], RED),
            ("PFR", [c["metrics"]["positive_flip_rate"] for c in comps], BLUE),
        ],
    )
    ax.set_title(f"Flip rates per comparison ({100 * confidence:g}% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def slices_png(comp: dict[str, Any]) -> bytes:
    names = list(comp["slices"])
    fig = Figure(figsize=(max(4.0, 0.9 * len(names) + 2), 3.4))
    ax = fig.add_subplot()
    _bars(
        ax,
        names,
        [
            ("NFR", [comp["slices"][s]["metrics"]["negative_flip_rate"] for s in names], RED),
            ("PFR", [comp["slices"][s]["metrics"]["positive_flip_rate"] for s in names], BLUE),
        ],
    )
    ax.set_title(f"{comp['task']}: {comp['reference']} → {comp['other']} per slice", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def make_plots(data: Any) -> dict[str, bytes]:
    """All plots of a run: ``{"plots/<name>.png": png_bytes}``."""
    comps = data.doc["comparisons"]
    out: dict[str, bytes] = {}
    if comps:
        out["plots/overview.png"] = overview_png(
            comps, data.doc.get("settings", {}).get("confidence", 0.95)
        )
    for comp in comps:
        out[plot_key(comp, "quadrants")] = quadrant_png(comp)
        if comp.get("slices"):
            out[plot_key(comp, "slices")] = slices_png(comp)
    return out
