"""One sentence per task, in words: how much the update regresses, and what each candidate and
same-budget control does to that. Used by the run report and the demo page alike.

The sentence uses the task's primary rate (:mod:`compatlm.report.primary`): NFR for multiple
choice and exact match, sNFR for similarity-scored generation. Rates are of *all* matched
instances, as in the tables, and the sentence says so; the relative change of a candidate is
against the vanilla update (``new``), as in MUSCLE's Tables 4–6. Data (task and role names) is
escaped with the renderer's ``esc``; the words around it are fixed text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compatlm.report.context import is_control
from compatlm.report.fmt import name
from compatlm.report.primary import decision_metric, find, flip_count, is_similarity, rates


def _same(text: str) -> str:
    return text


@dataclass(frozen=True)
class Level:
    """A rate (fraction) with its interval and where it comes from, e.g. ``14 of 160``."""

    value: float | None
    ci: tuple[float, float] | None = None
    ci_label: str = "95% CI"
    detail: str | None = None


def level_text(level: Level) -> str:
    return "n/a" if level.value is None else f"{100 * level.value:.2f}%"


def _paren(level: Level, *extra: str) -> str:
    bits = [e for e in extra if e]
    if level.detail:
        bits.append(level.detail)
    if level.ci is not None and level.ci[0] != level.ci[1]:  # a point interval says nothing
        lo, hi = level.ci
        bits.append(f"{level.ci_label} {100 * lo:.2f}–{100 * hi:.2f}%")
    return f" ({'; '.join(bits)})" if bits else ""


def _move(cand: Level, base: Level) -> tuple[str, str]:
    """(verb phrase, relative change) of a candidate's rate against the baseline's."""
    if cand.value is None or base.value is None:
        return "gives", ""
    rel = f"{100 * (cand.value - base.value) / base.value:+.1f}%" if base.value else ""
    if cand.value < base.value:
        return "cuts that to", rel
    if cand.value > base.value:
        return "raises that to", rel
    return "leaves it at", rel


def sentence(
    task: str,
    reference: str,
    baseline: str,
    base: Level,
    candidates: list[tuple[str, Level, bool]],
    *,
    similarity: bool,
    metric: str | None = None,
    tolerance: float = 0.0,
    esc: Callable[[str], str] = _same,
) -> str:
    """``task: new gets 8.75% of all instances wrong that old got right (NFR: ...);
    candidate muscle cuts that to 7.81% (-10.7% vs new ...); same-budget control ...``."""
    t, ref, b = name(task, esc), name(reference, esc), name(baseline, esc)
    if similarity:
        what = name(metric or "similarity", esc)
        text = (
            f"{t}: {b} lowers the {what} score of {level_text(base)} of all instances by more"
            f" than τ={tolerance:g} compared with {ref}{_paren(base, 'sNFR')}"
        )
    else:
        text = (
            f"{t}: {b} gets {level_text(base)} of all instances wrong that {ref} got right"
            f"{_paren(base, 'NFR')}"
        )
    for role, level, control in candidates:
        verb, rel = _move(level, base)
        who = "same-budget control" if control else "candidate"
        vs = f"{rel} vs {b}" if rel else ""
        text += f"; {who} {name(role, esc)} {verb} {level_text(level)}{_paren(level, vs)}"
    return text + "."


def run_verdicts(
    doc: dict[str, Any], env_tasks: dict[str, Any] | None, esc: Callable[[str], str] = _same
) -> list[str]:
    """One sentence per task of a metrics.json document: the baseline (``new``) and every
    other model compared with the reference; without a baseline, one per comparison."""
    comps = doc["comparisons"]
    settings = doc.get("settings") or {}
    reference = settings.get("reference") or (comps[0]["reference"] if comps else "old")
    baseline = settings.get("baseline")
    diagnostics = doc.get("diagnostics") or {}
    conf = f"{100 * settings.get('confidence', 0.95):g}% CI"
    out = []
    tasks = list(dict.fromkeys(c["task"] for c in comps))
    for task in tasks:
        mine = [c for c in comps if c["task"] == task and c["reference"] == reference]
        base = find(comps, task, reference, baseline) if baseline else None
        heads = [base] if base is not None else mine
        for head in heads:
            sim = is_similarity(head, env_tasks)
            cands = []
            if base is not None:
                for c in mine:
                    if c is base:
                        continue
                    ctl = is_control(c["other"], (diagnostics.get(task) or {}).get(c["other"]))
                    cands.append((c["other"], _level(c, sim, conf), ctl))
                # Candidates first, then the controls they must beat.
                cands.sort(key=lambda x: x[2])
            out.append(
                sentence(
                    task,
                    reference,
                    head["other"],
                    _level(head, sim, conf),
                    cands,
                    similarity=sim,
                    metric=decision_metric(head, env_tasks),
                    tolerance=(head.get("similarity") or {}).get("tolerance") or 0.0,
                    esc=esc,
                )
            )
    return out


def _level(comp: dict[str, Any], similarity: bool, ci_label: str) -> Level:
    rate = rates(comp, similarity)[0] or {}
    ci = rate.get("ci")
    count = flip_count(comp, similarity)
    detail = None if count is None else f"{count} of {comp['n']}"
    return Level(rate.get("value"), tuple(ci) if ci else None, ci_label, detail)
