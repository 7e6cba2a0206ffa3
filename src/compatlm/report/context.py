"""What a report states about a run besides its numbers: where they come from.

Two sources, both files:

- :func:`read_env` — the run's ``env.json`` (when the run was made, the git hash, each task's
  metric and pass threshold). It is read only if it resolves inside the run directory, like
  every file a report reads, and a missing or unreadable one leaves those header fields "not
  recorded" instead of failing the report: the numbers do not depend on it.
- :func:`collect_diagnostics` — called by ``compare`` (not by the report, which reads only the
  run directory): for each candidate, the ``diagnostics.json`` of the run that trained its
  adapter (the spec ``BASE+RUN/adapter`` names it), summarised into metrics.json so the report
  can show how many loss tokens followed teacher_old and the training run's verdict.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compatlm.errors import CompatlmError

log = logging.getLogger(__name__)

CONTROL_OBJECTIVES = ("continue_ce", "kd_new")  # same-budget controls (methods/controls.py)


def _inside(run: Path, name: str) -> Path | None:
    root = run.resolve()
    try:
        target = (root / name).resolve()
    except (OSError, ValueError):
        return None
    return target if target.is_relative_to(root) and target.is_file() else None


def read_env(run: Path) -> dict[str, Any]:
    """``{"created", "git_hash", "tasks": {name: describe()}, "note"}`` from ``env.json``;
    fields are None (with ``note`` saying why) when the file is missing or unreadable."""
    out: dict[str, Any] = {"created": None, "git_hash": None, "tasks": {}, "note": None}
    path = _inside(run, "env.json")
    if path is None:
        out["note"] = "no env.json in the run directory"
        return out
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        out["note"] = f"env.json unreadable ({type(err).__name__})"
        return out
    if not isinstance(env, dict):
        out["note"] = "env.json is not a JSON object"
        return out
    out["created"] = env.get("created") if isinstance(env.get("created"), str) else None
    out["git_hash"] = env.get("git_hash") if isinstance(env.get("git_hash"), str) else None
    tasks = env.get("tasks") if isinstance(env.get("tasks"), list) else []
    out["tasks"] = {str(t["name"]): t for t in tasks if isinstance(t, dict) and "name" in t}
    return out


def file_date(run: Path, name: str = "metrics.json") -> str | None:
    """When ``name`` was last written (UTC), for runs without an ``env.json`` date."""
    path = _inside(run, name)
    if path is None:
        return None
    stamp = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    return stamp.isoformat(timespec="seconds")


def short_date(stamp: str | None) -> str | None:
    """``2025-06-01 14:03 UTC`` of an ISO timestamp (None stays None; junk is shown as is)."""
    if stamp is None:
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _summary(diag: dict[str, Any], source: Path) -> dict[str, Any]:
    total = diag.get("total") if isinstance(diag.get("total"), dict) else {}
    return {
        "objective": diag.get("objective"),
        "verdict": diag.get("verdict"),
        "old_share": total.get("old_share"),
        "loss_tokens": total.get("loss_tokens"),
        "mask": (diag.get("settings") or {}).get("mask"),
        "source": str(source),
        "reason": None,
    }


def diagnostics_of(spec: str | None) -> dict[str, Any] | None:
    """The summary of the diagnostics of the run that trained ``spec``'s adapter; None when
    the spec has no adapter or its run wrote none; an unreadable file gives a reason."""
    from compatlm.spec import ModelSpec
    from compatlm.train.diagnostics import DIAGNOSTICS, load_diagnostics

    if not spec:
        return None
    try:
        adapter = ModelSpec.parse(spec).adapter
    except CompatlmError:
        return None
    if adapter is None:
        return None
    run = Path(adapter).parent
    try:
        diag = load_diagnostics(run)
    except CompatlmError as err:
        return {"objective": None, "verdict": None, "source": str(run / DIAGNOSTICS),
                "reason": str(err)}  # fmt: skip
    except OSError as err:
        return {"objective": None, "verdict": None, "source": str(run / DIAGNOSTICS),
                "reason": f"cannot be read ({err.strerror})"}  # fmt: skip
    return None if diag is None else _summary(diag, run / DIAGNOSTICS)


def collect_diagnostics(
    comparisons: list[dict[str, Any]], reference: str
) -> dict[str, dict[str, Any]]:
    """``{task: {role: summary}}`` for every model compared with ``reference`` whose adapter
    was trained by a compat run (MUSCLE, PCT, a control)."""
    out: dict[str, dict[str, Any]] = {}
    for comp in comparisons:
        if comp["reference"] != reference:
            continue
        spec = ((comp.get("scoring") or {}).get("other") or {}).get("model")
        found = diagnostics_of(spec)
        if found is not None:
            out.setdefault(comp["task"], {})[comp["other"]] = found
    return out


def is_control(role: str, diagnostics: dict[str, Any] | None) -> bool:
    """A same-budget control: its training objective says so, or its registered name."""
    objective = (diagnostics or {}).get("objective")
    return objective in CONTROL_OBJECTIVES or role in CONTROL_OBJECTIVES
