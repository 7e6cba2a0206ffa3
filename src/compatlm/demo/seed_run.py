"""One seed of the demo: train, select MUSCLE's setting on validation, then look at test once.

Per task: the old and new task adapters, one MUSCLE adapter per point of ``select.grid`` and the
same-budget control ``continue_ce`` per training budget (:func:`train_for_selection`); one
evaluation of all of them on the validation splits, the selection rule applied to its
``metrics.json`` and ``selection/<task>.json`` written per task (:func:`select_on_validation`);
then the alternatives and one evaluation on the test splits of old, new, the selected MUSCLE as
``muscle``, ``continue_ce`` of the winner's budget and the alternatives (:func:`models_for_test`,
:func:`run_seed`). No test :class:`~compatlm.config.TaskConfig` is built before every selection
file of the seed is on disk, so the test split cannot influence a choice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compatlm.config import EvalConfig
from compatlm.demo.alternatives import (
    CONTROLS,
    add_rerank,
    build_alternative,
    train_control,
    train_pct,
)
from compatlm.demo.selection import (
    CONTROL,
    budget_of,
    budgets,
    control_role,
    point_config,
    role_of,
    select_task,
    selection_document,
    write_selection,
)
from compatlm.demo.steps import (
    muscle_config,
    step,
    step_seconds,
    task_cfg,
    train_muscle,
    train_task_adapter,
)

if TYPE_CHECKING:
    from compatlm.demo.pipeline import DemoConfig

log = logging.getLogger(__name__)


@dataclass
class TaskRuns:
    """What one seed trained for one task, before the test split is looked at."""

    old: str
    new: str
    points: list[tuple[str, dict[str, Any], str]]  # (validation role, knobs, spec) per point
    controls: dict[str, str]  # validation role -> spec of continue_ce, one per budget
    seconds: dict[str, float | None] = field(default_factory=dict)  # role -> training seconds


@dataclass
class SeedRun:
    run: Path  # the test eval run directory
    selections: dict[str, dict[str, Any]]  # task -> its selection document
    notes: list[str]


def train_for_selection(
    cfg: DemoConfig, family: Any, task: str, seed: int, d: Path, points: list[dict[str, Any]]
) -> TaskRuns:
    """Old and new task adapters, one MUSCLE adapter per grid point, continue_ce per budget."""
    old_base, new_base = str(family.old_dir), str(family.new_dir)
    old_ad = step(
        d / "old",
        f"seed {seed} · {task}: task adapter on the old base",
        lambda: train_task_adapter(cfg, family, old_base, task, seed, d / "old"),
    )
    new_ad = step(
        d / "new",
        f"seed {seed} · {task}: task adapter on the new base",
        lambda: train_task_adapter(cfg, family, new_base, task, seed, d / "new"),
    )
    runs = TaskRuns(f"{old_base}+{old_ad}", f"{new_base}+{new_ad}", [], {})
    for knobs in points:
        role, pcfg = role_of(knobs), point_config(cfg, knobs)
        where = d / "muscle" / role.removeprefix("muscle.")
        spec = f"{new_base}+" + step(
            where,
            f"seed {seed} · {task}: MUSCLE at {role.removeprefix('muscle.')}",
            lambda pcfg=pcfg, where=where: train_muscle(
                pcfg, family, runs.old, runs.new, task, seed, where
            ),
        )
        runs.points.append((role, knobs, spec))
        runs.seconds[role] = step_seconds(where)
    for budget in budgets(points):
        role, bcfg = control_role(budget), point_config(cfg, budget)
        where = d / role
        runs.controls[role] = step(
            where,
            f"seed {seed} · {task}: {role} (same-budget control of MUSCLE)",
            lambda bcfg=bcfg, where=where: train_control(
                CONTROL, muscle_config(bcfg, family, runs.old, runs.new, task, seed), where
            ),
        )
        runs.seconds[role] = step_seconds(where)
    return runs


def select_on_validation(
    cfg: DemoConfig, family: Any, trained: dict[str, TaskRuns], seed: int, out: Path
) -> dict[str, dict[str, Any]]:
    """Evaluate old, new, every point and the controls on each task's validation split, apply
    the selection rule to that run's metrics.json and write ``selection/<task>.json``."""
    from compatlm.eval.pipeline import run_eval
    from compatlm.report import render_report

    val_cfgs = []
    for task, runs in trained.items():
        models = {"old": runs.old, "new": runs.new}
        models |= {role: spec for role, _, spec in runs.points} | runs.controls
        val_cfgs.append(
            task_cfg(family, task, "validation", cfg.select.limit_validation).with_models(models)
        )
    runtime = cfg.runtime.model_copy(update={"seed": seed})
    ecfg = EvalConfig(
        old=str(family.old_dir), new=str(family.new_dir), tasks=val_cfgs, runtime=runtime
    )
    run = run_eval(ecfg, out / "validation", resume=True)
    render_report(run)  # eval renders nothing itself; the validation run keeps its reports
    val_doc = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    docs = {}
    for task, runs in trained.items():
        sel = select_task(val_doc, task, runs.points, runs.controls, runs.new, cfg.select)
        winner_knobs = sel.winner.knobs if sel.winner is not None else runs.points[0][1]
        docs[task] = selection_document(
            sel,
            task=task,
            seed=seed,
            old_spec=runs.old,
            val_doc=val_doc,
            seconds=runs.seconds,
            test_control=control_role(budget_of(winner_knobs or {})),
        )
        write_selection(out, task, docs[task])
        if sel.winner is None:
            log.warning(
                "seed %d · %s: no MUSCLE point passed the floor: %s", seed, task, sel.reason
            )
    return docs


