"""``report.html``: one self-contained page (inline CSS, inline base64 PNG plots, no scripts).

Layout: the header block (:mod:`compatlm.report.header`: gate banner, one verdict per task,
what was compared, decision metric, code version, date), a table of contents with anchors, the
headline tables (classification tasks; similarity tasks in their own table with S, sNFR/sPFR
and m_g/m_r instead of accuracy and p), candidates vs the vanilla new model, the candidates'
training diagnostics, the per-task overview plot, then one section per comparison with its
flip viewer (:mod:`compatlm.report.flipview`).

Every value that comes from data (task and role names, ids, model outputs, warnings) passes
through :func:`e`: clipped, invisible characters shown as escapes
(:func:`compatlm.report.fmt.plain`), then ``html.escape``; only markup written here is emitted
raw. The flipped instances are capped per comparison; each output/target shows at most
:data:`~compatlm.report.fmt.FIELD_CAP` characters (the flips JSONL keeps the full text), so a
megabyte of model output cannot bloat the page.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from compatlm.report.flipview import FILTER_CSS, viewer
from compatlm.report.fmt import (
    FIELD_CAP,
    HEADLINE_HEADER,
    LEGEND,
    NAME_CAP,
    number,
    ordered_flips,
    pair,
    plain,
)
from compatlm.report.header import Header, build_header
from compatlm.report.plots import plot_key
from compatlm.report.primary import (
    RELATIVE_HEADER,
    SIMILARITY_HEADER,
    headline_tables,
    is_similarity,
    relative_row,
    slice_header,
    slice_rows,
)
from compatlm.report.run import FLIP_LIST_CAP, RunData

TOC_OPEN = 12  # comparisons up to which the contents list starts unfolded

CSS = (
    """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;
