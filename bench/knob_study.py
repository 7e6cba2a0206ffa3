"""The knob studies' shared machinery: run one ``compatlm demo`` over seeds, read it back.

A knob study (``muscle_masks.py``, ``muscle_t_squared.py``, ``muscle_init.py``,
``muscle_repair_mask.py``) runs one demo (library call: ``compatlm.demo.pipeline.run_demo``) on
the default family with ``select.grid`` = the knob values under study, then reads every number
from the seeds' *validation* selection files: per task, point and seed a cell (NFR, Δ%NFR vs new,
accuracy change, floor verdict, teacher_old share from ``diagnostics.json``). This module owns
that reading, the seed-level statistics (mean and 95% t-interval over seeds, tasks averaged per
seed first so seeds stay the level; paired differences of two points), the MUSCLE-vs-control
verdict, the common command line and the result file. A study adds only its grid, how a
selection point is named (``key``) and its verdicts.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import default_out, machine_info, set_threads, write_result

TASKS = ("demo_hellaswag", "demo_piqa")
# The studies measured before the demo's default temperature became 1 (muscle_temperature.json)
# ran at T = 2; they pass this override so their commands still reproduce their results.
T2 = "temperature=2.0"


def t_interval(values: list[float]) -> dict[str, Any]:
    """Mean and 95% t-interval over seeds, as the demo summary computes them (null interval,
    with the reason, for one value), under the key ``n_seeds``."""
    from compatlm.demo.summary import mean_ci

    out = mean_ci(values)
    out["n_seeds"] = out.pop("n")
    return out


def _value(obj: dict[str, Any] | None) -> float | None:
    return None if not obj else obj.get("value")


def _change(value: float | None, base: float | None, relative: bool) -> float | None:
    """100 · (value − base) / base (relative) or 100 · (value − base) points; None if undefined."""
    if value is None or base is None or (relative and not base):
        return None
    return 100.0 * (value - base) / (base if relative else 1.0)


def point_cells(
    demo: Path, seeds: list[int], tasks: list[str], key: Callable[[dict[str, Any]], str]
) -> dict[str, Any]:
    """``{task: {point: {seed: cell}}}`` from the seeds' validation selection files; ``key``
    names a selection point (each study has its own: a mask, a start, a λ)."""
    from compatlm.train.diagnostics import diagnostics_for_spec

    cells: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for seed in seeds:
        for task in tasks:
            sel = json.loads((demo / f"seed{seed}" / "selection" / f"{task}.json").read_text())
            new_nfr = _value(sel["new"]["negative_flip_rate"])
            new_acc = _value(sel["new"]["accuracy"])
            floor = _value(sel["floor"])
            for p in sel["points"]:
                nfr, acc = _value(p["negative_flip_rate"]), _value(p["accuracy"])
                diag = diagnostics_for_spec(p["spec"]) or {}
                # A grid point carries the selection's own exact floor verdict; the control does
                # not compete there, so its verdict is computed here.
                if p["kind"] != "control":
                    passed = bool(p["eligible"])
                else:
                    passed = acc is not None and floor is not None and acc >= floor
                cells.setdefault(task, {}).setdefault(key(p), {})[seed] = {
                    "nfr": nfr,
                    "new_nfr": new_nfr,
                    "delta_nfr_percent": _change(nfr, new_nfr, relative=True),
                    "accuracy_change_points": _change(acc, new_acc, relative=False),
                    "passed_floor": passed,
                    "old_share": _value((diag.get("total") or {}).get("old_share")),
                }
    return cells


def summarize_points(cells: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Per task and point, and averaged over tasks per seed (so seeds stay the level): mean,
    seed-level t-interval and the per-seed values (``{seed: value}``, for paired differences)."""
    tasks = list(cells)
    points = list(cells[tasks[0]])
    out: dict[str, Any] = {"per_task": {}, "averaged_over_tasks": {}}
    for task in tasks:
        out["per_task"][task] = {}
        for point in points:
            by_seed = cells[task][point]
            row = {
                key: t_interval([c[key] for c in by_seed.values() if c[key] is not None])
                for key in ("delta_nfr_percent", "accuracy_change_points", "old_share")
            }
            row["passed_floor_seeds"] = sum(c["passed_floor"] for c in by_seed.values())
            out["per_task"][task][point] = row
    for point in points:
        avg = {}
        for key in ("delta_nfr_percent", "accuracy_change_points"):
            per_seed = {}
            for s in seeds:
                vals = [cells[t][point].get(s, {}).get(key) for t in tasks]
                if None not in vals:
                    per_seed[s] = sum(vals) / len(vals)
            avg[key] = t_interval(list(per_seed.values())) | {"per_seed": per_seed}
        out["averaged_over_tasks"][point] = avg
    return out


