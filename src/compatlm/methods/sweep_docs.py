"""The documents of a sweep: ``selection.json`` and the original form's ``sweep.json``.

Plain data built from the selection (:mod:`compatlm.methods.selection`) and the config; the
human-readable ``sweep.md`` and front plot are drawn from ``selection.json`` alone by
:mod:`compatlm.report.sweep`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compatlm.config import TaskConfig
    from compatlm.methods.selection import Selection
    from compatlm.methods.sweep_config import SweepConfig


def _dump(task: TaskConfig | None) -> dict[str, Any] | None:
    return task.model_dump(mode="json", exclude_none=True) if task is not None else None


def selection_document(
    cfg: SweepConfig,
    sel: Selection,
    *,
    old: str,
    control: str | None,
    test: dict[str, Any] | None,
    status: str,
    removed: list[str],
    splits: tuple[str, TaskConfig, str | None, TaskConfig | None],
) -> dict[str, Any]:
    """``selection.json``: the rule, every point's numbers on the selection split (metric
    objects with numerator and denominator), the winner and the test look."""
    val_split, val_task, test_split, test_task = splits
    return {
        "schema_version": 1,
        "status": status,  # winner_fixed (test pending) | selected | no_candidate
        "method": cfg.method,
        "knobs": cfg.knobs(),
        "splits": {
            "selection": {"name": val_split, "task": _dump(val_task)},
            "test": {"name": test_split, "task": _dump(test_task)} if test_task else None,
        },
        "rule": sel.rule,
        "old": old,
        "new": asdict(sel.new),
        "control": control,
        "points": [asdict(p) for p in sel.points],
        "winner": asdict(sel.winner) if sel.winner is not None else None,
        "reason": sel.reason,
        "test": test,
        "runs": {
            "validation": None if "validation" in removed else "validation",
            "test": "test" if test is not None else None,
        },
        "removed": removed,
    }


def legacy_document(
    cfg: SweepConfig, sel: Selection, test: dict[str, Any] | None
) -> dict[str, Any]:
    """``sweep.json`` of the original ``validation``/``test`` form, in its original shape."""
    return {
        "method": cfg.method,
        "knob": cfg.knob if cfg.knob is not None else list(cfg.knobs()),
        "validation_task": cfg.validation.model_dump(mode="json", exclude_none=True),
        "floor": sel.floor,
        "new": asdict(sel.new),
        "points": [asdict(p) for p in sel.points],
        "selected": asdict(sel.winner) if sel.winner else None,
        "reason": sel.reason,
        "test": test,
    }