max-width:72rem;padding:0 1rem;color:#222;line-height:1.45}
h1,h2,h3{font-weight:600}h1{margin-bottom:.3rem}
h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ci{color:#777;font-size:.78rem;white-space:nowrap}
.quad td{width:9rem;height:3rem;text-align:center}.bc{background:#dcefe2}.nf{background:#f6d5d3}
.pf{background:#d7e3f4}.bw{background:#e8e8e8}
.warn{background:#fff5d6;border-left:4px solid #e0b000;padding:.3rem .6rem;margin:.3rem 0}
.gate{padding:.5rem .8rem;border-radius:4px;font-weight:600;margin:.6rem 0}
.gate-pass{background:#dcefe2;border-left:6px solid #3a9a5b}
.gate-fail{background:#f6d5d3;border-left:6px solid #c8413b}
.gate-none,.gate-unknown{background:#eee;border-left:6px solid #9a9a9a;font-weight:400}
.gate ul{margin:.3rem 0 0 0;font-weight:400}
.verdicts li{margin:.25rem 0}.facts th{width:9rem}.facts td{max-width:56rem;word-break:break-word}
.toc{columns:2;font-size:.9rem}.toc li{break-inside:avoid}
details{border:1px solid #e3e3e3;border-radius:4px;margin:.25rem 0;padding:.2rem .5rem}
summary{cursor:pointer}pre{white-space:pre-wrap;word-break:break-word;margin:0;
font-size:.85rem}.tag{display:inline-block;border-radius:3px;padding:0 .35rem;font-size:.8rem;
margin-right:.3rem}.tag-negative{background:#f6d5d3}.tag-positive{background:#d7e3f4}
.tag-other{background:#eee}img{max-width:100%}.muted{color:#666;font-size:.9rem}
"""
    + FILTER_CSS
)


_NUMERIC = re.compile(r"^[-+]?\d[\d.,]*(%| pts|%? \[| ±|$)")


def e(value: Any, cap: int = NAME_CAP, *, multiline: bool = False) -> str:
    """Escape any data value for HTML text and attributes (clipped to ``cap`` characters)."""
    return html.escape(plain(value, cap, multiline=multiline), quote=True)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def table(header: list[str], rows: list[list[str]], *, raw: bool = False, cls: str = "") -> str:
    """A table of plain-text cells (escaped here) or, with ``raw``, of cells already HTML."""

    def cell(v: str) -> str:
        return v if raw else e(v, FIELD_CAP)

    def td(v: str) -> str:
        # Numbers right-aligned in tabular figures, so a column reads at a glance; a rate's
        # CI goes on a second, smaller line.
        num = not raw and (_NUMERIC.match(v) is not None or v in ("—", "n/a"))
        if not num:
            return f"<td>{cell(v)}</td>"
        head, sep, ci = v.partition(" [")
        if sep and ci.endswith("]"):
            return f'<td class="num">{cell(head)}<br><span class="ci">[{cell(ci)}</span></td>'
        return f'<td class="num">{cell(v)}</td>'

    head = "".join(f"<th>{cell(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(td(v) for v in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{e(alt)}" src="data:image/png;base64,{data}">'


def header_html(h: Header, *, title: str, intro: str) -> list[str]:
    """The header block (shared with the demo page): banner, verdicts, facts."""
    parts = [f"<h1>{_esc(title)}</h1>", f'<p class="muted">{intro}</p>']
    gate = f'<div class="gate gate-{h.gate_state}">{h.gate_title}'
    if h.gate_lines:
        gate += "<ul>" + "".join(f"<li>{x}</li>" for x in h.gate_lines) + "</ul>"
    parts.append(gate + "</div>")
    if h.verdicts:
        parts.append('<ul class="verdicts">' + "".join(f"<li>{v}</li>" for v in h.verdicts))
        parts.append("</ul>")
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in h.facts)
    parts.append(f'<table class="facts">{rows}</table>')
    parts += [f'<p class="muted">{n}.</p>' for n in h.notes]
    if h.models:
        parts.append(
            f"<details><summary>Models and prediction files ({len(h.models)})</summary>"
            f"{table(h.models_header, h.models, raw=True)}</details>"
        )
    return parts


def render_html(data: RunData, plots: dict[str, bytes]) -> str:
    doc = data.doc
    comps = doc["comparisons"]
    env_tasks = data.env.get("tasks") or {}
    settings = doc.get("settings", {})
    conf = f"{100 * settings.get('confidence', 0.95):g}"
    sims = [is_similarity(c, env_tasks) for c in comps]
    h = build_header(data, _esc)
    intro = (
        f"Rates are percentages of matched instances with {e(conf)}% paired-bootstrap CIs "
        f"({e(settings.get('bootstrap'))} resamples, seed {e(settings.get('seed'))})."
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>compatlm report</title>",
        f"<style>{CSS}</style></head><body>",
        *header_html(h, title="compatlm report", intro=intro),
        _contents(comps, data.flips, sims, bool(h.diagnostics)),
        '<h2 id="headline">Headline</h2>',
    ]
    reference = settings.get("reference") or (comps[0]["reference"] if comps else None)
    rows = headline_tables(comps, sims, env_tasks, reference)
    if rows["main"]:
        parts.append(table(HEADLINE_HEADER, rows["main"]))
    if rows["main_sim"]:
        parts += [
            "<h3>Similarity tasks</h3>",
            '<p class="muted">S = mean similarity score; accuracy, quadrants and McNemar p are'
            " not shown for these tasks: correct only means score ≥ pass_threshold.</p>",
            table(SIMILARITY_HEADER, rows["main_sim"]),
        ]
    rel = [r for c, s in zip(comps, sims, strict=True) if (r := relative_row(c, comps, s))]
    if rel:
        parts += [
            '<h3 id="relative">Candidates vs the vanilla new model</h3>',
            '<p class="muted">ΔNFR = candidate NFR − baseline NFR (points; sNFR for similarity'
            " tasks); Δ%NFR relative to the baseline (negative = fewer negative flips); ΔAcc in"
            " points, ΔS in score units.</p>",
            table(RELATIVE_HEADER, rel),
        ]
    if rows["other"] or rows["other_sim"]:
        parts.append(
            "<details><summary>Each candidate compared with new directly (its flips against"
            f" new, McNemar p of candidate vs new; {len(rows['other']) + len(rows['other_sim'])}"
            " rows)</summary>"
        )
        if rows["other"]:
            parts.append(table(HEADLINE_HEADER, rows["other"]))
        if rows["other_sim"]:
            parts.append(table(SIMILARITY_HEADER, rows["other_sim"]))
        parts.append("</details>")
    if h.diagnostics:
        parts += [
            '<h3 id="diagnostics">What the candidates were trained on</h3>',
            '<p class="muted">Share of loss tokens the mask sent to teacher_old (the rest follow'
            " teacher_new, i.e. where the student started), from each training run's"
            " diagnostics.json.</p>",
            table(h.diagnostics_header, h.diagnostics, raw=True),
        ]
    parts.append(
        '<p class="muted">' + "; ".join(f"<b>{e(k)}</b> {e(v)}" for k, v in LEGEND) + "</p>"
    )
    if "plots/overview.png" in plots:
        parts.append(img(plots["plots/overview.png"], "flip rates per task"))
    for k, (comp, flips, sim) in enumerate(zip(comps, data.flips, sims, strict=True)):
        parts += _section(k, comp, flips, plots, sim)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _contents(
    comps: list[dict[str, Any]], flips: list[list[dict]], sims: list[bool], diagnostics: bool
) -> str:
    items = ['<li><a href="#headline">Headline</a></li>']
    if any(c.get("relative_to_baseline") for c in comps):
        items.append('<li><a href="#relative">Candidates vs new</a></li>')
    if diagnostics:
        items.append('<li><a href="#diagnostics">Training diagnostics</a></li>')
    for k, (comp, fl, sim) in enumerate(zip(comps, flips, sims, strict=True)):
        kind = "similarity_negative" if sim else "negative"
        neg = sum(kind in (f.get("flip_types") or [f.get("flip")]) for f in fl)
        what = "score fell" if sim else "negative"
        items.append(
            f'<li><a href="#c{k}">{e(comp["task"])}: {e(pair(comp), FIELD_CAP)}</a> '
            f'<span class="muted">({len(fl)} flips, {neg} {what})</span></li>'
        )
    unfold = " open" if len(comps) <= TOC_OPEN else ""
    return (
        f"<details{unfold}><summary>Contents ({len(comps)} comparisons)</summary>"
        f'<ul class="toc">{"".join(items)}</ul></details>'
    )


def _quadrants(comp: dict[str, Any]) -> str:
    c = comp["counts"]
    n = max(c["n"], 1)

    def td(cls: str, label: str, k: int) -> str:
        return f'<td class="{cls}">{e(label)}<br><b>{e(k)}</b> ({e(f"{100 * k / n:.1f}")}%)</td>'

    ref, other = e(comp["reference"]), e(comp["other"])
    return (
        f'<table class="quad"><tr><th></th><th>{other} right</th><th>{other} wrong</th></tr>'
        f"<tr><th>{ref} right</th>{td('bc', 'both right', c['both_correct'])}"
        f"{td('nf', 'negative flip', c['negative_flips'])}</tr>"
        f"<tr><th>{ref} wrong</th>{td('pf', 'positive flip', c['positive_flips'])}"
        f"{td('bw', 'both wrong', c['both_wrong'])}</tr></table>"
    )


def _outcomes(comp: dict[str, Any]) -> str:
    """A similarity task's three outcomes: the score fell, stayed within τ, rose."""
    sim = comp["similarity"]
    n = max(comp["n"], 1)
    fell = sim["counts"]["similarity_negative_flips"]
    rose = sim["counts"]["similarity_positive_flips"]
    tol = f"{sim['tolerance']:g}"
    cells = (
        ("nf", f"score fell by more than {tol}", fell),
        ("bw", f"within ±{tol}", comp["n"] - fell - rose),
        ("pf", f"score rose by more than {tol}", rose),
    )
    tds = "".join(
        f'<td class="{c}">{e(label)}<br><b>{e(k)}</b> ({e(f"{100 * k / n:.1f}")}%)</td>'
        for c, label, k in cells
    )
    return f'<table class="quad"><tr>{tds}</tr></table>'


def _section(
    k: int, comp: dict[str, Any], flips: list[dict[str, Any]], plots: dict[str, bytes], sim: bool
) -> list[str]:
    parts = [
        f'<h2 id="c{k}">{e(comp["task"])}: {e(pair(comp), FIELD_CAP)}</h2>',
        _outcomes(comp) if sim else _quadrants(comp),
    ]
    um = comp["unmatched"]
    if um["reference_only"]["count"] or um["other_only"]["count"]:
        parts.append(
            f'<p class="warn">Unmatched rows: {e(um["reference_only"]["count"])} only in '
            f"{e(comp['reference'])} (first: {e(', '.join(map(str, um['reference_only']['first_ids'])), FIELD_CAP)}), "
            f"{e(um['other_only']['count'])} only in {e(comp['other'])} "
            f"(first: {e(', '.join(map(str, um['other_only']['first_ids'])), FIELD_CAP)}).</p>"
        )
    noise = comp.get("noise") or {}
    if noise.get("noise_margin") is not None:
        floor = number(noise["noise_margin"])
        parts.append(
            f"<p>Noise floor {e(floor)}: {e(noise['flips_within_noise'])} flips"
            f" ({e(noise['negative_flips_within_noise'])} negative) have |margin| below it on"
            " both sides.</p>"
        )
    parts += [f'<p class="warn">{e(w, FIELD_CAP)}</p>' for w in comp.get("warnings", [])]
    if comp.get("slices"):
        rows = slice_rows(comp, sim)
        if rows:
            parts += ["<h3>Slices</h3>", table(slice_header(sim), rows)]
        if plot_key(comp, "slices") in plots:
            parts.append(img(plots[plot_key(comp, "slices")], "per-slice flip rates"))
    shown = ordered_flips(flips)[:FLIP_LIST_CAP]
    parts.append(f"<h3>Flipped instances ({e(len(flips))})</h3>")
    if len(shown) < len(flips):
        parts.append(
            f'<p class="muted">Showing the first {e(len(shown))} (negative flips first); all '
            f"{e(len(flips))} are in <code>{e(comp['files']['flips'], FIELD_CAP)}</code>.</p>"
        )
    if flips:
        parts.append(viewer(f"f{k}", flips, shown, comp))
    return parts