def paired(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Seed-level t-interval of a − b over the seeds both have."""
    return t_interval([a[s] - b[s] for s in a if s in b])


def paired_points(
    avg: dict[str, Any], a: str, b: str, key: str = "delta_nfr_percent"
) -> dict[str, Any]:
    """:func:`paired` of two points' per-seed values averaged over tasks (``key``)."""
    return paired(avg[a][key]["per_seed"], avg[b][key]["per_seed"])


def ci_side(diff: dict[str, Any]) -> str | None:
    """``below`` / ``above`` when a difference's interval excludes 0 on that side, else None."""
    if not diff["ci"]:
        return None
    lo, hi = diff["ci"]
    return "below" if hi < 0 else "above" if lo > 0 else None


def vanilla(demo: Path, seeds: list[int], tasks: list[str]) -> dict[str, Any]:
    """Per task, validation accuracy of old and new and new's NFR vs old, over seeds: what the
    task adapters' own settings (``training.mask_prompt``) are judged by."""
    out: dict[str, Any] = {}
    for task in tasks:
        sels = [
            json.loads((demo / f"seed{s}" / "selection" / f"{task}.json").read_text())
            for s in seeds
        ]
        values = {
            "accuracy_old": [_value(x["old"]["accuracy"]) for x in sels],
            "accuracy_new": [_value(x["new"]["accuracy"]) for x in sels],
            "nfr_new": [_value(x["new"]["negative_flip_rate"]) for x in sels],
        }
        out[task] = {k: t_interval([v for v in vs if v is not None]) for k, vs in values.items()}
    return out


def test_look(demo: Path) -> dict[str, Any]:
    """The demo's one test evaluation (the selected point as ``muscle``, and continue_ce), for
    context only: nothing above is chosen from it."""
    keep = ("acc", "primary_nfr", "delta_nfr_percent", "seeds")
    test = json.loads((demo / "summary.json").read_text(encoding="utf-8"))
    return {
        task: {role: {k: e.get(k) for k in keep} for role, e in entry.items()}
        for task, entry in test["tasks"].items()
    }


def demo_setup(
    args: argparse.Namespace,
    grid: dict[str, list[Any]],
    extra: list[str],
    name: str,
) -> tuple[Any, list[int], Path, dict[str, Any]]:
    """The knob studies' demo config (``select.grid`` = ``grid``, no alternatives), seeds (the
    :func:`study_parser` default unless given), demo directory (``runs/bench-<name>``, a temp
    one with ``--quick``), threads and machine facts."""
    from compatlm.config import apply_overrides, build_config
    from compatlm.demo.pipeline import DemoConfig, quick_defaults

    seeds = list(range(args.seeds or (2 if args.quick else args.default_seeds)))
    out = args.out or (
        Path(tempfile.mkdtemp(prefix=f"compatlm_{name}_")) / "demo"
        if args.quick
        else Path(f"runs/bench-{name}")
    )
    data: dict[str, Any] = quick_defaults() if args.quick else {}
    data |= {"seeds": seeds, "quick": args.quick, "tasks": args.tasks, "alternatives": []}
    overrides = ["runtime.progress=false", f"select.grid={json.dumps(grid)}", *extra]
    cfg = build_config(DemoConfig, apply_overrides(data, overrides), "demo")
    set_threads(args.threads)
    return cfg, seeds, out, machine_info(threads=args.threads)


def run_study(
    cfg: Any, out: Path, seeds: list[int], tasks: list[str], key: Callable, script: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Run (or resume) a knob study's demo and read it back: the result fields every study
    shares, the cells (``point_cells`` with ``key``) and their summary."""
    from compatlm.demo.pipeline import run_demo

    t0 = time.perf_counter()
    run_demo(cfg, out)  # resumes: finished steps are reused
    seconds = time.perf_counter() - t0
    cells = point_cells(out, seeds, tasks, key=key)
    summary = summarize_points(cells, seeds)
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    doc = {
        "command": f".venv/bin/python bench/{script}.py {argv}".strip(),
        "family": cfg.family,
        "tasks": tasks,
        "seeds": seeds,
        "split": "validation",
        "select": cfg.select.model_dump(mode="json"),
        # a resumed run times only what this invocation still had to do
        "wall_seconds": round(seconds, 1),
        "how": "Δ%NFR = 100 (NFR_point − NFR_new) / NFR_new per seed on the validation split,"
        " then mean and 95% t-interval over seeds; averaged over tasks per seed first",
        "vanilla": vanilla(out, seeds, tasks),
        "validation": summary,
        "cells": {
            t: {p: {str(s): c for s, c in v.items()} for p, v in pts.items()}
            for t, pts in cells.items()
        },
        "test_look_of_the_selected_point": test_look(out),
    }
    return doc, cells, summary


# MUSCLE − control: which side of 0 its seed-level interval lies on.
VERSUS_CONTROL = {
    "below": "beats its control",
    "above": "worse than its control",
    None: "no measurable difference",
}


def versus_control(summary: dict[str, Any], point: str, control: str) -> dict[str, Any] | None:
    """A MUSCLE point against its same-budget control on validation: both Δ%NFR and accuracy
    changes (averaged over tasks), MUSCLE − control with its seed-level interval and verdict,
    the seeds that passed the floor and the teacher_old share per task; None if either is
    missing."""
    avg, per_task = summary["averaged_over_tasks"], summary["per_task"]
    if point not in avg or control not in avg:
        return None
    diff = paired_points(avg, point, control)
    return {
        "muscle_delta_nfr_percent": avg[point]["delta_nfr_percent"]["mean"],
        "control_delta_nfr_percent": avg[control]["delta_nfr_percent"]["mean"],
        "muscle_accuracy_change_points": avg[point]["accuracy_change_points"]["mean"],
        "control_accuracy_change_points": avg[control]["accuracy_change_points"]["mean"],
        "muscle_minus_control_delta_nfr_points": diff,
        "muscle_passed_floor_seeds": {
            t: pts[point]["passed_floor_seeds"] for t, pts in per_task.items()
        },
        "old_share": {t: pts[point]["old_share"]["mean"] for t, pts in per_task.items()},
        "verdict": VERSUS_CONTROL[ci_side(diff)],
    }


def study_parser(doc: str, default_seeds: int) -> argparse.ArgumentParser:
    """The arguments every knob study takes (seeds, tasks, quick, out, threads)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None, help=f"default {default_seeds} (--quick: 2)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--quick", action="store_true", help="quick family, 2 seeds, temp result")
    ap.add_argument("--out", type=Path, default=None, help="demo directory (resumable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.set_defaults(default_seeds=default_seeds)  # read by demo_setup: one place per study
    return ap


def finish_study(name: str, quick: bool, doc: dict[str, Any], machine: dict[str, Any]) -> None:
    """Write a study's result (bench/results/<name>.json, a temp file with --quick), say where."""
    path = write_result(default_out(name, quick), doc, machine)
    print(f"wrote {path} ({doc['wall_seconds']:.0f} s)")
