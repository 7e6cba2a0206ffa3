"""The header block every report opens with: what was compared, how, when, whether the gate
passed, and one verdict sentence per task.

Built from files of the run directory only: metrics.json (``comparisons[].scoring`` names the
model and decision metric of each side, ``gate`` the gate's outcome, ``diagnostics`` the
candidates' training diagnostics, ``git_hash``) and env.json (the run's date, git hash, each
task's pass threshold; :func:`compatlm.report.context.read_env`). :func:`build_header` returns
text already escaped for one renderer (``esc`` escapes one data value; the words around the
data are fixed text), so the Markdown and HTML pages say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compatlm.report.context import file_date, is_control, short_date
from compatlm.report.fmt import name, pct
from compatlm.report.primary import decision_metric, is_similarity, pass_threshold, threshold_note
from compatlm.report.verdict import run_verdicts

GIT_CHARS = 12  # of a commit hash shown in a header


@dataclass
class Header:
    gate_state: str  # "pass" | "fail" | "none" | "unknown"
    gate_title: str
    gate_lines: list[str]
    facts: list[tuple[str, str]]
    verdicts: list[str]
    notes: list[str] = field(default_factory=list)
    models_header: list[str] = field(default_factory=list)
    models: list[list[str]] = field(default_factory=list)
    diagnostics_header: list[str] = field(default_factory=list)
    diagnostics: list[list[str]] = field(default_factory=list)


def gate_banner(gate: Any, esc: Callable[[str], str]) -> tuple[str, str, list[str]]:
    """(state, title, lines) of a metrics.json ``gate`` entry."""
    if not isinstance(gate, dict):
        return "unknown", "Gate: not recorded in metrics.json", []
    conds = [name(c, esc) for c in gate.get("conditions") or []]
    if gate.get("passed") is None:
        return "none", "No gate: no --fail-if condition was given", []
    listed = "; ".join(conds)
    if gate["passed"]:
        return "pass", f"Gate PASSED: no --fail-if condition holds ({listed})", []
    failures = gate.get("failures") or []
    held = len({f.get("condition") for f in failures})
    lines = [name(f.get("message"), esc) for f in failures]
    return (
        "fail",
        f"Gate FAILED: {held} of {len(conds)} --fail-if conditions hold ({listed})",
        lines,
    )


def _role_models(comps: list[dict[str, Any]]) -> dict[str, dict[str, str | None]]:
    """``{role: {task: model spec}}`` from each comparison's ``scoring``."""
    out: dict[str, dict[str, str | None]] = {}
    for c in comps:
        scoring = c.get("scoring") or {}
        for side in ("reference", "other"):
            role = c[side]
            out.setdefault(role, {}).setdefault(c["task"], (scoring.get(side) or {}).get("model"))
    return out


def _models_fact(comps: list[dict[str, Any]], diagnostics: dict, esc) -> str:
    singles, per_task, unknown = [], [], []
    for role, by_task in _role_models(comps).items():
        specs = set(by_task.values())
        ctl = any(is_control(role, (diagnostics.get(t) or {}).get(role)) for t in by_task)
        who = name(role, esc) + (" (same-budget control)" if ctl else "")
        if specs == {None}:
            unknown.append(who)
        elif len(specs) == 1:
            singles.append(f"{who}: {name(next(iter(specs)), esc)}")
        else:
            per_task.append(who)
    parts = singles
    if per_task:
        parts.append(
            f"one model per task for {', '.join(per_task)} (see Models and prediction files)"
        )
    if unknown:
        parts.append(f"{', '.join(unknown)}: model not recorded")
    return "; ".join(parts)


def _metric_fact(comps: list[dict[str, Any]], env_tasks: dict, esc) -> str:
    parts = []
    for task in dict.fromkeys(c["task"] for c in comps):
        first = next(c for c in comps if c["task"] == task)
        metrics = {
            (c.get("scoring") or {}).get(side, {}).get("metric")
            for c in comps
            if c["task"] == task
            for side in ("reference", "other")
        } - {None}
        metric = decision_metric(first, env_tasks)
        if len(metrics) > 1:
            text = " vs ".join(name(m, esc) for m in sorted(metrics)) + " (differ between sides)"
        else:
            text = name(metric or "not recorded", esc)
        if is_similarity(first, env_tasks):
            thr = pass_threshold(task, env_tasks)
            cut = "not recorded" if thr is None else f"{thr:g}"
            text += f" (similarity task; correct = score ≥ pass_threshold {cut})"
        parts.append(f"{name(task, esc)}: {text}")
    return "; ".join(parts)


