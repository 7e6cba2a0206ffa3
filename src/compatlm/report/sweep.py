"""``sweep.md`` and ``plots/sweep_front.png``: pure functions of a ``selection.json`` document.

They can be re-rendered from files alone. They say what was selected, on which split, under
which floor; show the selection split's front (metric vs accuracy per point, the winner marked)
and the one test look with the control beside the winner. Every label that comes from a config
(knob values, role names, paths) is escaped: Markdown through
:func:`compatlm.report.markdown.md`, plot text drawn without mathtext or LaTeX (a ``$`` in a
knob value is a dollar sign, not the start of a formula).
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from compatlm.report.markdown import md, md_code, table
from compatlm.report.plots import BLUE, GREEN, GREY, ORANGE, RED, TEXT, drawing, png_bytes
from compatlm.report.plots import label as plot_label

ABBREV = {
    "negative_flip_rate": "NFR",
    "inconsistency_flip_rate": "NFR (inconsistency)",
    "negative_flip_impact": "NFI",
    "similarity_negative_flip_rate": "NFR (similarity)",
    "backward_trust_compatibility": "BTC",
}


def _pct(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("value") is None:
        return "n/a" + (f" ({metric['reason']})" if metric and metric.get("reason") else "")
    return f"{100 * metric['value']:.2f}% ({metric['numerator']}/{metric['denominator']})"


def _metric(p: dict[str, Any], name: str) -> dict[str, Any] | None:
    return p["negative_flip_rate"] if name == "negative_flip_rate" else p.get("metric")


def point_label(p: dict[str, Any]) -> str:
    """What a point is called in tables and the plot: its knob values, or its role."""
    if p.get("kind") == "new":
        return "new (vanilla)"
    knobs = p.get("knobs")
    if p.get("kind") == "control" or not knobs:
        return f"{p['name']} (control)" if p.get("kind") == "control" else str(p["name"])
    return ", ".join(f"{k}={v}" for k, v in knobs.items())


def _task_text(split: dict[str, Any] | None) -> str:
    if not split:
        return "none"
    task = split["task"] or {}
    where = f", file {md_code(task['path'])}" if task.get("path") else ""
    return f"split {md_code(split['name'])} of task {md_code(task.get('name'))}{where}"


def sweep_markdown(doc: dict[str, Any]) -> str:
    """The sweep's report: the choice and its rule, the selection split's front, the test look."""
    rule, metric = doc["rule"], doc["rule"]["metric"]
    short = ABBREV.get(metric, metric)
    floor = doc["rule"]["accuracy_floor"]
    knobs = ", ".join(md_code(k) for k in doc["knobs"])
    winner = doc["winner"]
    lines = [f"# Sweep: {md(doc['method'])} over {knobs}", ""]
    if winner is not None:
        lines.append(f"**Selected: {md(point_label(winner))}** (role {md_code(winner['name'])}).")
    else:
        lines.append("**No candidate selected.**")
    rule_line = (
        f"- Rule: {rule['better']} {md(metric)} vs old is better, among the points with accuracy"
        f" ≥ the floor {100 * floor['value']:.2f}% ({md(floor['source'])}); ties: {rule['ties']}"
    )
    if doc["control"] is not None and not rule["control_competes"]:
        rule_line += "; the control is shown beside the winner but cannot be selected"
    test_line = f"- Test look: {_task_text(doc['splits']['test'])}"
    if doc["test"]:
        who = "old, new, the winner" + (" and the control" if doc["control"] else "")
        test_line += f", evaluated once after the winner was fixed ({who} only)"
    lines += [
        "",
        f"- Selected on: {_task_text(doc['splits']['selection'])}.",
        rule_line + ".",
        f"- Outcome: {md(doc['reason'], cap=400)}.",
        test_line + ".",
    ]
    if doc.get("removed"):
        lines.append(f"- Removed after the failed selection: {', '.join(doc['removed'])}.")
    split = doc["splits"]["selection"]["name"]
    new = doc["new"]
    rows = [[md(point_label(new)), _pct(_metric(new, metric)), _pct(new["accuracy"]),
             "reference", ""]]  # fmt: skip
    for p in doc["points"]:
        name = md(point_label(p))
        if winner and p["name"] == winner["name"]:
            name += " **(selected)**"
        rows.append([name, _pct(_metric(p, metric)), _pct(p["accuracy"]),
                     "yes" if p["eligible"] else "no", "yes" if p["pareto"] else ""])  # fmt: skip
    header = ["point", f"{short} vs old", "accuracy", "meets floor", "Pareto"]
    lines += ["", f"## Front on split {md_code(split)}", "", table(header, rows), ""]
    lines += ["![metric vs accuracy](plots/sweep_front.png)", ""]
    if doc.get("test"):
        lines += _test_section(doc, metric, short)
    return "\n".join(lines) + "\n"


def _test_section(doc: dict[str, Any], metric: str, short: str) -> list[str]:
    test = doc["test"]
    models = test["models"]
    rows = [["old", "", _pct(test["old_accuracy"])]]
    for role, p in models.items():
        tag = " **(selected)**" if p.get("winner") else ""
        kind = " (control)" if p.get("kind") == "control" else ""
        rows.append([f"{md(role)}{kind}{tag}", _pct(_metric(p, metric)), _pct(p["accuracy"])])
    lines = [f"## Test split {md_code(test['split'])} (one look)", "",
             table(["model", f"{short} vs old", "accuracy"], rows), ""]  # fmt: skip
    win = next((p for p in models.values() if p.get("winner")), None)
    ctl = next((p for p in models.values() if p.get("kind") == "control"), None)
    if win is not None and ctl is not None and win is not ctl:
        diffs = []
        for what, a, b in ((short, _metric(win, metric), _metric(ctl, metric)),
                           ("accuracy", win["accuracy"], ctl["accuracy"])):  # fmt: skip
            if a and b and a.get("value") is not None and b.get("value") is not None:
                diffs.append(f"{what} {100 * (a['value'] - b['value']):+.2f} points")
        if diffs:
            lines += [f"Winner minus control on the test split: {', '.join(diffs)}.", ""]
    return lines


def _xy(p: dict[str, Any], metric: str) -> tuple[float, float] | None:
    m, a = _metric(p, metric), p["accuracy"]
    if not m or m.get("value") is None or a.get("value") is None:
        return None
    return 100 * m["value"], 100 * a["value"]


def front_png(doc: dict[str, Any]) -> bytes:
    """Selection metric (x) vs accuracy (y) on the selection split: every grid point, the
    control, the new model, the Pareto front joined, the floor dashed, the winner circled."""
    # No mathtext or LaTeX anywhere in this figure: knob values and names are data.
    with drawing():
        return _front_png(doc)


def _front_png(doc: dict[str, Any]) -> bytes:
    metric = doc["rule"]["metric"]
    fig = Figure(figsize=(5.8, 4.3))
    ax = fig.add_subplot()
    kinds = (("candidate", BLUE, "o", "grid points"), ("control", ORANGE, "D", "control"))
    for kind, color, marker, name in kinds:
        pts = [(p, xy) for p in doc["points"] if p.get("kind", "candidate") == kind
               for xy in [_xy(p, metric)] if xy is not None]  # fmt: skip
        if not pts:
            continue
        ax.scatter([x for _, (x, _) in pts], [y for _, (_, y) in pts], color=color,
                   marker=marker, zorder=3, label=name)  # fmt: skip
        for p, (x, y) in pts:
            ax.annotate(plot_label(point_label(p), 32), (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, **TEXT)  # fmt: skip
    front = sorted(xy for p in doc["points"] if p["pareto"] for xy in [_xy(p, metric)] if xy)
    if len(front) > 1:
        ax.plot(*zip(*front, strict=True), color=BLUE, alpha=0.5, label="Pareto front")
    new = _xy(doc["new"], metric)
    if new is not None:
        ax.scatter([new[0]], [new[1]], color=RED, marker="s", zorder=3, label="new (vanilla)")
    ax.axhline(100 * doc["rule"]["accuracy_floor"]["value"], color=GREY, linestyle="--",
               label="accuracy floor")  # fmt: skip
    win = _xy(doc["winner"], metric) if doc["winner"] is not None else None
    if win is not None:
        ax.scatter([win[0]], [win[1]], s=180, facecolors="none", edgecolors=GREEN,
                   linewidths=2, zorder=4, label="selected")  # fmt: skip
    ax.set_xlabel(f"{metric.replace('_', ' ')} vs old (%)")
    ax.set_ylabel("accuracy (%)")
    split = doc["splits"]["selection"]["name"]
    title = f"{plot_label(doc['method'])} sweep, split {plot_label(split)}"
    ax.set_title(title, fontsize=10, **TEXT)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return png_bytes(fig)
