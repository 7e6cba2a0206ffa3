"""Where MUSCLE's student starts: a copy of the new task adapter (the paper's A.1) or a fresh LoRA.

The demo's measurements (``evidence.json``, ``muscle_masks.json``) point at one limit: the
student starts *as* teacher_new, so on every token the mask sends to teacher_new the distillation
gradient is zero at step 0 and MUSCLE can move away from new only through the few tokens that
follow teacher_old. This study removes that limit. One ``compatlm demo`` (library call) on the
default family over seeds 0..N-1 with ``select.grid = {compat_init: [new_adapter, fresh]}``: per
seed and task the same old and new task adapters, one MUSCLE adapter per start (the demo's mask
``student_wrong``, T = 2, λ = 1) and, because ``compat_init`` is a budget knob, one same-budget
``continue_ce`` per start (fresh: a fresh LoRA trained with cross entropy only, i.e. the new task
adapter's recipe again). Every compatibility run gets the *task adapters'* budget (``--budget
task``: their epochs and learning rate), so a fresh student has what new itself had.

Every number is read from the seeds' selection files, i.e. the **validation** split. Per start:
Δ%NFR vs new of MUSCLE and of its control, MUSCLE − control (seed-level t-interval of the
per-seed differences, averaged over tasks per seed first), the accuracy change, the seeds that
kept accuracy within the floor, the share of loss tokens that followed teacher_old. Verdict per
start: ``beats its control`` when MUSCLE − control excludes 0 below it, ``worse than its
control`` when above, else ``no measurable difference``.

The committed run (23.1 min cold on two cores: seeds 0–2 in 835 s, then the same command with
``--seeds 5`` added seeds 3–4 in 551 s; resumable — rerun the same command to continue)::

    .venv/bin/python bench/muscle_init.py --seeds 5 --out runs/bench-init

Smoke run (quick family, 2 seeds, result in a temp file, verdicts meaningless)::

    .venv/bin/python bench/muscle_init.py --quick
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import setup_logging
from knob_study import (
    T2,
    demo_setup,
    finish_study,
    paired_points,
    run_study,
    study_parser,
    versus_control,
)

INITS = ("new_adapter", "fresh")
CONTROL_PREFIX = "continue_ce.compat_init__"


def point_key(p: dict[str, Any]) -> str:
    """``muscle/<init>`` of a grid point, ``continue_ce/<init>`` of its control (validation role
    ``continue_ce.compat_init__<init>``)."""
    if p["kind"] == "control":
        return f"continue_ce/{p['name'].removeprefix(CONTROL_PREFIX)}"
    return f"muscle/{p['knobs']['compat_init']}"


def verdicts(summary: dict[str, Any], cells: dict[str, Any], inits: list[str]) -> dict[str, Any]:
    avg = summary["averaged_over_tasks"]
    by_init = {
        init: v
        for init in inits
        if (v := versus_control(summary, f"muscle/{init}", f"continue_ce/{init}")) is not None
    }
    # Does the fresh CE control reproduce new (same recipe, seed and data order)? Counted, not
    # assumed: where it does, MUSCLE-fresh vs new is already the same-budget comparison.
    same = total = 0
    for points in cells.values():
        for cell in points.get("continue_ce/fresh", {}).values():
            total += 1
            same += cell["delta_nfr_percent"] == 0 and cell["accuracy_change_points"] == 0
    fresh_vs_default = None
    if "muscle/fresh" in avg and "muscle/new_adapter" in avg:
        fresh_vs_default = paired_points(avg, "muscle/fresh", "muscle/new_adapter")
    return {
        "by_init": by_init,
        "fresh_minus_new_adapter_muscle_delta_nfr_points": fresh_vs_default,
        "fresh_control_equals_new": {"cells": total, "identical_to_new": same},
    }


def main() -> None:
    ap = study_parser(__doc__, default_seeds=5)
    ap.add_argument("--inits", nargs="+", default=list(INITS), choices=INITS)
    ap.add_argument(
        "--budget",
        choices=("task", "compat"),
        default="task",
        help="task: every compat run gets the task adapters' epochs and lr (default); compat:"
        " the demo's compat_epochs and compat_lr",
    )
    args = ap.parse_args()
    setup_logging()

    cfg, seeds, out, machine = demo_setup(args, {"compat_init": args.inits}, [T2], "init")
    if args.budget == "task":
        t = cfg.training
        cfg = cfg.model_copy(
            update={"training": t.model_copy(update={"compat_epochs": t.epochs, "compat_lr": t.lr})}
        )
    doc, cells, summary = run_study(cfg, out, seeds, args.tasks, point_key, "muscle_init")
    t = cfg.training
    doc |= {
        "mask": cfg.mask,
        "temperature": cfg.temperature,
        "kd_weight": cfg.kd_weight,
        "budget": {"kind": args.budget, "epochs": t.compat_epochs, "lr": t.compat_lr},
        "verdicts": verdicts(summary, cells, args.inits),
    }
    finish_study("muscle_init", args.quick, doc, machine)
    print(json.dumps(doc["verdicts"], indent=1))


if __name__ == "__main__":
    main()
