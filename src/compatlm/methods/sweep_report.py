"""Rendering of a sweep (``sweep.json`` → ``sweep.md`` and the NFR-vs-accuracy front plot).

Pure functions of the sweep document, so the outputs can be re-rendered from files alone.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

GREEN, RED, BLUE, GREY = "#3a9a5b", "#c8413b", "#3b6fb6", "#9a9a9a"


def _pct(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("value") is None:
        return "n/a" + (f" ({metric['reason']})" if metric and metric.get("reason") else "")
    return f"{100 * metric['value']:.2f}% ({metric['numerator']}/{metric['denominator']})"


def sweep_markdown(doc: dict[str, Any]) -> str:
    """A short Markdown summary: the grid table, the floor, the choice and the test numbers."""
    vt = doc["validation_task"]
    lines = [
        f"# Sweep: {doc['method']} over `{doc['knob']}`",
        "",
        f"Validation task: `{vt.get('name')}` ("
        + (f"file `{vt['path']}`" if vt.get("path") else f"split `{vt.get('split', 'test')}`")
        + ").",
        f"Accuracy floor: {100 * doc['floor']['value']:.2f}% ({doc['floor']['source']}).",
        "",
        f"| {doc['knob']} | NFR vs old | accuracy | meets floor | Pareto |",
        "|---|---|---|---|---|",
        f"| new (vanilla) | {_pct(doc['new']['negative_flip_rate'])}"
        f" | {_pct(doc['new']['accuracy'])} | | |",
    ]
    chosen = doc["selected"]["name"] if doc["selected"] else None
    for p in doc["points"]:
        mark = " **(selected)**" if p["name"] == chosen else ""
        lines.append(
            f"| {p['value']}{mark} | {_pct(p['negative_flip_rate'])} | {_pct(p['accuracy'])}"
            f" | {'yes' if p['eligible'] else 'no'} | {'yes' if p['pareto'] else ''} |"
        )
    lines += ["", f"**Selection:** {doc['reason']}.", ""]
    if doc.get("test"):
        lines += [
            "## Test split (selected candidate only)",
            "",
            "| model | NFR vs old | accuracy |",
        ]
        lines.append("|---|---|---|")
        for role, p in doc["test"].items():
            lines.append(f"| {role} | {_pct(p['negative_flip_rate'])} | {_pct(p['accuracy'])} |")
        lines.append("")
    lines.append("![NFR vs accuracy](plots/sweep_front.png)")
    return "\n".join(lines) + "\n"


def front_png(doc: dict[str, Any]) -> bytes:
    """NFR (x) vs accuracy (y) of every grid point and the vanilla new model, the Pareto front
    joined, the accuracy floor dashed and the selected point circled."""
    fig = Figure(figsize=(5.6, 4.2))
    ax = fig.add_subplot()
    pts = [
        p
        for p in doc["points"]
        if p["negative_flip_rate"]["value"] is not None and p["accuracy"]["value"] is not None
    ]
    xs = [100 * p["negative_flip_rate"]["value"] for p in pts]
    ys = [100 * p["accuracy"]["value"] for p in pts]
    ax.scatter(xs, ys, color=BLUE, zorder=3, label="candidates")
    for p, x, y in zip(pts, xs, ys, strict=True):
        ax.annotate(str(p["value"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = sorted((x, y) for p, x, y in zip(pts, xs, ys, strict=True) if p["pareto"])
    if len(front) > 1:
        ax.plot(*zip(*front, strict=True), color=BLUE, alpha=0.5, label="Pareto front")
    new = doc["new"]
    if new["negative_flip_rate"]["value"] is not None and new["accuracy"]["value"] is not None:
        ax.scatter(
            [100 * new["negative_flip_rate"]["value"]],
            [100 * new["accuracy"]["value"]],
            color=RED,
            marker="s",
            zorder=3,
            label="new (vanilla)",
        )
    ax.axhline(100 * doc["floor"]["value"], color=GREY, linestyle="--", label="accuracy floor")
    sel = doc["selected"]
    if sel is not None:
        ax.scatter(
            [100 * sel["negative_flip_rate"]["value"]],
            [100 * sel["accuracy"]["value"]],
            s=180,
            facecolors="none",
            edgecolors=GREEN,
            linewidths=2,
            zorder=4,
            label="selected",
        )
    ax.set_xlabel("negative flip rate vs old (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{doc['method']}: {doc['knob']} sweep (validation)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()
