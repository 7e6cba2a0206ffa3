"""Which numbers describe a comparison: correctness flips, or similarity flips.

For multiple choice and exact match, ``correct`` is the answer and the flip rates (NFR, PFR,
BTC, McNemar p) are the story. For a generation task scored by a similarity (ROUGE-1 ...),
``correct`` only means ``score >= pass_threshold`` — a cut-off every output may pass, which
makes accuracy 100%, every instance "both right" and p undefined. There the primary numbers
are MUSCLE's similarity metrics (§3): the mean score S, sNFR / sPFR (the score fell / rose by
more than the tolerance τ) and m_g / m_r (mean gain / regression over those flips); the
correctness columns stay in metrics.json and are not shown as if they meant something.

Everything here is a pure function of metrics.json entries; the row builders take ``esc``
like those of :mod:`compatlm.report.fmt`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compatlm.report.fmt import name, num, pair, pct

NOT_SIMILARITY = ("exact_match",)  # generation metrics whose score is correctness itself


def _same(text: str) -> str:
    return text


def decision_metric(comp: dict[str, Any], env_tasks: dict[str, Any] | None = None) -> str | None:
    """The metric that decided ``correct`` (the reference's, else the other's, else env.json's)."""
    scoring = comp.get("scoring") or {}
    for side in ("reference", "other"):
        metric = (scoring.get(side) or {}).get("metric")
        if isinstance(metric, str):
            return metric
    task = (env_tasks or {}).get(comp.get("task")) or {}
    return task.get("metric") if isinstance(task.get("metric"), str) else None


def is_similarity(comp: dict[str, Any], env_tasks: dict[str, Any] | None = None) -> bool:
    """A generation comparison scored by a similarity metric, with scores on both sides."""
    if comp.get("kind") != "generation" or not (comp.get("similarity") or {}).get("metrics"):
        return False
    metric = decision_metric(comp, env_tasks)
    return metric is not None and metric not in NOT_SIMILARITY


def has_similarity_rows(comp: dict[str, Any], env_tasks: dict[str, Any] | None = None) -> bool:
    """Similarity metrics worth a table row: measured, and not a copy of correctness (exact
    match scores are 1/0 = correct). Unlike :func:`is_similarity`, an unknown metric counts."""
    if not (comp.get("similarity") or {}).get("metrics"):
        return False
    return decision_metric(comp, env_tasks) not in NOT_SIMILARITY


def rates(comp: dict[str, Any], similarity: bool) -> tuple[dict | None, dict | None]:
    """(negative, positive) flip-rate metric objects of the comparison's primary kind."""
    if similarity:
        m = comp["similarity"]["metrics"]
        return m["similarity_negative_flip_rate"], m["similarity_positive_flip_rate"]
    m = comp["metrics"]
    return m["negative_flip_rate"], m["positive_flip_rate"]


def flip_count(comp: dict[str, Any], similarity: bool) -> int | None:
    if similarity:
        return (comp["similarity"].get("counts") or {}).get("similarity_negative_flips")
    return comp["counts"].get("negative_flips")


def pass_threshold(task: str, env_tasks: dict[str, Any] | None) -> float | None:
    value = ((env_tasks or {}).get(task) or {}).get("pass_threshold")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def threshold_note(
    comp: dict[str, Any], env_tasks: dict[str, Any] | None, esc: Callable[[str], str] = _same
) -> str:
    """What ``correct`` means on a similarity task, with the share of outputs passing."""
    metric = name(decision_metric(comp, env_tasks) or "the similarity", esc)
    thr = pass_threshold(comp["task"], env_tasks)
    m = comp["metrics"]
    ref, other = name(comp["reference"], esc), name(comp["other"], esc)
    passing = (
        f"{pct(m['accuracy_old'], ci=False)} of {ref}'s and {pct(m['accuracy_new'], ci=False)}"
        f" of {other}'s outputs pass it"
    )
    cut = "pass_threshold, value not recorded" if thr is None else f"{thr:g} (pass_threshold)"
    return f"{name(comp['task'], esc)}: correct = {metric} ≥ {cut}; {passing}"


def similarity_row(comp: dict[str, Any], esc: Callable[[str], str] = _same) -> list[str]:
    m = comp["similarity"]["metrics"]
    return [
        name(comp["task"], esc),
        pair(comp, esc),
        name(comp["n"], esc),
        num(m["mean_score_old"], ci=False),
        num(m["mean_score_new"], ci=False),
        pct(m["similarity_negative_flip_rate"]),
        pct(m["similarity_positive_flip_rate"]),
        num(m["mean_gain"], ci=False),
        num(m["mean_regression"], ci=False),
        f"{comp['similarity']['tolerance']:g}",
    ]


SIMILARITY_HEADER = [
    "Task",
    "Comparison",
    "N",
    "S ref",
    "S other",
    "sNFR",
    "sPFR",
    "m_g",
    "m_r",
    "τ",
]


def find(comps: list[dict[str, Any]], task: str, reference: str, other: str) -> dict | None:
    return next(
        (c for c in comps if (c["task"], c["reference"], c["other"]) == (task, reference, other)),
        None,
    )


def change(cand: dict | None, base: dict | None) -> tuple[float | None, float | None]:
    """(Δ in rate points, Δ% relative to the baseline) of two rate metric objects."""
    a = None if not cand else cand.get("value")
    b = None if not base else base.get("value")
    if a is None or b is None:
        return None, None
    return a - b, (100.0 * (a - b) / b if b else None)


def signed(value: float | None, unit: str, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{scale * value:+.2f}{unit}"


def relative_row(
    comp: dict[str, Any],
    comps: list[dict[str, Any]],
    similarity: bool,
    esc: Callable[[str], str] = _same,
) -> list[str] | None:
    """Candidate vs the baseline (new) on the comparison's primary rate (and accuracy or S)."""
    rel = comp.get("relative_to_baseline")
    if not rel:
        return None
    base = find(comps, comp["task"], comp["reference"], rel["baseline"])
    if base is None:
        return None
    d, dp = change(rates(comp, similarity)[0], rates(base, similarity)[0])
    if similarity:
        key, metrics = (
            "mean_score_new",
            (comp["similarity"]["metrics"], base["similarity"]["metrics"]),
        )
        level = change(metrics[0][key], metrics[1][key])[0]
        level_text = "n/a" if level is None else f"{level:+.3f}"
    else:
        level_text = signed(rel["delta_accuracy"]["value"], " pts", 100)
    return [
        name(comp["task"], esc),
        pair(comp, esc),
        name(rel["baseline"], esc),
        signed(d, " pts", 100),
        signed(dp, "%"),
        level_text,
    ]


RELATIVE_HEADER = ["Task", "Comparison", "Baseline", "ΔNFR", "Δ%NFR", "ΔAcc / ΔS"]


def slice_rows(
    comp: dict[str, Any], similarity: bool, esc: Callable[[str], str] = _same
) -> list[list[str]]:
    rows = []
    for slice_name, s in comp.get("slices", {}).items():
        if similarity:
            m = (s.get("similarity") or {}).get("metrics") or {}
            if not m:
                continue
            rows.append(
                [
                    name(slice_name, esc),
                    name(s["n"], esc),
                    num(m["mean_score_old"], ci=False),
                    num(m["mean_score_new"], ci=False),
                    pct(m["similarity_negative_flip_rate"]),
                    pct(m["similarity_positive_flip_rate"]),
                ]
            )
            continue
        m = s["metrics"]
        rows.append(
            [
                name(slice_name, esc),
                name(s["n"], esc),
                pct(m["accuracy_old"], ci=False),
                pct(m["accuracy_new"], ci=False),
                pct(m["negative_flip_rate"]),
                pct(m["positive_flip_rate"]),
            ]
        )
    return rows


def slice_header(similarity: bool) -> list[str]:
    if similarity:
        return ["Slice", "N", "S ref", "S other", "sNFR", "sPFR"]
    return ["Slice", "N", "Acc ref", "Acc other", "NFR", "PFR"]


def slice_rates(s: dict[str, Any], similarity: bool) -> tuple[dict | None, dict | None]:
    """(negative, positive) primary rates of one slice entry (None when not measured)."""
    if similarity:
        m = (s.get("similarity") or {}).get("metrics")
        if not m:
            return None, None
        return m["similarity_negative_flip_rate"], m["similarity_positive_flip_rate"]
    return s["metrics"]["negative_flip_rate"], s["metrics"]["positive_flip_rate"]


def headline_tables(
    comps: list[dict[str, Any]],
    sims: list[bool],
    env_tasks: dict[str, Any] | None,
    reference: str | None,
    esc: Callable[[str], str] = _same,
) -> dict[str, list[list[str]]]:
    """Rows of the headline tables: ``main``/``main_sim`` for comparisons with the reference
    (old), ``other``/``other_sim`` for the rest (candidate vs new, a paired test of its own)."""
    from compatlm.report.fmt import headline_row

    out: dict[str, list[list[str]]] = {"main": [], "main_sim": [], "other": [], "other_sim": []}
    for comp, sim in zip(comps, sims, strict=True):
        where = "main" if reference is None or comp["reference"] == reference else "other"
        if not sim:
            out[where].append(headline_row(comp, esc))
        if has_similarity_rows(comp, env_tasks):
            out[f"{where}_sim"].append(similarity_row(comp, esc))
    return out
