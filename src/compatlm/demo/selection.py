"""The demo's choice of MUSCLE's knobs on the validation split (MUSCLE, arXiv 2407.09435, §4–6).

A fixed MUSCLE setting tells a user little: the mask, λ (``kd_weight``), T or the number of
epochs that cut negative flips on one task may cost accuracy on another. The demo therefore
does what a user should do: per seed and task it trains one MUSCLE adapter per point of
``DemoConfig.select.grid`` (every combination of the knobs given) and the same-budget control
``continue_ce`` (one per distinct training budget of the grid), evaluates old, new, every point
and the control on the task's **validation** split, and applies the selection rule of
:mod:`compatlm.methods.selection` (lowest NFR vs old among the points whose validation accuracy is
at least new's plus ``accuracy_floor`` points; the control is shown, it does not compete). The
winner becomes the role ``muscle`` of the test evaluation; the other points never reach it.
When no point passes the floor the task has no ``muscle`` and its selection file says so.

Owns: the selection config (:class:`DemoSelect`), the grid's points, names and budgets, the
per-point demo config, the rule's application to a validation ``metrics.json`` and the
``seed<S>/selection/<task>.json`` document. The order of work (selection written before any
test file is opened) lives in :func:`compatlm.demo.seed_run.run_seed`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, field_validator

from compatlm.config import StrictModel
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_json
from compatlm.methods.selection import NFR, Entry, Selection, choose
from compatlm.methods.sweep_config import point_name

if TYPE_CHECKING:
    from compatlm.demo.pipeline import DemoConfig

SCHEMA_VERSION = 1
SPLIT = "validation"
CONTROL = "continue_ce"
SIMILARITY_NFR = "similarity_negative_flip_rate"
# knob -> where it lives in DemoConfig ("" = top level, "training" = DemoConfig.training)
KNOBS = {
    "mask": "",
    "kd_weight": "",
    "temperature": "",
    "t_squared": "",
    "compat_epochs": "training",
    "compat_lr": "training",
    "compat_mask_prompt": "training",
    "compat_init": "training",
}
# Knobs that change the training budget (steps, lr schedule, which tokens carry a loss, or where
# the weights start): the continue_ce control must match them.
BUDGET_KNOBS = ("compat_epochs", "compat_lr", "compat_mask_prompt", "compat_init")
GridValue = float | int | str | bool


class DemoSelect(StrictModel):
    """Which MUSCLE settings are tried and how one is chosen on the validation split."""

    # Two masks: the paper's (student wrong) and the one that follows the old model wherever it
    # was right. Two points keep a cold `make demo` within minutes on two CPU cores.
    grid: dict[str, list[GridValue]] = Field(
        default_factory=lambda: {"mask": ["student_wrong", "old_correct"]},
        description="knob -> values; one MUSCLE adapter per combination. Knobs: "
        + ", ".join(KNOBS),
    )
    accuracy_floor: float = Field(
        -0.5,
        ge=-100.0,
        le=100.0,
        description="points relative to the new model's validation accuracy (-0.5 = at least"
        " new's accuracy minus half a point)",
    )
    limit_validation: int | None = Field(
        None, ge=1, description="select on the first N validation rows only"
    )

    @field_validator("grid")
    @classmethod
    def _knobs(cls, grid: dict[str, list[GridValue]]) -> dict[str, list[GridValue]]:
        if not grid:
            raise ValueError("the grid is empty; give at least one knob with values")
        for knob, values in grid.items():
            if knob not in KNOBS:
                raise ValueError(f"unknown knob {knob!r}; valid: {', '.join(KNOBS)}")
            if not values:
                raise ValueError(f"{knob}: no values; give at least one")
            if len({json.dumps(v) for v in values}) != len(values):
                raise ValueError(f"{knob}: a value is repeated ({values})")
        return grid


def grid_points(select: DemoSelect) -> list[dict[str, Any]]:
    """knob -> value per point, every combination, the first knob varying slowest."""
    knobs = select.grid
    return [dict(zip(knobs, combo, strict=True)) for combo in itertools.product(*knobs.values())]


def role_of(knobs: dict[str, Any]) -> str:
    """The role name of a grid point in the validation run (``muscle.mask__old_correct``)."""
    return f"muscle.{point_name(knobs)}"


def budget_of(knobs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in knobs.items() if k in BUDGET_KNOBS}


def control_role(budget: dict[str, Any]) -> str:
    """The validation role of the continue_ce control with this budget (plain ``continue_ce``
    when the grid does not vary the budget)."""
    return CONTROL if not budget else f"{CONTROL}.{point_name(budget)}"


def budgets(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct training budgets of the grid, in grid order."""
    out: list[dict[str, Any]] = []
    for knobs in points:
        b = budget_of(knobs)
        if b not in out:
            out.append(b)
    return out


def point_config(cfg: DemoConfig, knobs: dict[str, Any]) -> DemoConfig:
    """The demo config with one grid point's knobs set (validated like any demo config)."""
    data = cfg.model_dump()
    for knob, value in knobs.items():
        (data[KNOBS[knob]] if KNOBS[knob] else data)[knob] = value
    try:
        return type(cfg).model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise CompatlmError(
            f"demo select.grid.{'.'.join(str(p) for p in first['loc'])}: {first['msg']},"
            f" found {first.get('input')!r}"
        ) from None


