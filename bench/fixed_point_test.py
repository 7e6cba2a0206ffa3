"""One look at test for a MUSCLE setting a knob study chose on validation.

A knob study (``muscle_knob.py``, ``muscle_init.py``, ...) ranks settings on the **validation**
split only; inside its demo each seed then evaluates on test whichever point won *that seed's*
validation, so the test look mixes settings. This script takes the one setting the study's
result picked (e.g. ``muscle.temperature_1``) and evaluates it, with old, new and its own
same-budget control, on the test split of every seed: the adapters are the study's own (no
training), the evaluation is new and written beside them. The test numbers then go through the
demo's evidence machinery (:mod:`compatlm.demo.evidence`): per task and averaged over tasks,
Δ%NFR vs new and vs ``continue_ce`` with seed-level t-intervals and tests, the cluster bootstrap
over test groups, and the retraining-noise decomposition (:mod:`compatlm.demo.stability`).

The committed run (temperature 1, chosen in ``results/muscle_temperature.json``)::

    .venv/bin/python bench/fixed_point_test.py --demo runs/bench-temperature \\
        --point muscle.temperature_1 --name muscle_temperature_test

Layout: ``<demo>/fixed/<point>/seed<S>/eval`` is an ordinary eval run (roles old, new,
``muscle`` = the point, ``continue_ce`` = its control), resumable like every eval run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    default_out,
    demo_seeds,
    machine_info,
    set_threads,
    setup_logging,
    write_result,
)


def look_models(selection: dict[str, Any], point: str) -> dict[str, str]:
    """old, new, the point as ``muscle`` and its same-budget control, from a selection file."""
    by_name = {p["name"]: p for p in selection["points"]}
    if point not in by_name:
        known = ", ".join(n for n in by_name if n.startswith("muscle."))
        raise SystemExit(
            f"{selection['task']}: no point {point!r} in the selection; known: {known}"
        )
    budget = by_name[point]["knobs"] or {}
    from compatlm.demo.selection import budget_of, control_role

    control = control_role(budget_of(budget))
    return {
        "old": selection["old"]["spec"],
        "new": selection["new"]["spec"],
        "muscle": by_name[point]["spec"],
        "continue_ce": by_name[control]["spec"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True, help="a knob study's demo directory")
    ap.add_argument("--point", required=True, help="validation role, e.g. muscle.temperature_1")
    ap.add_argument("--name", required=True, help="result file name in bench/results")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="result to a temp file")
    args = ap.parse_args()
    setup_logging()

    from compatlm.config import EvalConfig, RuntimeConfig
    from compatlm.demo.evidence import write_evidence
    from compatlm.demo.family import build_or_load_family
    from compatlm.demo.recipe import FamilyRecipe
    from compatlm.demo.steps import task_cfg
    from compatlm.eval.pipeline import run_eval

    set_threads(args.threads)
    machine = machine_info(threads=args.threads)
    conf = json.loads((args.demo / "demo.json").read_text(encoding="utf-8"))["config"]
    family = build_or_load_family(FamilyRecipe.named(conf["family"], quick=conf["quick"]))
    seeds = demo_seeds(args.demo)
    tasks = conf["tasks"]
    root = args.demo / "fixed" / args.point
    t0 = time.perf_counter()
    for seed in seeds:
        cfgs = []
        for task in tasks:
            sel_path = args.demo / f"seed{seed}" / "selection" / f"{task}.json"
            models = look_models(json.loads(sel_path.read_text(encoding="utf-8")), args.point)
            cfgs.append(task_cfg(family, task, "test").with_models(models))
        ecfg = EvalConfig(
            old=str(family.old_dir),
            new=str(family.new_dir),
            tasks=cfgs,
            runtime=RuntimeConfig(seed=seed, progress=False),
        )
        run_eval(ecfg, root / f"seed{seed}" / "eval", resume=True)
    seconds = time.perf_counter() - t0
    evidence = json.loads(write_evidence(root, seeds, tasks).read_text(encoding="utf-8"))
    avg = evidence["averaged_over_tasks"]
    doc = {
        "command": "python bench/fixed_point_test.py " + " ".join(sys.argv[1:]),
        "point": args.point,
        "seeds": seeds,
        "tasks": tasks,
        "split": "test",
        "wall_seconds": round(seconds, 1),
        "per_task": {
            t: {"delta_nfr_percent": v["delta_nfr_percent"], "roles": v["roles"]}
            for t, v in evidence["per_task"].items()
        },
        "averaged_over_tasks": {
            "delta_nfr_percent": avg["delta_nfr_percent"],
            "accuracy_change_points": avg["accuracy_change_points"],
            "muscle_minus_continue_ce_points": avg["delta_nfr_percent_muscle_minus_continue_ce"],
            "cluster_bootstrap": avg["cluster_bootstrap"],
        },
        "stability": evidence["stability"],
    }
    path = write_result(default_out(args.name, args.quick), doc, machine)
    print(f"wrote {path} ({seconds:.0f} s)")
    print(json.dumps(doc["averaged_over_tasks"]["delta_nfr_percent"], indent=1)[:2000])


if __name__ == "__main__":
    main()
