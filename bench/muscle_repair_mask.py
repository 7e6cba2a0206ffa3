"""MUSCLE with teacher_old only where it can repair a token: ``student_wrong_old_right``.

``muscle_init.py`` measured that sending *more* tokens to teacher_old raises NFR. The paper's
mask ``student_wrong`` follows teacher_old wherever the student misses the label, including the
tokens where the old model misses it too (then it distils a wrong distribution). The mask
``student_wrong_old_right`` keeps only the tokens where the student is wrong *and* the old model
right: the one place distilling from the old model can undo a negative flip. One ``compatlm
demo`` (library call) on the default family over seeds 0..N-1 with ``select.grid = {mask:
[student_wrong, student_wrong_old_right]}`` at the demo's compat budget (2 epochs, lr 1e-3),
T = 2, λ = 1; one same-budget ``continue_ce`` serves both (the mask changes no step or token).

Every number is read from the seeds' selection files, i.e. the **validation** split. Per mask:
Δ%NFR vs new, MUSCLE − control (seed-level t-interval, tasks averaged per seed first), accuracy
change, seeds within the floor, share of loss tokens that followed teacher_old; and the repair
mask − the paper's.

The committed run (resumable — rerun the same command to continue)::

    .venv/bin/python bench/muscle_repair_mask.py --seeds 5 --out runs/bench-repair

Smoke run (quick family, 2 seeds, result in a temp file, verdicts meaningless)::

    .venv/bin/python bench/muscle_repair_mask.py --quick
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

MASKS = ("student_wrong", "student_wrong_old_right")
REPAIR, PAPER = "student_wrong_old_right", "student_wrong"


def point_key(p: dict[str, Any]) -> str:
    """The mask of a grid point, ``continue_ce`` of the control."""
    return "continue_ce" if p["kind"] == "control" else p["knobs"]["mask"]


def verdicts(summary: dict[str, Any], masks: list[str]) -> dict[str, Any]:
    avg = summary["averaged_over_tasks"]
    by_mask = {m: v for m in masks if (v := versus_control(summary, m, "continue_ce")) is not None}
    repair_minus_paper = None
    if REPAIR in avg and PAPER in avg:
        repair_minus_paper = {
            "delta_nfr_points": paired_points(avg, REPAIR, PAPER),
            "accuracy_points": paired_points(avg, REPAIR, PAPER, "accuracy_change_points"),
        }
    return {"by_mask": by_mask, "repair_minus_paper": repair_minus_paper}


def main() -> None:
    ap = study_parser(__doc__, default_seeds=5)
    ap.add_argument("--masks", nargs="+", default=list(MASKS), choices=MASKS)
    args = ap.parse_args()
    setup_logging()

    cfg, seeds, out, machine = demo_setup(args, {"mask": args.masks}, [T2], "repair")
    doc, _, summary = run_study(cfg, out, seeds, args.tasks, point_key, "muscle_repair_mask")
    t = cfg.training
    doc |= {
        "temperature": cfg.temperature,
        "kd_weight": cfg.kd_weight,
        "budget": {"epochs": t.compat_epochs, "lr": t.compat_lr},
        "verdicts": verdicts(summary, args.masks),
    }
    finish_study("muscle_repair_mask", args.quick, doc, machine)
    print(json.dumps(doc["verdicts"], indent=1))


if __name__ == "__main__":
    main()