def check_grid(cfg: DemoConfig, compat_fields: Any) -> list[dict[str, Any]]:
    """Every grid point as a valid MUSCLE config, checked before anything is trained.
    ``compat_fields(point_cfg)`` gives the TrainCompatConfig settings of a demo config."""
    from compatlm.config import TaskConfig
    from compatlm.train.config import TrainCompatConfig

    points = grid_points(cfg.select)
    for knobs in points:
        pcfg = point_config(cfg, knobs)
        if pcfg.kd_weight == 0 or pcfg.mask == "new_only":
            what = (
                "kd_weight 0 is continue_ce" if pcfg.kd_weight == 0 else "mask new_only is kd_new"
            )
            raise CompatlmError(
                f"demo select.grid ({point_name(knobs)}): {what}, a control the demo builds"
                " itself; give MUSCLE settings only"
            )
        try:
            TrainCompatConfig(
                old="old", new="new", task=TaskConfig(name="demo"), **compat_fields(pcfg)
            )
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise CompatlmError(
                f"demo select.grid ({point_name(knobs)}): field {loc!r}:"
                f" {first['msg'].removeprefix('Value error, ')}, found {first.get('input')!r}"
            ) from None
    return points


def _old_vs_new(val_doc: dict[str, Any], task: str) -> dict[str, Any]:
    for comp in val_doc["comparisons"]:
        if comp["task"] == task and comp["reference"] == "old" and comp["other"] == "new":
            return comp
    raise CompatlmError(f"validation metrics.json has no comparison old vs new on task {task!r}")


def primary_nfr(comp: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(metric name, metric object) of the NFR a task is judged by in the demo (as in its
    summary): similarity flips on a generative task with scores on both sides, correctness
    flips on every other task."""
    sim = (comp.get("similarity") or {}).get("metrics") or {}
    if (
        comp.get("kind") == "generation"
        and (sim.get(SIMILARITY_NFR) or {}).get("value") is not None
    ):
        return SIMILARITY_NFR, sim[SIMILARITY_NFR]
    return NFR, comp["metrics"][NFR]


def task_metric(val_doc: dict[str, Any], task: str) -> str:
    """The selection metric of ``task``: its NFR (:func:`primary_nfr`) on the old-vs-new pair."""
    return primary_nfr(_old_vs_new(val_doc, task))[0]


def select_task(
    val_doc: dict[str, Any],
    task: str,
    points: list[tuple[str, dict[str, Any], str]],
    controls: dict[str, str],
    new_spec: str,
    select: DemoSelect,
) -> Selection:
    """Apply the rule to the validation run's metrics document (the only data it is given).
    ``points``: (role, knobs, spec) per grid point; ``controls``: role -> spec."""
    entries = [Entry(role, spec, "candidate", knobs, knobs) for role, knobs, spec in points]
    entries += [Entry(role, spec, "control") for role, spec in controls.items()]
    return choose(
        val_doc,
        task,
        entries,
        new_spec,
        metric=task_metric(val_doc, task),
        split=SPLIT,
        floor_points=select.accuracy_floor,
        floor_field="demo select.accuracy_floor",
        control_competes=False,  # the role `muscle` is a MUSCLE setting; the control is shown
    )


def selection_document(
    sel: Selection,
    *,
    task: str,
    seed: int,
    old_spec: str,
    val_doc: dict[str, Any],
    seconds: dict[str, float | None],
    test_control: str,
) -> dict[str, Any]:
    """``seed<S>/selection/<task>.json``: the rule, every point's validation numbers (metric
    objects with numerator and denominator), the control's, the winner or why there is none."""
    comp = _old_vs_new(val_doc, task)
    winner = sel.winner
    return {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "seed": seed,
        "split": SPLIT,
        "status": "selected" if winner is not None else "no_point_passed_the_floor",
        "rule": sel.rule,
        "floor": sel.floor,
        "old": {"spec": old_spec, "accuracy": comp["metrics"]["accuracy_old"]},
        "new": asdict(sel.new),
        "points": [asdict(p) | {"train_seconds": seconds.get(p.name)} for p in sel.points],
        "winner": None
        if winner is None
        else {"role": winner.name, "knobs": winner.knobs, "spec": winner.spec},
        "reason": sel.reason,
        # What the test evaluation holds for this task: the winner as `muscle` (or no muscle),
        # and the continue_ce control of the winner's budget as `continue_ce`.
        "test_roles": {
            "muscle": None if winner is None else winner.name,
            CONTROL: test_control,
        },
    }


def selection_path(seed_dir: Path, task: str) -> Path:
    from compatlm.paths import check_name

    return seed_dir / "selection" / f"{check_name('task', task)}.json"


def write_selection(seed_dir: Path, task: str, doc: dict[str, Any]) -> Path:
    return atomic_write_json(selection_path(seed_dir, task), doc)
