"""The tables of the demo's top page (:mod:`compatlm.report.demo` assembles the page).

Each builder turns ``summary.json`` into rows of formatted cells, escaped with the renderer's
``esc`` (names are data): classification tasks (accuracy, NFR, ΔNFR, Δ%NFR, PFR, p vs new,
cost), similarity tasks (S, sNFR, sPFR, m_g/m_r), what each compat candidate was trained on (its
teacher_old share and training verdicts), and, with two or more seeds, the retraining-noise
table of ``evidence.json``'s ``stability`` section (:mod:`compatlm.demo.stability`). Rates are in
percent with two decimals as in the seed reports, so the page and a seed's report agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compatlm.report.fmt import name

CLS_HEADER = [
    "Task",
    "Model",
    "Acc old",
    "Acc",
    "NFR",
    "ΔNFR",
    "Δ%NFR",
    "PFR",
    "p vs new",
    "Cost s",
]
SIM_HEADER = [
    "Task",
    "Model",
    "S old",
    "S",
    "sNFR",
    "ΔsNFR",
    "Δ%sNFR",
    "sPFR",
    "m_g",
    "m_r",
    "Cost s",
]
DIAG_HEADER = ["Task", "Candidate", "Objective", "→ teacher_old", "Verdict of the training run"]


def verbatim(text: str) -> str:
    """The cell text unchanged (the HTML table escapes cells itself)."""
    return text


def fmt(x: dict[str, Any] | float | None, scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± 95% half-width`` of a seed summary (or a plain number), scaled."""
    if isinstance(x, dict):
        if x.get("mean") is None:
            return "n/a"
        text = f"{scale * x['mean']:.{digits}f}"
        if x.get("ci"):
            text += f" ± {scale * (x['ci'][1] - x['mean']):.{digits}f}"
        return text
    return "n/a" if x is None else f"{scale * x:.{digits}f}"


def _delta(e: dict[str, Any], vanilla: bool) -> tuple[str, str]:
    if vanilla:
        return "—", "—"
    return fmt(e["delta_nfr"], 100.0), fmt(e["delta_nfr_percent"], 1.0, 1)


def table_rows(summary: dict[str, Any], esc: Callable[[str], str] = verbatim) -> list[list[str]]:
    """Classification tasks (multiple choice, exact match), percent, mean ± half-width."""
    rows = []
    for task, entry in summary["tasks"].items():
        for role, e in entry.items():
            if e.get("similarity"):
                continue
            p = e["p_vs_new"]["value"]
            vanilla = role == "new"
            rows.append(
                [
                    name(task, esc),
                    name(role, esc),
                    fmt(e["acc_old"]),
                    fmt(e["acc"]),
                    fmt(e["primary_nfr"]),
                    *_delta(e, vanilla),
                    fmt(e["primary_pfr"]),
                    "—" if vanilla or p is None else f"{p:.3g}",
                    fmt(e["seconds"]["mean"], 1.0, 0),
                ]
            )
    return rows


def similarity_rows(
    summary: dict[str, Any], esc: Callable[[str], str] = verbatim
) -> list[list[str]]:
    """Similarity tasks (MUSCLE's Table 6 shape): S and m_g/m_r as scores, rates in percent."""
    rows = []
    for task, entry in summary["tasks"].items():
        for role, e in entry.items():
            if not e.get("similarity"):
                continue
            rows.append(
                [
                    name(task, esc),
                    name(role, esc),
                    fmt(e["score_old"], 1.0, 3),
                    fmt(e["score"], 1.0, 3),
                    fmt(e["primary_nfr"]),
                    *_delta(e, role == "new"),
                    fmt(e["primary_pfr"]),
                    fmt(e["m_g"], 1.0, 3),
                    fmt(e["m_r"], 1.0, 3),
                    fmt(e["seconds"]["mean"], 1.0, 0),
                ]
            )
    return rows


def diagnostics_rows(
    summary: dict[str, Any], esc: Callable[[str], str] = verbatim
) -> list[list[str]]:
    rows = []
    for task, entry in summary["tasks"].items():
        for role, e in entry.items():
            if e.get("objective") is None and not e.get("verdicts"):
                continue
            share = (
                fmt(e.get("old_share")) + "%"
                if (e.get("old_share") or {}).get("mean") is not None
                else "n/a"
            )
            verdicts = " / ".join(e.get("verdicts") or []) or "not recorded"
            rows.append([name(task, esc), name(role, esc), name(e.get("objective"), esc), share,
                         name(verdicts, esc)])  # fmt: skip
    return rows


STAB_HEADER = [
    "Task",
    "Update NFR",
    "Old vs old NFR",
    "Ratio",
    "Update flips on stable",
    "Δ% vs new: stable / unstable",
]


def _pct(x: dict[str, Any]) -> str:
    """A seed-level summary already in percent: ``mean ± half-width``."""
    return fmt(x, 1.0, 1) + " %" if x.get("mean") is not None else "n/a"


def stability_rows(
    summary: dict[str, Any], esc: Callable[[str], str] = verbatim
) -> list[list[str]]:
    """Per task: the update's NFR beside retraining's (old adapters of two seeds), the share of
    the update's flips on instances every old seed knows, and each candidate's Δ% vs new on
    those (stable) and the other (unstable) instances."""
    rows = []
    for task, t in ((summary.get("stability") or {}).get("tasks") or {}).items():
        lvl = t["seed_level"]
        parts = [
            f"{name(role, esc)} {_pct(v['stable']['delta_vs_new_percent'])} /"
            f" {_pct(v['unstable']['delta_vs_new_percent'])}"
            for role, v in lvl["roles"].items()
        ]
        rows.append(
            [
                name(task, esc),
                fmt(lvl["update"], 1.0),
                fmt(lvl["retrain_old"], 1.0),
                fmt(lvl["retrain_old_over_update"], 1.0),
                fmt(lvl["stable_share_of_update_flips"], 100.0, 0) + " %",
                "; ".join(parts) or "—",
            ]
        )
    return rows
