"""One MUSCLE knob over a few values, each against the same-budget control, on validation.

The generic knob study: one ``compatlm demo`` (library call) on the default family over seeds
0..N-1 with ``select.grid = {<knob>: <values>}`` and every other setting the demo's (mask
``student_wrong``, T = 1, λ = 1, compat budget 2 epochs at lr 1e-3, unless overridden). A knob
that changes which steps or tokens are trained (a budget knob: ``compat_epochs``, ``compat_lr``,
``compat_mask_prompt``, ``compat_init``) gets one ``continue_ce`` per value; any other knob
shares one. Every number is read from the seeds' selection files, i.e. the **validation**
split. Per value: Δ%NFR vs new of MUSCLE and of its control, MUSCLE − control (seed-level
t-interval of per-seed differences, tasks averaged per seed first) with its verdict, accuracy
change, seeds within the floor, teacher_old share; and each value minus the first value.

Temperature (the committed run; resumable — rerun the same command to continue)::

    .venv/bin/python bench/muscle_knob.py --knob temperature --values 1 2 4 --seeds 5 \\
        --out runs/bench-temperature --name muscle_temperature

Smoke run (quick family, 2 seeds, result in a temp file, verdicts meaningless)::

    .venv/bin/python bench/muscle_knob.py --knob temperature --values 1 2 --quick
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import knob_study as ks
from common import setup_logging


def parse_value(text: str) -> Any:
    """A grid value from the command line: JSON (numbers, true/false) or else the bare string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def value_key(value: Any) -> str:
    """A value as the selection names it (``true`` / ``2.0`` / ``fresh``)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def make_point_key(knob: str, values: list[Any], budget: bool):
    """``<knob>/<value>`` of a grid point; its control ``continue_ce/<value>`` for a budget
    knob (the validation role the demo gives it, :func:`control_role`), else the one
    ``continue_ce``."""
    from compatlm.demo.selection import control_role

    controls = {control_role({knob: v}): value_key(v) for v in values}

    def key(p: dict[str, Any]) -> str:
        if p["kind"] == "control":
            return f"continue_ce/{controls[p['name']]}" if budget else "continue_ce"
        return f"{knob}/{value_key(p['knobs'][knob])}"

    return key


def verdicts(summary: dict[str, Any], knob: str, values: list[Any], budget: bool) -> dict[str, Any]:
    avg = summary["averaged_over_tasks"]
    by_value: dict[str, Any] = {}
    for v in values:
        point = f"{knob}/{value_key(v)}"
        control = f"continue_ce/{value_key(v)}" if budget else "continue_ce"
        if (row := ks.versus_control(summary, point, control)) is not None:
            by_value[value_key(v)] = row
    first = f"{knob}/{value_key(values[0])}"
    minus_first = {
        value_key(v): {
            "delta_nfr_points": ks.paired_points(avg, f"{knob}/{value_key(v)}", first),
            "accuracy_points": ks.paired_points(
                avg, f"{knob}/{value_key(v)}", first, "accuracy_change_points"
            ),
        }
        for v in values[1:]
        if f"{knob}/{value_key(v)}" in avg and first in avg
    }
    return {"by_value": by_value, f"minus_{value_key(values[0])}": minus_first}


def main() -> None:
    from compatlm.demo.selection import BUDGET_KNOBS, KNOBS

    ap = ks.study_parser(__doc__, default_seeds=5)
    ap.add_argument("--knob", required=True, choices=list(KNOBS))
    ap.add_argument("--values", nargs="+", required=True, type=parse_value)
    ap.add_argument("--name", default=None, help="result file name (default muscle_<knob>)")
    ap.add_argument("overrides", nargs="*", help="demo config overrides, e.g. mask=old_correct")
    args = ap.parse_args()
    setup_logging()
    if len(set(map(value_key, args.values))) != len(args.values):
        raise SystemExit(f"--values: a value is given twice: {args.values}")

    name = args.name or f"muscle_{args.knob}"
    budget = args.knob in BUDGET_KNOBS
    cfg, seeds, out, machine = ks.demo_setup(
        args, {args.knob: args.values}, args.overrides, name.removeprefix("muscle_")
    )
    values = cfg.select.grid[args.knob]  # as the demo validated them (the names it writes)
    key = make_point_key(args.knob, values, budget)
    doc, _, summary = ks.run_study(cfg, out, seeds, args.tasks, key, "muscle_knob")
    t = cfg.training
    doc |= {
        "knob": args.knob,
        "values": values,
        "budget_knob": budget,
        "overrides": args.overrides,
        "settings": {
            "mask": cfg.mask,
            "temperature": cfg.temperature,
            "kd_weight": cfg.kd_weight,
            "epochs": t.compat_epochs,
            "lr": t.compat_lr,
        },
        "verdicts": verdicts(summary, args.knob, values, budget),
    }
    ks.finish_study(name, args.quick, doc, machine)
    print(json.dumps(doc["verdicts"], indent=1))


if __name__ == "__main__":
    main()
