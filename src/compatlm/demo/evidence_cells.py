"""Lookups shared by the demo's evidence document (:mod:`compatlm.demo.evidence`), its
bootstrap (:mod:`compatlm.demo.evidence_bootstrap`) and its stability section
(:mod:`compatlm.demo.stability`): one comparison of a ``metrics.json``, which tasks a statistic
over the per-seed cells can use, and the relative change of two rates from their counts. They
read them, so they live below all three (evidence re-exports them).
"""

from __future__ import annotations

from typing import Any

from compatlm.errors import CompatlmError


def comparison(doc: dict[str, Any], task: str, ref: str, other: str) -> dict[str, Any] | None:
    for comp in doc.get("comparisons", []):
        if (comp["task"], comp["reference"], comp["other"]) == (task, ref, other):
            return comp
    return None


def complete_tasks(cells: dict[str, list[dict[str, Any]]], roles: tuple[str, ...]) -> list[str]:
    """Tasks where every role in ``roles`` was evaluated in every seed."""
    return [t for t, cs in cells.items() if all(all(r in c["roles"] for r in roles) for c in cs)]


def usable_tasks(
    cells: dict[str, list[dict[str, Any]]], keys: tuple[str, ...]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Tasks whose Δ%NFR ``keys`` are defined in every seed, and why each other task is not
    (a role not evaluated, or no negative flips of the reference role: nothing to cut)."""
    tasks, excluded = [], []
    for task, cs in cells.items():
        why = None
        for c in cs:
            for key in keys:
                entry = c["delta_nfr_percent"].get(key)
                if entry is None or entry["value"] is None:
                    reason = "a role was not evaluated" if entry is None else entry["reason"]
                    why = f"{key} undefined in seed {c['seed']}: {reason}"
                    break
            if why:
                break
        if why:
            excluded.append({"task": task, "reason": why})
        else:
            tasks.append(task)
    return tasks, excluded


def percent_change(a: dict[str, Any], b: dict[str, Any]) -> tuple[float | None, str | None]:
    """100·(a − b)/b of two rates over the same instances, from their counts."""
    if a.get("value") is None or b.get("value") is None:
        return None, "undefined: a rate is undefined"
    if a.get("denominator") != b.get("denominator"):
        raise CompatlmError(
            f"rates over different instance counts ({a.get('denominator')} vs"
            f" {b.get('denominator')}): the comparisons do not share one test set"
        )
    if not b["numerator"]:
        return None, "undefined: the reference role has no negative flips"
    return 100.0 * (a["numerator"] - b["numerator"]) / b["numerator"], None
