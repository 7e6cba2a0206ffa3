"""``report.md``: the header block, the headline tables, one section per comparison, linked
plot files (the same content as ``report.html`` minus the flip viewer's filter).

Every data value passes through :func:`md` (or :func:`md_code` for a path): clipped and with
invisible characters shown (:func:`compatlm.report.fmt.plain`), then Markdown-escaped — the
metacharacters that make links, images, emphasis, code, tables, headings, math and mentions get
a backslash (``\\[x\\](url)`` stays text), and ``<``, ``>``, ``&`` become entities because most
renderers pass raw HTML through. Quotes are left alone: an entity such as ``&#x27;`` would show
verbatim wherever Markdown does not decode it. Newlines in data are shown as ``\\n``, so every
data value stays on its table row.
"""

from __future__ import annotations

import re
from typing import Any

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
from compatlm.report.run import MD_FLIP_CAP, RunData

MD_CELL_CAP = 80  # characters of an output/target in the Markdown flip table
# Backslash-escapable (CommonMark: any ASCII punctuation) characters that start markup:
# escapes, code, emphasis, attribute braces, links/images, headings, tables, strikethrough,
# math ($, GitHub) and @mentions.
_MD_META = re.compile(r"[\\`*_{}\[\]()#!|~$@]")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ENTITY_CHARS = re.compile(r"[&<>]")


def md_escape(text: str) -> str:
    """Markdown-escape already-plain text (see the module docstring)."""
    text = _ENTITY_CHARS.sub(lambda m: _ENTITIES[m.group()], text)
    return _MD_META.sub(lambda m: "\\" + m.group(), text)


def md(value: Any, cap: int = NAME_CAP) -> str:
    """One data value as Markdown text, safe inside a table cell."""
    return md_escape(plain(value, cap))


def md_code(value: Any, cap: int = NAME_CAP) -> str:
    """A data value (a path) as a code span: its fence is longer than any backtick run in it."""
    text = plain(value, cap)
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A pipe table of cells that are already Markdown (data escaped by the caller)."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def header_markdown(h: Header, *, title: str, intro: str) -> list[str]:
    """The header block (shared with the demo page): banner, verdicts, facts."""
    mark = {"pass": "✅", "fail": "❌"}.get(h.gate_state, "➖")
    out = [f"# {title}", "", intro, "", f"> {mark} **{h.gate_title}**"]
    out += [f"> - {x}" for x in h.gate_lines]
    out.append("")
    out += [f"- {v}" for v in h.verdicts]
    if h.verdicts:
        out.append("")
    out += [f"- **{k}**: {v}" for k, v in h.facts]
    out.append("")
    out += [f"{n}." for n in h.notes]
    if h.notes:
        out.append("")
    return out


def render_markdown(data: RunData, plots: dict[str, bytes]) -> str:
    doc = data.doc
    comps = doc["comparisons"]
    env_tasks = data.env.get("tasks") or {}
    settings = doc.get("settings", {})
    sims = [is_similarity(c, env_tasks) for c in comps]
    h = build_header(data, md_escape)
    intro = (
        f"Rates are percentages of matched instances with "
        f"{100 * settings.get('confidence', 0.95):g}% paired-bootstrap CIs "
        f"({md(settings.get('bootstrap'))} resamples, seed {md(settings.get('seed'))})."
    )
    out = header_markdown(h, title="compatlm report", intro=intro)
    out += ["## Headline", ""]
    reference = settings.get("reference") or (comps[0]["reference"] if comps else None)
    rows = headline_tables(comps, sims, env_tasks, reference, md_escape)
    if rows["main"]:
        out += [table(HEADLINE_HEADER, rows["main"]), ""]
    if rows["main_sim"]:
        out += [
            "### Similarity tasks",
            "",
            "S = mean similarity score; accuracy, quadrants and McNemar p are not shown for these"
            " tasks: correct only means score ≥ pass_threshold.",
            "",
            table(SIMILARITY_HEADER, rows["main_sim"]),
            "",
        ]
    rel = [
        r for c, s in zip(comps, sims, strict=True) if (r := relative_row(c, comps, s, md_escape))
    ]
    if rel:
        out += [
            "### Candidates vs the vanilla new model",
            "",
            "ΔNFR = candidate NFR − baseline NFR (points; sNFR for similarity tasks); Δ%NFR"
            " relative to the baseline (negative = fewer negative flips); ΔAcc in points, ΔS in"
            " score units.",
            "",
            table(RELATIVE_HEADER, rel),
            "",
        ]
    if rows["other"] or rows["other_sim"]:
        out += ["### Each candidate compared with new directly", ""]
        if rows["other"]:
            out += [table(HEADLINE_HEADER, rows["other"]), ""]
        if rows["other_sim"]:
            out += [table(SIMILARITY_HEADER, rows["other_sim"]), ""]
    if h.diagnostics:
        out += [
            "### What the candidates were trained on",
            "",
            "Share of loss tokens the mask sent to teacher_old, from each training run's"
            " diagnostics.json.",
            "",
            table(h.diagnostics_header, h.diagnostics),
            "",
        ]
    if h.models:
        out += ["### Models and prediction files", "", table(h.models_header, h.models), ""]
    out += ["Legend: " + "; ".join(f"**{k}** {v}" for k, v in LEGEND), ""]
    if "plots/overview.png" in plots:
        out += ["![flip rates per task](plots/overview.png)", ""]
    for comp, flips, sim in zip(comps, data.flips, sims, strict=True):
        out += _section(comp, flips, plots, sim)
    return "\n".join(out) + "\n"


