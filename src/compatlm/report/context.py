"""What a report states about a run besides its numbers: where they come from.

Two sources, both files of the run:

- :func:`read_env` — the run's ``env.json`` (when the run was made, the git hash, each task's
  metric and pass threshold). It is read only if it resolves inside the run directory, like
  every file a report reads, and a missing or unreadable one leaves those header fields "not
  recorded" instead of failing the report: the numbers do not depend on it.
- ``metrics.json``'s ``diagnostics``: for each candidate, the summary of the
  ``diagnostics.json`` of the run that trained its adapter, written there by ``compare``
  (:func:`compatlm.train.diagnostics.collect_diagnostics`) so the report reads only the run.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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


def is_control(role: str, diagnostics: dict[str, Any] | None) -> bool:
    """A same-budget control: its training objective says so, or its registered name."""
    objective = (diagnostics or {}).get("objective")
    return objective in CONTROL_OBJECTIVES or role in CONTROL_OBJECTIVES
