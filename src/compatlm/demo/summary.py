"""Aggregate a demo's seeds into the paper's Tables 4–6 shape (MUSCLE, arXiv 2407.09435).

Reads only files (each seed's ``eval/metrics.json`` and ``eval/env.json``, the steps'
``done.json``, the demo's ``family.json``), so it re-runs offline. Per task and role (the
vanilla ``new`` update and every candidate, all compared with ``old``): accuracy, negative and
positive flip rates, ΔNFR and Δ%NFR against the vanilla update, the p-value of candidate vs
vanilla (exact McNemar with one seed, a paired t-test over seeds with several); for
similarity-scored generation (ROUGE-1) the mean score S, sNFR/sPFR and m_g/m_r instead, since
"correct" there is only a pass threshold (:mod:`compatlm.report.primary`). The share of loss tokens each compat candidate sent to teacher_old comes from the seeds'
``metrics.json`` diagnostics. Seeds are summarised by their mean and a 95% t-interval (null
with a reason for a single seed). The page itself is rendered by :mod:`compatlm.report.demo`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from compatlm.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from compatlm.report.context import read_env
from compatlm.report.primary import decision_metric, is_similarity, pass_threshold

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
PLOT = "plots/nfr_vs_accuracy.png"


def _value(obj: dict[str, Any] | None) -> float | None:
    return None if not obj else obj.get("value")


def seed_rows(
    metrics: dict[str, Any], env_tasks: dict[str, Any] | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(task, role): {acc_old, acc, nfr, pfr, snfr, ..., p_vs_new, old_share}}`` of a seed."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    vs_new: dict[tuple[str, str], dict[str, Any]] = {}
    diagnostics = metrics.get("diagnostics") or {}
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
        row["similarity"] = is_similarity(comp, env_tasks)
        row["metric"] = decision_metric(comp, env_tasks)
        row["tolerance"] = (comp.get("similarity") or {}).get("tolerance")
        diag = (diagnostics.get(comp["task"]) or {}).get(comp["other"]) or {}
        row["objective"] = diag.get("objective")
        row["old_share"] = _value(diag.get("old_share"))
        row["verdict"] = diag.get("verdict") or diag.get("reason")
        rows[key] = row
    for key, comp in vs_new.items():
        if key in rows:
            rows[key]["p_vs_new"] = _value(comp["metrics"].get("mcnemar_p_value"))
    return rows


def primary(row: dict[str, Any], key: str) -> float | None:
    """NFR/PFR as the task counts them: similarity-scored tasks count similarity flips (the
    paper's definition for ROUGE); every other task its correctness flips."""
    similar = row.get("similarity")
    if similar is None:  # a row from before the flag existed: generation counted sNFR
        similar = row.get("kind") == "generation" and row.get(f"s{key}") is not None
    return row.get(f"s{key}") if similar else row.get(key)


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


def _no_p(reason: str) -> dict[str, Any]:
    return {"value": None, "test": None, "n_seeds": 0, "per_seed": [], "reason": reason}


def p_vs_new(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """The p-value of a candidate against new, from (candidate row, new row) per seed.

    One seed: that seed's exact McNemar test over instances. Several: seeds are the level, so a
    paired t-test over seeds of the candidate's NFR against new's — a mean of per-seed p-values
    is not a p-value of anything. Per-seed McNemar p-values are kept beside it."""
    per_seed = [cand.get("p_vs_new") for cand, _ in pairs]
    if not pairs:
        return _no_p("no seed has both the candidate and new")
    if len(pairs) == 1:
        if per_seed[0] is None:
            return _no_p("McNemar p undefined (no discordant instance)")
        return {"value": per_seed[0], "test": "mcnemar_exact", "n_seeds": 1,
                "per_seed": per_seed, "reason": None}  # fmt: skip
    diffs = [
        (primary(c, "nfr"), primary(n, "nfr"))
        for c, n in pairs
        if primary(c, "nfr") is not None and primary(n, "nfr") is not None
    ]
    base = {"test": "paired_t_over_seeds", "n_seeds": len(diffs), "per_seed": per_seed}
    if len(diffs) < 2:
        return base | {"value": None, "reason": "fewer than 2 seeds with an NFR for both"}
    if len({round(c - n, 12) for c, n in diffs}) == 1:  # t undefined without spread
        return base | {"value": None, "reason": "the NFR change is the same in every seed"}
    from scipy.stats import ttest_rel

    p = float(ttest_rel([c for c, _ in diffs], [n for _, n in diffs]).pvalue)
    return base | {"value": p, "reason": None}


def aggregate(per_seed: dict[int, dict[tuple[str, str], dict[str, Any]]], tasks: list[str]) -> dict:
    roles = sorted({role for rows in per_seed.values() for (_, role) in rows}, key=_role_order)
    table: dict[str, dict[str, Any]] = {}
    for task in tasks:
        table[task] = {}
        # Per role, new's rows in the same seeds: a candidate missing from some seeds (no grid
        # point passed the floor) is compared with new over the seeds it has, not all of them.
        paired: dict[str, tuple[list[float | None], list[float | None]]] = {}
        for role in roles:
            seeds = [rows[(task, role)] for rows in per_seed.values() if (task, role) in rows]
            if not seeds:
                continue
            pairs = [  # (candidate row, new row) per seed that has both
                (rows[(task, role)], rows[(task, "new")])
                for rows in per_seed.values()
                if (task, role) in rows and (task, "new") in rows
            ]
            news = [n for _, n in pairs]
            paired[role] = ([primary(r, "nfr") for r in news], [r.get("acc") for r in news])
            keys = [s for s, _ in FIELDS + SIM_FIELDS] + ["seconds", "old_share"]
            entry = {k: mean_ci([s.get(k) for s in seeds]) for k in keys}
            entry["p_vs_new"] = p_vs_new(pairs) if role != "new" else _no_p("new itself")
            entry["primary_nfr"] = mean_ci([primary(s, "nfr") for s in seeds])
            entry["primary_pfr"] = mean_ci([primary(s, "pfr") for s in seeds])
            for k in ("kind", "metric", "tolerance", "objective"):
                entry[k] = seeds[0].get(k)
            entry["similarity"] = bool(seeds[0].get("similarity"))
            entry["verdicts"] = list(dict.fromkeys(s["verdict"] for s in seeds if s.get("verdict")))
            entry["seeds"] = len(seeds)
            table[task][role] = entry
        for role, entry in table[task].items():
            nfrs, accs = paired[role]
            base = mean_ci(nfrs)["mean"]
            cand = entry["primary_nfr"]["mean"]
            entry["new_same_seeds"] = {"nfr": base, "acc": mean_ci(accs)["mean"], "n": len(nfrs)}
            entry["delta_nfr"] = None if cand is None or base is None else cand - base
            entry["delta_nfr_percent"] = (
                None if cand is None or not base else 100.0 * (cand - base) / base
            )
    return {"roles": roles, "tasks": table}


def _role_order(role: str) -> tuple[int, str]:
    return ({"new": 0, "muscle": 1}.get(role, 2), role)


def overall(table: dict[str, Any], role: str) -> dict[str, Any]:
    """Mean Δ%NFR over tasks and the worst accuracy change vs vanilla (classification tasks
    only: a similarity task's accuracy is its pass rate), for the headline."""
    pcts, acc_gaps = [], []
    for entry in table["tasks"].values():
        if role in entry and entry[role]["delta_nfr_percent"] is not None:
            pcts.append(entry[role]["delta_nfr_percent"])
        if entry.get(role, {}).get("similarity"):
            continue
        new_acc = entry.get(role, {}).get("new_same_seeds", {}).get("acc")
        cand_acc = entry.get(role, {}).get("acc", {}).get("mean")
        if new_acc is not None and cand_acc is not None:
            acc_gaps.append(100.0 * (cand_acc - new_acc))
    return {
        "mean_delta_nfr_percent": sum(pcts) / len(pcts) if pcts else None,
        "tasks_counted": len(pcts),
        "min_accuracy_change_points": min(acc_gaps) if acc_gaps else None,
    }


def step_seconds(step_dir: Path) -> float | None:
    """Seconds a demo step took (its ``done.json``), or None when it is not recorded. A
    candidate chosen from a grid has one step per grid point below it: its cost is their sum
    (the selection is part of what the candidate cost to build)."""
    marker = step_dir / "done.json"
    markers = [marker] if marker.is_file() else sorted(step_dir.glob("*/done.json"))
    total = None
    for path in markers:
        seconds = json.loads(path.read_text(encoding="utf-8")).get("seconds")
        if isinstance(seconds, int | float):
            total = (total or 0.0) + seconds
    return total


def _context(out: Path, runs: dict[int, Path], docs: dict[int, dict], envs: dict[int, dict]):
    """What the page header states: the family, code version, date, the seeds' gates, each
    task's decision metric and pass threshold."""
    family = None
    path = out / "family.json"
    if path.is_file():
        try:
            family = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            family = None
    first = min(runs) if runs else None
    env = envs.get(first) or {}
    doc = docs.get(first) or {}
    thresholds = {}
    for task in env.get("tasks") or {}:
        thr = pass_threshold(task, env.get("tasks"))
        if thr is not None:
            thresholds[task] = thr
    return {
        "family": family if isinstance(family, dict) else None,
        "git_hash": env.get("git_hash") or doc.get("git_hash"),
        "generated_by": doc.get("generated_by"),
        "created": env.get("created"),
        "gates": {str(s): d.get("gate") for s, d in docs.items()},
        "pass_threshold": thresholds,
    }


def write_summary(
    out: Path,
    runs: dict[int, Path],
    tasks: list[str],
    notes: list[str] | None = None,
    stability: dict[str, Any] | None = None,
) -> Path:
    """Write summary.json, report.md, report.html and the plot into ``out``; returns
    report.md. ``stability`` is ``evidence.json``'s section of that name (null with one seed),
    shown as its own table."""
    from compatlm.report.demo import front_plot, render_html, render_markdown

    docs = {
        s: json.loads((r / "metrics.json").read_text(encoding="utf-8")) for s, r in runs.items()
    }
    envs = {seed: read_env(run) for seed, run in runs.items()}
    per_seed = {seed: seed_rows(docs[seed], envs[seed]["tasks"]) for seed in runs}
    for seed, run in runs.items():  # run = seed<S>/eval; the steps live in seed<S>/adapters
        for (task, role), row in per_seed[seed].items():
            row["seconds"] = step_seconds(run.parent / "adapters" / task / role)
    summary = aggregate(per_seed, tasks)
    summary["seeds"] = sorted(runs)
    summary["notes"] = list(notes or [])
    summary["overall"] = {
        role: overall(summary, role) for role in summary["roles"] if role != "new"
    }
    summary["context"] = _context(out, runs, docs, envs)
    summary["stability"] = stability
    summary["per_seed"] = {
        str(seed): {f"{t}/{r}": row for (t, r), row in rows.items()}
        for seed, rows in per_seed.items()
    }
    reports = {seed: str((run / "report.html").relative_to(out)) for seed, run in runs.items()}
    png = front_plot(summary)
    if png is not None:
        atomic_write_bytes(out / PLOT, png)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.html", render_html(summary, reports, png))
    md = {s: p.replace(".html", ".md") for s, p in reports.items()}
    return atomic_write_text(
        out / "report.md", render_markdown(summary, md, PLOT if png is not None else None)
    )
