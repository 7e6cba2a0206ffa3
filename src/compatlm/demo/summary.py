"""Aggregate a demo's seeds into the paper's Tables 4–6 shape (MUSCLE, arXiv 2407.09435).

Reads only files (each seed's ``eval/metrics.json``), so it re-runs offline. Per task and role
(the vanilla ``new`` update and every candidate, all compared with ``old``): accuracy, negative
and positive flip rates, ΔNFR and Δ%NFR against the vanilla update, the McNemar p of candidate
vs vanilla; for generative tasks the similarity flip rates and mean gain/regression. Seeds are
summarised by their mean and a 95% t-interval (null with a reason for a single seed).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from compatlm.io import atomic_write_json, atomic_write_text

FIELDS = (
    ("acc_old", "accuracy_old"),
    ("acc", "accuracy_new"),
    ("nfr", "negative_flip_rate"),
    ("pfr", "positive_flip_rate"),
)
SIM_FIELDS = (
    ("snfr", "similarity_negative_flip_rate"),
    ("spfr", "similarity_positive_flip_rate"),
    ("m_g", "mean_gain"),
    ("m_r", "mean_regression"),
    ("score_old", "mean_score_old"),
    ("score", "mean_score_new"),
)


def _value(obj: dict[str, Any] | None) -> float | None:
    return None if not obj else obj.get("value")


def seed_rows(metrics: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(task, role): {acc_old, acc, nfr, pfr, snfr, ..., p_vs_new}}`` of one seed."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    vs_new: dict[tuple[str, str], dict[str, Any]] = {}
    for comp in metrics["comparisons"]:
        key = (comp["task"], comp["other"])
        if comp["reference"] == "new":
            vs_new[key] = comp
            continue
        if comp["reference"] != "old":
            continue
        m = comp["metrics"]
        row = {short: _value(m.get(name)) for short, name in FIELDS}
        sim = (comp.get("similarity") or {}).get("metrics") or {}
        row.update({short: _value(sim.get(name)) for short, name in SIM_FIELDS})
        row["kind"] = comp.get("kind")
        rows[key] = row
    for key, comp in vs_new.items():
        if key in rows:
            rows[key]["p_vs_new"] = _value(comp["metrics"].get("mcnemar_p_value"))
    return rows


def primary(row: dict[str, Any], key: str) -> float | None:
    """NFR/PFR as the task counts them: generative tasks count similarity flips (for exact
    match these equal the correctness flips; for ROUGE they are the paper's definition)."""
    if row.get("kind") == "generation" and row.get(f"s{key}") is not None:
        return row[f"s{key}"]
    return row.get(key)


def mean_ci(values: list[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "ci": None, "n": 0, "reason": "undefined in every seed"}
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return {"mean": mean, "ci": None, "n": 1, "reason": "one seed: no interval"}
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    half = t.ppf(0.975, len(vals) - 1) * sd / math.sqrt(len(vals))
    return {"mean": mean, "ci": [mean - half, mean + half], "n": len(vals), "reason": None}


def aggregate(per_seed: dict[int, dict[tuple[str, str], dict[str, Any]]], tasks: list[str]) -> dict:
    roles = sorted({role for rows in per_seed.values() for (_, role) in rows}, key=_role_order)
    table: dict[str, dict[str, Any]] = {}
    for task in tasks:
        table[task] = {}
        for role in roles:
            seeds = [rows[(task, role)] for rows in per_seed.values() if (task, role) in rows]
            if not seeds:
                continue
            keys = [s for s, _ in FIELDS + SIM_FIELDS] + ["p_vs_new", "seconds"]
            entry = {k: mean_ci([s.get(k) for s in seeds]) for k in keys}
            entry["primary_nfr"] = mean_ci([primary(s, "nfr") for s in seeds])
            entry["primary_pfr"] = mean_ci([primary(s, "pfr") for s in seeds])
            entry["kind"] = seeds[0].get("kind")
            entry["seeds"] = len(seeds)
            table[task][role] = entry
        base = table[task].get("new", {}).get("primary_nfr", {}).get("mean")
        for entry in table[task].values():
            cand = entry["primary_nfr"]["mean"]
            entry["delta_nfr"] = None if cand is None or base is None else cand - base
            entry["delta_nfr_percent"] = (
                None if cand is None or not base else 100.0 * (cand - base) / base
            )
    return {"roles": roles, "tasks": table}


def _role_order(role: str) -> tuple[int, str]:
    return ({"new": 0, "muscle": 1}.get(role, 2), role)


def overall(table: dict[str, Any], role: str) -> dict[str, Any]:
    """Mean Δ%NFR over tasks and the worst accuracy change vs vanilla, for the headline."""
    pcts, acc_gaps = [], []
    for entry in table["tasks"].values():
        if role in entry and entry[role]["delta_nfr_percent"] is not None:
            pcts.append(entry[role]["delta_nfr_percent"])
        new_acc = entry.get("new", {}).get("acc", {}).get("mean")
        cand_acc = entry.get(role, {}).get("acc", {}).get("mean")
        if new_acc is not None and cand_acc is not None:
            acc_gaps.append(100.0 * (cand_acc - new_acc))
    return {
        "mean_delta_nfr_percent": sum(pcts) / len(pcts) if pcts else None,
        "tasks_counted": len(pcts),
        "min_accuracy_change_points": min(acc_gaps) if acc_gaps else None,
    }


def _fmt(x: dict[str, Any] | float | None, scale: float = 100.0, digits: int = 1) -> str:
    if isinstance(x, dict):
        if x.get("mean") is None:
            return "n/a"
        text = f"{scale * x['mean']:.{digits}f}"
        if x.get("ci"):
            text += f" ± {scale * (x['ci'][1] - x['mean']):.{digits}f}"
        return text
    return "n/a" if x is None else f"{scale * x:.{digits}f}"


HEADER = ["Task", "Model", "Acc old", "Acc", "NFR", "ΔNFR", "Δ%NFR", "PFR", "p vs new", "Cost s"]


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Rows in percent (mean ± 95% half-width over seeds)."""
    rows = []
    for task, entry in summary["tasks"].items():
        for role, e in entry.items():
            p = e["p_vs_new"]["mean"]
            vanilla = role == "new"
            rows.append(
                [
                    task,
                    role,
                    _fmt(e["acc_old"]),
                    _fmt(e["acc"]),
                    _fmt(e["primary_nfr"]),
                    "—" if vanilla else _fmt(e["delta_nfr"], 100.0),
                    "—" if vanilla else _fmt(e["delta_nfr_percent"], 1.0),
                    _fmt(e["primary_pfr"]),
                    "—" if vanilla or p is None else f"{p:.3g}",
                    _fmt(e["seconds"]["mean"], 1.0, 0),
                ]
            )
    return rows


SIM_HEADER = ["Task", "Model", "S old", "S", "sNFR", "sPFR", "m_g", "m_r"]


def similarity_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Generative tasks in the paper's Table 6 shape: mean similarity S (ROUGE-1 / exact match)
    and the similarity flip rates with mean gain and regression, in percent."""
    rows = []
    for task, entry in summary["tasks"].items():
        for role, e in entry.items():
            if e.get("kind") != "generation":
                continue
            keys = ("score_old", "score", "snfr", "spfr", "m_g", "m_r")
            rows.append([task, role, *(_fmt(e[k]) for k in keys)])
    return rows


def render_markdown(summary: dict[str, Any], seed_reports: dict[int, str]) -> str:
    lines = [
        "# compatlm demo: a base-model update and what MUSCLE does about it",
        "",
        f"Seeds: {', '.join(str(s) for s in summary['seeds'])}. All numbers in percent, mean ± 95%"
        " t-interval half-width over seeds; every model is compared with **old** on the task's"
        " test split. NFR = negative flip rate (old right, model wrong); for the generative tasks"
        " the similarity flip rates (score fell/rose) are shown. ΔNFR and Δ%NFR are relative to the"
        " vanilla update (**new**); p is McNemar's exact test of the model vs new. Cost = seconds"
        " to train or build the model's adapter (for new: its task adapter), from `done.json`.",
        "",
    ]
    for role, head in summary["overall"].items():
        pct, gap = head["mean_delta_nfr_percent"], head["min_accuracy_change_points"]
        lines.append(
            f"- **{role}**: mean Δ%NFR over {head['tasks_counted']} tasks = {_fmt(pct, 1.0)}%;"
            f" worst accuracy change vs new = {_fmt(gap, 1.0, 2)} points"
        )
    lines += ["", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(summary)]
    sim = similarity_rows(summary)
    if sim:
        lines += ["", "Generative tasks: mean similarity S and similarity flips (percent)", ""]
        lines += ["| " + " | ".join(SIM_HEADER) + " |", "|" + "---|" * len(SIM_HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in sim]
    if summary.get("notes"):
        lines += ["", *(f"> {n}" for n in summary["notes"])]
    lines += ["", "Per-seed reports (flips, slices, every flipped instance):", ""]
    lines += [f"- seed {s}: [{p}]({p})" for s, p in seed_reports.items()]
    return "\n".join(lines) + "\n"


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,td:nth-child(2){text-align:left}th{background:#f3f3f3}"
)


def render_html(summary: dict[str, Any], seed_reports: dict[int, str]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table_rows(summary)
    )
    items = "".join(
        f"<li>{e(role)}: mean Δ%NFR over {h['tasks_counted']} tasks ="
        f" {e(_fmt(h['mean_delta_nfr_percent'], 1.0))}%; worst accuracy change vs new ="
        f" {e(_fmt(h['min_accuracy_change_points'], 1.0, 2))} points</li>"
        for role, h in summary["overall"].items()
    )
    sim = similarity_rows(summary)
    sim_html = ""
    if sim:
        sim_head = "".join(f"<th>{e(h)}</th>" for h in SIM_HEADER)
        sim_body = "".join(
            "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in sim
        )
        sim_html = (
            "<h2>Generative tasks: similarity S and similarity flips</h2>"
            f"<table><tr>{sim_head}</tr>{sim_body}</table>"
        )
    notes = "".join(f"<p><em>{e(n)}</em></p>" for n in summary.get("notes", []))
    links = "".join(
        f'<li><a href="{e(p)}">seed {e(str(s))}</a></li>' for s, p in seed_reports.items()
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>compatlm demo</title>'
        f"<style>{CSS}</style></head><body><h1>compatlm demo</h1>"
        "<p>Numbers in percent, mean ± 95% half-width over seeds; every model compared with"
        " <b>old</b>. ΔNFR, Δ%NFR and p are relative to the vanilla update <b>new</b>.</p>"
        f"<ul>{items}</ul><table><tr>{head}</tr>{body}</table>{sim_html}{notes}"
        f"<h2>Per-seed reports</h2><ul>{links}</ul></body></html>\n"
    )


def step_seconds(step_dir: Path) -> float | None:
    """Seconds a demo step took (its ``done.json``), or None when it is not recorded."""
    marker = step_dir / "done.json"
    if not marker.is_file():
        return None
    return json.loads(marker.read_text(encoding="utf-8")).get("seconds")


def write_summary(
    out: Path, runs: dict[int, Path], tasks: list[str], notes: list[str] | None = None
) -> Path:
    """Write summary.json, report.md and report.html into ``out``; returns report.md."""
    per_seed = {
        seed: seed_rows(json.loads((run / "metrics.json").read_text(encoding="utf-8")))
        for seed, run in runs.items()
    }
    for seed, run in runs.items():  # run = seed<S>/eval; the steps live in seed<S>/adapters
        for (task, role), row in per_seed[seed].items():
            row["seconds"] = step_seconds(run.parent / "adapters" / task / role)
    summary = aggregate(per_seed, tasks)
    summary["seeds"] = sorted(runs)
    summary["notes"] = list(notes or [])
    summary["overall"] = {
        role: overall(summary, role) for role in summary["roles"] if role != "new"
    }
    summary["per_seed"] = {
        str(seed): {f"{t}/{r}": row for (t, r), row in rows.items()}
        for seed, rows in per_seed.items()
    }
    reports = {seed: str((run / "report.html").relative_to(out)) for seed, run in runs.items()}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.html", render_html(summary, reports))
    md = {s: p.replace(".html", ".md") for s, p in reports.items()}
    return atomic_write_text(out / "report.md", render_markdown(summary, md))