def _date(data: Any) -> str:
    created = short_date(data.env.get("created"))
    if created:
        return f"{created} (run started, env.json)"
    written = short_date(file_date(data.run_dir))
    return f"{written} (metrics.json written)" if written else "not recorded"


def _git(doc: dict[str, Any], env: dict[str, Any], esc) -> str:
    hashes = [h for h in (env.get("git_hash"), doc.get("git_hash")) if isinstance(h, str)]
    version = name(doc.get("generated_by") or "compatlm (version not recorded)", esc)
    if not hashes:
        return f"{version}, git hash not recorded"
    return f"{version}, git {name(hashes[0][:GIT_CHARS], esc)}"


def _files_fact(comps: list[dict[str, Any]], esc) -> str | None:
    """Two-file compares name their inputs; run directories name predictions/ (table below)."""
    if len(comps) != 1:
        return None
    files = comps[0].get("files") or {}
    ref, other = files.get("reference"), files.get("other")
    if not ref or not other:
        return None
    return f"{name(ref, esc)} vs {name(other, esc)}"


def _diagnostics_rows(diagnostics: dict[str, Any], esc) -> list[list[str]]:
    rows = []
    for task, roles in diagnostics.items():
        for role, d in (roles or {}).items():
            if not isinstance(d, dict):
                continue
            share = d.get("old_share")
            tokens = d.get("loss_tokens")
            if isinstance(share, dict) and share.get("value") is not None:
                share_text = f"{pct(share, ci=False)} ({share['numerator']}/{share['denominator']})"
            elif isinstance(share, dict):
                share_text = f"n/a ({name(share.get('reason'), esc)})"
            else:
                share_text = "not recorded"
            rows.append(
                [
                    name(task, esc),
                    name(role, esc),
                    name(d.get("objective") or "not recorded", esc),
                    name(tokens if tokens is not None else "not recorded", esc),
                    share_text,
                    name(d.get("verdict") or d.get("reason") or "not recorded", esc),
                ]
            )
    return rows


DIAGNOSTICS_HEADER = [
    "Task",
    "Candidate",
    "Objective",
    "Loss tokens",
    "→ teacher_old",
    "Verdict of the training run",
]
MODELS_HEADER = ["Task", "Role", "Model", "Metric", "Predictions"]


def build_header(data: Any, esc: Callable[[str], str]) -> Header:
    doc = data.doc
    comps = doc["comparisons"]
    env_tasks = data.env.get("tasks") or {}
    diagnostics = doc.get("diagnostics") or {}
    state, title, lines = gate_banner(doc.get("gate"), esc)
    facts = [("Compared", _models_fact(comps, diagnostics, esc))]
    files = _files_fact(comps, esc)
    if files:
        facts.append(("Files", files))
    facts += [
        ("Decision metric", _metric_fact(comps, env_tasks, esc)),
        ("Code", _git(doc, data.env, esc)),
        ("Date", _date(data)),
    ]
    if data.env.get("note") and files is None:
        facts.append(("Note", name(data.env["note"], esc)))
    notes = []
    seen = set()
    for c in comps:
        if c["task"] not in seen and is_similarity(c, env_tasks):
            seen.add(c["task"])
            notes.append(threshold_note(c, env_tasks, esc))
    models = []
    for c in comps:
        scoring = c.get("scoring") or {}
        for side in ("reference", "other"):
            s = scoring.get(side) or {}
            row = [
                name(c["task"], esc),
                name(c[side], esc),
                name(s.get("model") or "not recorded", esc),
                name(s.get("metric") or "not recorded", esc),
                name((c.get("files") or {}).get(side) or "not recorded", esc),
            ]
            if row not in models:
                models.append(row)
    return Header(
        gate_state=state,
        gate_title=title,
        gate_lines=lines,
        facts=facts,
        verdicts=run_verdicts(doc, env_tasks, esc),
        notes=notes,
        models_header=MODELS_HEADER,
        models=models,
        diagnostics_header=DIAGNOSTICS_HEADER,
        diagnostics=_diagnostics_rows(diagnostics, esc),
    )
