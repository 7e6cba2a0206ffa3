"""The demo's top page (``report.md`` / ``report.html`` of ``compatlm demo``): a pure function of
``summary.json`` (:mod:`compatlm.demo.summary` builds it from the seeds' run directories).

It opens with the header every report has (:func:`compatlm.report.html.header_html`): the gate
banner, one verdict sentence per task, what was compared, the decision metric per task, code
version and date. Then the tables in the paper's Tables 4–6 shape — classification tasks with
accuracy, NFR, ΔNFR, Δ%NFR, PFR and p vs new; similarity tasks with S, sNFR, sPFR and
m_g/m_r and no accuracy or p (:mod:`compatlm.report.primary`) — the share of loss tokens each
compat candidate sent to teacher_old, with two or more seeds the retraining-noise table
(:mod:`compatlm.demo.stability`), and the NFR-vs-accuracy plot per task. The tables' rows are
built in :mod:`compatlm.report.demo_tables`. Numbers are
formatted as in the seed reports (rates in percent with two decimals, S with three), so the
page and a seed's report agree. Role and task names are data and escaped like everywhere else.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from compatlm.report.context import is_control, short_date
from compatlm.report.demo_tables import (
    CLS_HEADER,
    DIAG_HEADER,
    SIM_HEADER,
    STAB_HEADER,
    diagnostics_rows,
    fmt,
    similarity_rows,
    stability_rows,
    table_rows,
    verbatim,
)
from compatlm.report.fmt import LEGEND, name
from compatlm.report.header import GIT_CHARS, Header, gate_banner
from compatlm.report.verdict import Level, sentence

TITLE = "compatlm demo: a base-model update and what MUSCLE does about it"


def _level(e: dict[str, Any], seeds: int) -> Level:
    m = e["primary_nfr"]
    ci = tuple(m["ci"]) if m.get("ci") else None
    detail = f"mean of {seeds} seeds" if seeds > 1 else "1 seed"
    return Level(m.get("mean"), ci, "95% t-interval", detail)


def verdicts(summary: dict[str, Any], esc: Callable[[str], str] = verbatim) -> list[str]:
    out = []
    for task, entry in summary["tasks"].items():
        base = entry.get("new")
        if base is None:
            continue
        cands = [
            (role, _level(e, e["seeds"]), is_control(role, {"objective": e.get("objective")}))
            for role, e in entry.items()
            if role != "new"
        ]
        cands.sort(key=lambda c: c[2])
        out.append(
            sentence(
                task,
                "old",
                "new",
                _level(base, base["seeds"]),
                cands,
                similarity=bool(base.get("similarity")),
                metric=base.get("metric"),
                tolerance=base.get("tolerance") or 0.0,
                esc=esc,
            )
        )
    return out


def _facts(summary: dict[str, Any], esc: Callable[[str], str]) -> list[tuple[str, str]]:
    ctx = summary.get("context") or {}
    family = ctx.get("family") or {}
    roles = [r for r in summary["roles"] if r not in ("old", "new")]
    objectives = {
        r: next((e[r].get("objective") for e in summary["tasks"].values() if r in e), None)
        for r in roles
    }
    controls = [r for r in roles if is_control(r, {"objective": objectives[r]})]
    cands = [r for r in roles if r not in controls]
    old, new = family.get("old"), family.get("new")
    compared = (
        f"old: {name(old or 'not recorded', esc)} + its task adapter per task; new:"
        f" {name(new or 'not recorded', esc)} + its task adapter per task; candidates:"
        f" {', '.join(name(r, esc) for r in cands) or 'none'}; same-budget controls:"
        f" {', '.join(name(r, esc) for r in controls) or 'none'}"
    )
    metrics = []
    for task, entry in summary["tasks"].items():
        e = entry.get("new") or next(iter(entry.values()), {})
        text = f"{name(task, esc)}: {name(e.get('metric') or 'not recorded', esc)}"
        if e.get("similarity"):
            thr = (ctx.get("pass_threshold") or {}).get(task)
            cut = "not recorded" if thr is None else f"{thr:g}"
            text += f" (similarity task; correct = score ≥ pass_threshold {cut})"
        metrics.append(text)
    git = ctx.get("git_hash")
    code = name(ctx.get("generated_by") or "compatlm", esc) + (
        f", git {name(git[:GIT_CHARS], esc)}" if isinstance(git, str) else ", git hash not recorded"
    )
    seeds = ", ".join(str(s) for s in summary["seeds"])
    build = family.get("build") or {}
    return [
        ("Compared", compared),
        ("Decision metric", "; ".join(metrics)),
        ("Seeds", f"{name(seeds, esc)} (each model compared with old on the task's test split)"),
        ("Family build", name(_build_text(build), esc)),
        ("Code", code),
        ("Date", name(short_date(ctx.get("created")) or "not recorded", esc)),
    ]


def _notes(summary: dict[str, Any], esc: Callable[[str], str]) -> list[str]:
    notes = []
    thresholds = (summary.get("context") or {}).get("pass_threshold") or {}
    for task, entry in summary["tasks"].items():
        e = entry.get("new")
        if not e or not e.get("similarity"):
            continue
        thr = thresholds.get(task)
        cut = "pass_threshold (not recorded)" if thr is None else f"{thr:g} (pass_threshold)"
        notes.append(
            f"{name(task, esc)}: correct = {name(e.get('metric'), esc)} ≥ {cut}; old passes"
            f" {fmt(e['acc_old'])}% and new {fmt(e['acc'])}% of it; accuracy, quadrants and p"
            " are not shown for this task (correct only means passing that cut-off)"
        )
    return notes


def demo_header(summary: dict[str, Any], esc: Callable[[str], str]) -> Header:
    gates = [g for g in ((summary.get("context") or {}).get("gates") or {}).values() if g]
    checked = [g for g in gates if g.get("conditions")]
    if checked:
        failed = next((g for g in checked if not g.get("passed")), None)
        state, title, lines = gate_banner(failed or checked[0], esc)
    else:
        state, title, lines = "none", "No gate: the demo checks no --fail-if condition", []
    return Header(
        gate_state=state,
        gate_title=title,
        gate_lines=lines,
        facts=_facts(summary, esc),
        verdicts=verdicts(summary, esc),
        notes=_notes(summary, esc),
        diagnostics_header=DIAG_HEADER,
        diagnostics=diagnostics_rows(summary, esc),
    )


INTRO = (
    "All rates in percent, mean ± 95% t-interval half-width over seeds; every model is compared"
    " with old on the task's test split. ΔNFR and Δ%NFR are relative to the vanilla update"
    " (new) in the same seeds (a candidate missing from a seed is compared over the seeds it"
    " has); p compares the model with new: McNemar's exact test over instances with one seed,"
    " a paired t-test of NFR over seeds with several (never a mean of per-seed p-values)."
    " Cost = seconds to train or build the model's adapter (for new: its task adapter), from"
    " done.json."
)


STABILITY_TEXT = (
    "Test split, percent, mean ± 95% t-interval half-width over seeds. Old vs old = negative"
    " flips between old adapters of two seeds (retraining alone, no base update; the seeds"
    " share adapters, so that interval is somewhat optimistic). Stable = instances the old"
    " adapter of every seed answers correctly: a flip there is a regression of the version, the"
    " kind a compatibility method is meant to undo; the rest are flips retraining makes anyway."
)


def render_markdown(summary: dict[str, Any], seed_reports: dict[int, str], plot: str | None) -> str:
    from compatlm.report.markdown import header_markdown, md_escape, table

    h = demo_header(summary, md_escape)
    lines = header_markdown(h, title=TITLE, intro=INTRO)
    rows = table_rows(summary, md_escape)
    if rows:
        lines += ["## Classification tasks", "", table(CLS_HEADER, rows), ""]
    sim = similarity_rows(summary, md_escape)
    if sim:
        lines += ["## Similarity tasks", "", "S = mean similarity score (0–1); sNFR/sPFR in percent.",
                  "", table(SIM_HEADER, sim), ""]  # fmt: skip
    if h.diagnostics:
        lines += ["## What the candidates were trained on", "",
                  table(DIAG_HEADER, h.diagnostics), ""]  # fmt: skip
    stab = stability_rows(summary, md_escape)
    if stab:
        lines += ["## Retraining noise and stable flips", "", STABILITY_TEXT, ""]
        lines += [table(STAB_HEADER, stab), ""]
    if plot:
        lines += [f"![NFR vs accuracy per task]({plot})", ""]
    lines += ["Legend: " + "; ".join(f"**{k}** {v}" for k, v in LEGEND), ""]
    lines += [f"> {md_escape(n)}" for n in summary.get("notes", [])]
    lines += ["", "Per-seed reports (flips, slices, every flipped instance):", ""]
    lines += [f"- seed {s}: [{md_escape(p)}]({p})" for s, p in seed_reports.items()]
    return "\n".join(lines) + "\n"


def render_html(summary: dict[str, Any], seed_reports: dict[int, str], png: bytes | None) -> str:
    from compatlm.report.html import CSS, e, header_html, img, table

    esc = html.escape
    h = demo_header(summary, esc)
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>compatlm demo</title><style>{CSS}</style></head><body>",
        *header_html(h, title=TITLE, intro=esc(INTRO)),
    ]
    rows = table_rows(summary)
    if rows:
        parts += ["<h2>Classification tasks</h2>", table(CLS_HEADER, rows)]
    sim = similarity_rows(summary)
    if sim:
        parts += [
            "<h2>Similarity tasks</h2>",
            '<p class="muted">S = mean similarity score (0–1); sNFR/sPFR in percent.</p>',
            table(SIM_HEADER, sim),
        ]
    if h.diagnostics:
        parts += ["<h2>What the candidates were trained on</h2>",
                  table(DIAG_HEADER, h.diagnostics, raw=True)]  # fmt: skip
    stab = stability_rows(summary)  # table() escapes the cells
    if stab:
        parts += ["<h2>Retraining noise and stable flips</h2>"]
        parts += [f'<p class="muted">{esc(STABILITY_TEXT)}</p>', table(STAB_HEADER, stab)]
    if png is not None:
        parts += ["<h2>NFR vs accuracy per task</h2>", img(png, "NFR vs accuracy per task")]
    parts.append(
        '<p class="muted">' + "; ".join(f"<b>{e(k)}</b> {e(v)}" for k, v in LEGEND) + "</p>"
    )
    parts += [f'<p class="warn">{e(n)}</p>' for n in summary.get("notes", [])]
    links = "".join(f'<li><a href="{e(p)}">seed {e(s)}</a></li>' for s, p in seed_reports.items())
    parts += [f"<h2>Per-seed reports</h2><ul>{links}</ul>", "</body></html>"]
    return "\n".join(parts) + "\n"


def front_plot(summary: dict[str, Any]) -> bytes | None:
    """NFR (x) vs accuracy or S (y) per task for every model, or None without data."""
    from compatlm.report.plots import front_panels_png

    panels = []
    for task, entry in summary["tasks"].items():
        points = []
        for role, e in entry.items():
            sim = bool(e.get("similarity"))
            x, y = e["primary_nfr"], e["score"] if sim else e["acc"]
            scale = 1.0 if sim else 100.0
            kind = "new" if role == "new" else "control" if is_control(
                role, {"objective": e.get("objective")}) else "candidate"  # fmt: skip
            points.append((role, _pt(x, 100.0)[0], _pt(x, 100.0)[1], _pt(y, scale)[0],
                           _pt(y, scale)[1], kind))  # fmt: skip
        if not any(p[1] is not None and p[3] is not None for p in points):
            continue
        sim = bool((entry.get("new") or {}).get("similarity"))
        panels.append({
            "title": task,
            "xlabel": "sNFR vs old (%)" if sim else "NFR vs old (%)",
            "ylabel": "mean score S" if sim else "accuracy (%)",
            "points": points,
        })  # fmt: skip
    return front_panels_png(panels) if panels else None


def _pt(m: dict[str, Any], scale: float) -> tuple[float | None, float | None]:
    if not m or m.get("mean") is None:
        return None, None
    half = (m["ci"][1] - m["mean"]) * scale if m.get("ci") else None
    return m["mean"] * scale, half


def _build_text(build: dict[str, Any]) -> str:
    """One line on whether the family's bases are the documented reference build."""
    cap = (build.get("build_platform") or {}).get("cpu_capability") or "not recorded"
    status = build.get("status")
    if status == "matches":
        return f"identical to reference build {build.get('reference')} (CPU kernels {cap})"
    if status == "differs":
        return (
            f"differs from reference build {build.get('reference')} (CPU kernels here: {cap}):"
            " accuracies and old/new gaps can differ from the documented ones"
        )
    if status == "no_reference":
        return f"no reference build recorded for this recipe (CPU kernels {cap})"
    return "not recorded"
