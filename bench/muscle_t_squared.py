"""MUSCLE's ``t_squared`` (the KL term scaled by T², Hinton et al. 2015) measured on validation.

One ``compatlm demo`` (library call: ``compatlm.demo.pipeline.run_demo``) on the default family
over seeds 0..N-1 with ``select.grid = {t_squared: [false, true], kd_weight: [1.0, 0.5]}``: per
seed and task the same old and new task adapters, one MUSCLE adapter per point (the demo's mask
``student_wrong``, T = 2, so ``t_squared`` multiplies the distillation term by 4) and one
same-budget ``continue_ce`` (``t_squared`` and λ do not change which tokens or steps are trained,
so one control serves every point). Every number is read from the seeds' selection files, i.e.
the **validation** split: the result decides a default, so it must not look at test.

Why two λ values: at the demo's λ = ``kd_weight`` = 1 the loss *is* the KL term, and AdamW is
invariant to a constant factor on the loss up to its ε and the gradient clipping at
``max_grad_norm`` (which a 4× larger gradient reaches sooner), so T² can only act through those.
At λ = 0.5 it changes the balance of distillation and cross entropy, the case Hinton's factor was
made for.

Per λ: the seed-level t-interval of Δ%NFR(t_squared true) − Δ%NFR(t_squared false), averaged
over tasks per seed first, the same for the accuracy change, and in how many (seed, task) cells
the two points gave identical validation predictions' counts. Verdict ``t_squared``: the value
with the lower Δ%NFR where the difference excludes 0, else ``no measurable difference`` (then
the demo keeps ``false``, the cheaper-to-explain loss whose scale matches ``continue_ce``'s).

The committed run (23.6 min cold for 3 seeds on two cores; resumable — rerun the same command
to continue)::

    .venv/bin/python bench/muscle_t_squared.py --seeds 3 --out runs/bench-tsq

Smoke run (quick family, 2 seeds, result in a temp file, verdicts meaningless)::

    .venv/bin/python bench/muscle_t_squared.py --quick
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
    ci_side,
    demo_setup,
    finish_study,
    paired_points,
    run_study,
    study_parser,
)

KD_WEIGHTS = (1.0, 0.5)


def point_key(p: dict[str, Any]) -> str:
    """``t_squared_<bool>/kd_<λ>`` of a grid point, ``continue_ce`` of the control."""
    if p["kind"] == "control":
        return "continue_ce"
    k = p["knobs"]
    return f"t_squared_{str(bool(k['t_squared'])).lower()}/kd_{float(k['kd_weight'])}"


def identical_cells(cells: dict[str, Any], kd: float) -> dict[str, int]:
    """(seed, task) cells where both t_squared values gave the same validation NFR and accuracy
    (to the count), out of the cells that have both."""
    same = total = 0
    for points in cells.values():
        a, b = points.get(f"t_squared_false/kd_{kd}", {}), points.get(f"t_squared_true/kd_{kd}", {})
        for seed in set(a) & set(b):
            total += 1
            keys = ("nfr", "accuracy_change_points")
            same += all(a[seed][k] == b[seed][k] for k in keys)
    return {"identical": same, "cells": total}


def verdicts(summary: dict[str, Any], cells: dict[str, Any], kds: list[float]) -> dict[str, Any]:
    avg = summary["averaged_over_tasks"]
    by_kd: dict[str, Any] = {}
    for kd in kds:
        on, off = f"t_squared_true/kd_{kd}", f"t_squared_false/kd_{kd}"
        if on not in avg or off not in avg:
            continue
        nfr = paired_points(avg, on, off)
        acc = paired_points(avg, on, off, "accuracy_change_points")
        excludes = ci_side(nfr) is not None
        by_kd[str(kd)] = {
            "delta_nfr_percent": {"true": avg[on]["delta_nfr_percent"]["mean"],
                                  "false": avg[off]["delta_nfr_percent"]["mean"]},
            "true_minus_false_delta_nfr_points": nfr,
            "true_minus_false_accuracy_points": acc,
            "difference_excludes_zero": excludes,
            "lower_delta_nfr": None if not excludes else ("true" if nfr["mean"] < 0 else "false"),
            "identical_cells": identical_cells(cells, kd),
        }  # fmt: skip
    winners = {v["lower_delta_nfr"] for v in by_kd.values()} - {None}
    verdict = winners.pop() if len(winners) == 1 else "no measurable difference"
    control = avg.get("continue_ce", {}).get("delta_nfr_percent", {}).get("mean")
    return {
        "t_squared": {"verdict": verdict, "by_kd_weight": by_kd},
        "continue_ce_delta_nfr_percent": control,
    }


def main() -> None:
    ap = study_parser(__doc__, default_seeds=3)
    ap.add_argument("--kd-weights", nargs="+", type=float, default=list(KD_WEIGHTS))
    args = ap.parse_args()
    setup_logging()

    grid = {"t_squared": [False, True], "kd_weight": args.kd_weights}
    cfg, seeds, out, machine = demo_setup(args, grid, [T2], "tsq")
    doc, cells, summary = run_study(cfg, out, seeds, args.tasks, point_key, "muscle_t_squared")
    doc |= {
        "mask": cfg.mask,
        "temperature": cfg.temperature,
        "verdicts": verdicts(summary, cells, args.kd_weights),
    }
    finish_study("muscle_t_squared", args.quick, doc, machine)
    print(json.dumps(doc["verdicts"], indent=1))


if __name__ == "__main__":
    main()
