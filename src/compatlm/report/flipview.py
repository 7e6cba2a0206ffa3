"""The flip viewer of ``report.html``: every flipped instance of a comparison, filterable by
flip type, with what the model was asked (prompt, choices) beside both answers.

No scripts: the filter is a row of radio buttons and one CSS rule per flip type
(:data:`FILTER_CSS`), so it works offline, in any browser, and a page that holds hostile data
holds no code at all. Flip types come from data, so only the known ones
(:data:`~compatlm.report.fmt.FLIP_ORDER`) become CSS classes. Every value passes through
:func:`compatlm.report.html.e`; numbers are rounded (:func:`number`), absent fields are left
out rather than shown as ``null``, and a prompt or choice list the run did not record says so.
"""

from __future__ import annotations

import html
from typing import Any

from compatlm.report.fmt import FIELD_CAP, FLIP_ORDER, NAME_CAP, number, plain

TYPE_LABEL = {
    "negative": "negative",
    "positive": "positive",
    "inconsistency": "answer changed, wrong",
    "similarity_negative": "score fell",
    "similarity_positive": "score rose",
}
FILTER_CSS = "".join(
    f".fv input[value={t}]:checked~.fl .flip:not(.k-{t}){{display:none}}" for t in FLIP_ORDER
) + (
    ".fv input[value=noise]:checked~.fl .flip:not(.k-noise){display:none}"
    ".fv>label{margin-right:.8rem;font-size:.9rem}.fv>input{margin-right:.25rem}"
    ".flip .q{background:#f7f7f7;padding:.3rem .5rem;margin:.3rem 0;border-radius:3px}"
    ".flip ol{margin:.2rem 0 .4rem 0}.flip li.t{font-weight:600}"
    ".mark{display:inline-block;font-size:.75rem;border-radius:3px;padding:0 .3rem;"
    "margin-left:.3rem;background:#eee}.mark.t{background:#dcefe2}"
)


def e(value: Any, cap: int = NAME_CAP, *, multiline: bool = False) -> str:
    return html.escape(plain(value, cap, multiline=multiline), quote=True)


def _types(flip: dict[str, Any]) -> list[str]:
    kinds = flip.get("flip_types") or [flip.get("flip")]
    return [t for t in kinds if t in FLIP_ORDER]


def type_counts(flips: list[dict[str, Any]]) -> dict[str, int]:
    """How many flips carry each known type (a flip can have several), plus within-noise."""
    counts = {t: sum(t in _types(f) for f in flips) for t in FLIP_ORDER}
    counts = {t: n for t, n in counts.items() if n}
    noisy = sum(bool(f.get("within_noise")) for f in flips)
    if noisy:
        counts["noise"] = noisy
    return counts


def filter_bar(key: str, flips: list[dict[str, Any]]) -> str:
    """The radio buttons of one comparison (``key`` makes the group and ids unique)."""
    items = [("all", f"all ({len(flips)})")]
    for t, n in type_counts(flips).items():
        what = "within noise" if t == "noise" else TYPE_LABEL[t]
        items.append((t, f"{what} ({n})"))
    out = []
    for i, (value, text) in enumerate(items):
        rid = f"{key}-{value}"
        checked = " checked" if i == 0 else ""
        out.append(
            f'<input type="radio" name="{key}" id="{rid}" value="{value}"{checked}>'
            f'<label for="{rid}">{e(text)}</label>'
        )
    return "".join(out)


def _choices(flip: dict[str, Any], comp: dict[str, Any]) -> str:
    choices = flip.get("choices")
    ref, other = flip.get("reference") or {}, flip.get("other") or {}
    if not isinstance(choices, list):
        return (
            '<p class="muted">Choices: not recorded.</p>'
            if comp.get("kind") != "generation"
            else ""
        )
    items = []
    for i, text in enumerate(choices):
        marks = []
        target = ref.get("target")
        if target == i and not isinstance(target, bool):
            marks.append('<span class="mark t">target</span>')
        for role, side in ((comp["reference"], ref), (comp["other"], other)):
            if side.get("parsed") == i and not isinstance(side.get("parsed"), bool):
                marks.append(f'<span class="mark">{e(role)}</span>')
        cls = ' class="t"' if marks and marks[0].startswith('<span class="mark t"') else ""
        items.append(f"<li{cls}>{e(text, FIELD_CAP, multiline=True)}{''.join(marks)}</li>")
    return f'<p>Choices:</p><ol start="0">{"".join(items)}</ol>'


def _field_rows(flip: dict[str, Any], comp: dict[str, Any]) -> str:
    ref, other = flip.get("reference") or {}, flip.get("other") or {}
    mc = isinstance(flip.get("choices"), list)
    rows = []
    for key in ("output", "parsed", "target", "correct", "score", "margin"):
        if mc and key in ("output", "parsed", "target"):
            continue  # shown in the choice list
        a, b = ref.get(key), other.get(key)
        if a is None and b is None:
            continue  # e.g. no margins on a generation task: say nothing rather than "null"
        if key == "correct":
            cells = ["right" if v else "wrong" if v is not None else "—" for v in (a, b)]
            rows.append(f"<tr><th>{e(key)}</th><td>{cells[0]}</td><td>{cells[1]}</td></tr>")
            continue
        if key == "target" and a == b:
            rows.append(
                f'<tr><th>target</th><td colspan="2"><pre>{e(a, FIELD_CAP, multiline=True)}'
                "</pre></td></tr>"
            )
            continue
        shown = [
            "—" if v is None else e(number(v)) if key in ("score", "margin")
            else e(v, FIELD_CAP, multiline=True)
            for v in (a, b)
        ]  # fmt: skip
        rows.append(
            f"<tr><th>{e(key)}</th><td><pre>{shown[0]}</pre></td><td><pre>{shown[1]}</pre></td></tr>"
        )
    return "".join(rows)


def flip_details(flip: dict[str, Any], comp: dict[str, Any]) -> str:
    kinds = _types(flip)
    classes = " ".join(f"k-{t}" for t in kinds) + (" k-noise" if flip.get("within_noise") else "")
    main = flip.get("flip")
    tag = {"negative": "tag-negative", "positive": "tag-positive"}.get(main, "tag-other")
    label = TYPE_LABEL.get(main, main)
    summary = f'<span class="tag {tag}">{e(label)}</span>{e(flip.get("example_id"))}'
    if flip.get("slice") is not None:
        summary += f" · slice {e(flip['slice'])}"
    if flip.get("score_delta") is not None:
        summary += f" · ΔS {e(number(flip['score_delta']))}"
    if flip.get("within_noise"):
        summary += " · within noise"
    prompt = flip.get("prompt")
    question = (
        f'<div class="q"><pre>{e(prompt, FIELD_CAP, multiline=True)}</pre></div>'
        if isinstance(prompt, str)
        else '<p class="muted">Prompt: not recorded (this run has no examples/ file).</p>'
    )
    table = (
        f"<table><tr><th></th><th>{e(comp['reference'])}</th><th>{e(comp['other'])}</th></tr>"
        f"{_field_rows(flip, comp)}</table>"
    )
    return (
        f'<details class="flip {classes}"><summary>{summary}</summary>{question}'
        f"{_choices(flip, comp)}{table}</details>"
    )


def viewer(key: str, flips: list[dict[str, Any]], shown: list[dict[str, Any]], comp: dict) -> str:
    """The filter bar and the list of ``shown`` flips (``flips`` gives the counts)."""
    body = "".join(flip_details(f, comp) for f in shown)
    return f'<div class="fv">{filter_bar(key, flips)}<div class="fl">{body}</div></div>'