def _section(
    comp: dict[str, Any], flips: list[dict[str, Any]], plots: dict[str, bytes], sim: bool
) -> list[str]:
    c = comp["counts"]
    ref, other = md(comp["reference"]), md(comp["other"])
    out = [f"## {md(comp['task'])}: {pair(comp, md_escape)}", ""]
    key = plot_key(comp, "quadrants")
    if key in plots:
        out += [f"![outcomes]({key})", ""]  # plot paths are file-safe names
    if sim:
        s = comp["similarity"]
        fell = s["counts"]["similarity_negative_flips"]
        rose = s["counts"]["similarity_positive_flips"]
        tol = f"{s['tolerance']:g}"
        out += [
            table(
                [f"score fell > {tol}", f"within ±{tol}", f"score rose > {tol}"],
                [[md(fell), md(comp["n"] - fell - rose), md(rose)]],
            ),
            "",
        ]
    else:
        out += [
            table(
                ["", f"{other} right", f"{other} wrong"],
                [
                    [f"{ref} right", md(c["both_correct"]), f"{md(c['negative_flips'])} (NF)"],
                    [f"{ref} wrong", f"{md(c['positive_flips'])} (PF)", md(c["both_wrong"])],
                ],
            ),
            "",
        ]
    um = comp["unmatched"]
    if um["reference_only"]["count"] or um["other_only"]["count"]:
        out += [
            f"Unmatched rows: {md(um['reference_only']['count'])} only in {ref} "
            f"(first: {md(', '.join(map(str, um['reference_only']['first_ids'])), FIELD_CAP)}), "
            f"{md(um['other_only']['count'])} only in {other} "
            f"(first: {md(', '.join(map(str, um['other_only']['first_ids'])), FIELD_CAP)}).",
            "",
        ]
    noise = comp.get("noise") or {}
    if noise.get("noise_margin") is not None:
        out += [
            f"Noise floor {md(number(noise['noise_margin']))}: {md(noise['flips_within_noise'])}"
            f" flips ({md(noise['negative_flips_within_noise'])} negative) have |margin| below it"
            " on both sides.",
            "",
        ]
    out += [f"- warning: {md(w, FIELD_CAP)}" for w in comp.get("warnings", [])]
    if comp.get("warnings"):
        out.append("")
    if comp.get("slices"):
        rows = slice_rows(comp, sim, md_escape)
        if rows:
            out += ["### Slices", "", table(slice_header(sim), rows), ""]
        if plot_key(comp, "slices") in plots:
            out += [f"![slices]({plot_key(comp, 'slices')})", ""]
    shown = ordered_flips(flips)[:MD_FLIP_CAP]
    out += [
        f"### Flipped instances ({len(flips)}; first {len(shown)} here, all in "
        f"{md_code(comp['files']['flips'])})",
        "",
    ]
    if shown:
        rows = [
            [
                md(f["example_id"], MD_CELL_CAP),
                md(f["flip"]),
                md(f.get("prompt") if f.get("prompt") is not None else "not recorded", MD_CELL_CAP),
                md(_target(f), MD_CELL_CAP),
                md(f["reference"]["output"], MD_CELL_CAP),
                md(f["other"]["output"], MD_CELL_CAP),
                _note(f),
            ]
            for f in shown
        ]
        header = ["id", "flip", "prompt", "target", f"{ref} output", f"{other} output", "note"]
        out += [table(header, rows), ""]
    return out


def _target(flip: dict[str, Any]) -> Any:
    """The target as text: a choice index becomes its choice when the choices are recorded."""
    target = flip["reference"].get("target")
    choices = flip.get("choices")
    is_index = isinstance(target, int) and not isinstance(target, bool)
    if is_index and isinstance(choices, list) and 0 <= target < len(choices):
        return f"{target}: {choices[target]}"
    return target


def _note(flip: dict[str, Any]) -> str:
    """The score change of a similarity flip and the noise label, rounded; else a dash."""
    notes = []
    if flip.get("score_delta") is not None:
        notes.append(f"ΔS {md(number(flip['score_delta']))}")
    if flip.get("within_noise"):
        notes.append("within noise")
    return ", ".join(notes) or "—"
