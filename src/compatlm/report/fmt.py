"""Formatting shared by the Markdown and HTML reports: numbers, CIs, table rows, flip order.

Full snake_case metric names live in JSON; the abbreviations (NFR, PFR, BTC, BEC) appear only
in these human-facing tables, with a legend.
"""

from __future__ import annotations

from typing import Any

LEGEND = (
    ("ref → other", "the reference model (usually old) and the model compared with it"),
    ("NFR", "negative flip rate: ref right, other wrong, over all matched instances"),
    ("PFR", "positive flip rate: ref wrong, other right"),
    ("BTC", "backward trust compatibility: both right / ref right"),
    ("BEC", "backward error compatibility: both wrong / other wrong"),
    ("p", "McNemar exact p-value on the discordant (flipped) instances"),
    ("sNFR / sPFR", "similarity negative / positive flip rate: score fell / rose by > τ"),
    ("m_g / m_r", "mean gain / mean regression of the score over those flips"),
)
FLIP_ORDER = ("negative", "positive", "inconsistency", "similarity_negative", "similarity_positive")


def pct(metric: dict[str, Any] | None, *, ci: bool = True) -> str:
    """``2.50% [1.10, 4.00]``; ``n/a`` for an undefined metric."""
    if not metric or metric.get("value") is None:
        return "n/a"
    text = f"{100 * metric['value']:.2f}%"
    if ci and metric.get("ci"):
        lo, hi = metric["ci"]
        text += f" [{100 * lo:.2f}, {100 * hi:.2f}]"
    return text


def num(metric: dict[str, Any] | None, *, ci: bool = True, digits: int = 3) -> str:
    if not metric or metric.get("value") is None:
        return "n/a"
    text = f"{metric['value']:.{digits}f}"
    if ci and metric.get("ci"):
        lo, hi = metric["ci"]
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def pvalue(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("value") is None:
        return "n/a"
    v = metric["value"]
    return f"{v:.2e}" if v < 1e-3 else f"{v:.4f}"


def pair(comp: dict[str, Any]) -> str:
    return f"{comp['reference']} → {comp['other']}"


def headline_row(comp: dict[str, Any]) -> list[str]:
    m = comp["metrics"]
    return [
        comp["task"],
        pair(comp),
        str(comp["n"]),
        pct(m["accuracy_old"], ci=False),
        pct(m["accuracy_new"], ci=False),
        pct(m["negative_flip_rate"]),
        pct(m["positive_flip_rate"]),
        pct(m["backward_trust_compatibility"]),
        pct(m["backward_error_compatibility"]),
        pvalue(m["mcnemar_p_value"]),
    ]


HEADLINE_HEADER = [
    "Task",
    "Comparison",
    "N",
    "Acc ref",
    "Acc other",
    "NFR",
    "PFR",
    "BTC",
    "BEC",
    "p",
]


def similarity_row(comp: dict[str, Any]) -> list[str] | None:
    sim = comp.get("similarity") or {}
    m = sim.get("metrics")
    if not m:
        return None
    return [
        comp["task"],
        pair(comp),
        f"{sim['tolerance']:g}",
        pct(m["similarity_negative_flip_rate"]),
        pct(m["similarity_positive_flip_rate"]),
        num(m["mean_gain"], ci=False),
        num(m["mean_regression"], ci=False),
        num(m["mean_score_old"], ci=False),
        num(m["mean_score_new"], ci=False),
    ]


SIMILARITY_HEADER = ["Task", "Comparison", "τ", "sNFR", "sPFR", "m_g", "m_r", "S ref", "S other"]


def relative_row(comp: dict[str, Any]) -> list[str] | None:
    rel = comp.get("relative_to_baseline")
    if not rel:
        return None

    def signed(m: dict[str, Any], scale: float, unit: str) -> str:
        return "n/a" if m["value"] is None else f"{scale * m['value']:+.2f}{unit}"

    return [
        comp["task"],
        pair(comp),
        rel["baseline"],
        signed(rel["delta_negative_flip_rate"], 100, " pts"),
        signed(rel["negative_flip_rate_change_percent"], 1, "%"),
        signed(rel["delta_accuracy"], 100, " pts"),
    ]


RELATIVE_HEADER = ["Task", "Comparison", "Baseline", "ΔNFR", "Δ%NFR", "ΔAcc"]


def slice_rows(comp: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, s in comp.get("slices", {}).items():
        m = s["metrics"]
        rows.append(
            [
                name,
                str(s["n"]),
                pct(m["accuracy_old"], ci=False),
                pct(m["accuracy_new"], ci=False),
                pct(m["negative_flip_rate"]),
                pct(m["positive_flip_rate"]),
            ]
        )
    return rows


SLICE_HEADER = ["Slice", "N", "Acc ref", "Acc other", "NFR", "PFR"]


def ordered_flips(flips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Negative flips first (what users notice), then the rest, file order within a type."""
    rank = {t: i for i, t in enumerate(FLIP_ORDER)}
    return sorted(flips, key=lambda f: rank.get(f.get("flip"), len(rank)))


def show(value: Any) -> str:
    return "null" if value is None else str(value)