def models_for_test(
    cfg: DemoConfig,
    family: Any,
    task: str,
    runs: TaskRuns,
    selection: dict[str, Any],
    alternatives: list[str],
    seed: int,
    d: Path,
) -> dict[str, str]:
    """The roles of the test evaluation: old, new, the selected MUSCLE as ``muscle`` (none when
    no point passed the floor), continue_ce of its budget, and the other alternatives."""
    new_base = str(family.new_dir)
    old, new = runs.old, runs.new
    models = {"old": old, "new": new}
    winner = selection["winner"]
    if winner is not None:
        models["muscle"] = winner["spec"]
    models[CONTROL] = runs.controls[selection["test_roles"][CONTROL]]
    for alt in alternatives:
        if alt in ("rerank", CONTROL):  # rerank: predictions added after the eval; control: above
            continue
        if alt in CONTROLS:  # kd_new: the same-budget control of the selected MUSCLE setting
            if winner is None:
                continue
            wcfg = point_config(cfg, winner["knobs"] or {})
            models[alt] = step(
                d / alt,
                f"seed {seed} · {task}: {alt} (same-budget control of MUSCLE)",
                lambda alt=alt, wcfg=wcfg: train_control(
                    alt, muscle_config(wcfg, family, old, new, task, seed), d / alt
                ),
            )
        elif alt == "pct":
            models[alt] = f"{new_base}+" + step(
                d / alt,
                f"seed {seed} · {task}: PCT focal distillation adapter",
                lambda: train_pct(
                    cfg,
                    task_cfg(family, task, "train", cfg.training.limit_train),
                    old,
                    new,
                    seed,
                    d / "pct",
                ),
            )
        else:
            models[alt] = step(
                d / alt,
                f"seed {seed} · {task}: {alt}",
                lambda alt=alt: build_alternative(
                    alt, old, new, d / alt / "candidate", cfg.runtime
                ),
            )
    return models


def run_seed(
    cfg: DemoConfig,
    family: Any,
    tasks: list[str],
    alternatives: list[str],
    seed: int,
    out: Path,
    points: list[dict[str, Any]],
) -> SeedRun:
    """Train, select every task's MUSCLE setting on validation, then evaluate on test once.

    The order is the guarantee that test data cannot influence the choice: no test TaskConfig
    exists until every selection file of the seed is on disk."""
    from compatlm.eval.pipeline import run_eval
    from compatlm.report import render_report

    trained = {
        task: train_for_selection(cfg, family, task, seed, out / "adapters" / task, points)
        for task in tasks
    }
    selections = select_on_validation(cfg, family, trained, seed, out)
    notes = [
        f"seed {seed} · {task}: MUSCLE — no point passed the floor ({doc['reason']})"
        for task, doc in selections.items()
        if doc["winner"] is None
    ]
    # The winners are fixed: from here on the test split may be read.
    task_cfgs = []
    for task in tasks:
        d = out / "adapters" / task
        models = models_for_test(
            cfg, family, task, trained[task], selections[task], alternatives, seed, d
        )
        task_cfgs.append(task_cfg(family, task, "test", cfg.limit_test).with_models(models))
    runtime = cfg.runtime.model_copy(update={"seed": seed})
    ecfg = EvalConfig(
        old=str(family.old_dir), new=str(family.new_dir), tasks=task_cfgs, runtime=runtime
    )
    run = run_eval(ecfg, out / "eval", resume=True)
    render_report(run)
    if "rerank" in alternatives and add_rerank(task_cfgs, out, runtime, step):
        from compatlm.eval.compare_io import compare_run

        # Every role, now with rerank; the reports are redone as part of the new set.
        compare_run(run, ecfg.compare, render=render_report)
    return SeedRun(run, selections, notes)
