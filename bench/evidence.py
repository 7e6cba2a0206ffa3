"""Does validation-selected MUSCLE hold up over seeds? The demo over ≥ 5 seeds, with verdicts.

Runs the demo pipeline (library calls: ``compatlm.demo.pipeline.run_demo``) over seeds 0..N-1 on
one family: per seed and task MUSCLE is trained at every point of the selection grid, chosen on
the validation split (NFR vs old under an accuracy floor of new − 0.5 points), and evaluated
once on test beside old, new and the same-budget control ``continue_ce``. The demo writes
``evidence.json``; this script adds machine facts, the command that reproduces the result and a
``verdicts`` block, into ``bench/results/evidence.json``:

- ``selected_muscle_cuts_nfr`` — the validation-selected MUSCLE cuts NFR vs new by ≥ 30 %
  averaged over tasks (Δ%NFR ≤ −30), with the cluster-bootstrap CI and the seed-level
  t-interval both excluding 0, accuracy ≥ new − 0.5 points averaged over tasks, Δ%NFR at least
  15 points below continue_ce's, and a MUSCLE setting past the floor in every (seed, task);
- ``flips_while_accuracy_rises`` (paper §1): on every task the new model's accuracy rises over
  old's (mean over seeds) while its NFR vs old is above 0 in every seed;
- ``muscle_helps_most_when_accuracies_are_close`` (paper §5): Spearman correlation between
  |acc_old − acc_new| and MUSCLE's Δ%NFR over the (seed, task) cells is positive with p < 0.05
  (a bigger gap, a smaller cut);
- ``compat_gain_exceeds_extra_training`` — MUSCLE's Δ%NFR below continue_ce's, seed by seed
  (one-sample t-interval of the differences below 0) and over test groups (cluster-bootstrap CI
  below 0).

Full run (≥ 5 seeds, default family; about 5–10 min per seed on two cores, resumable — rerun the
same command to continue):

    .venv/bin/python bench/evidence.py --seeds 5 --out runs/bench-evidence
    .venv/bin/python bench/evidence.py --seeds 5 --out runs/bench-evidence-grid \\
        --grid '{mask: [student_wrong, old_correct], kd_weight: [0.5, 1.0]}' --name evidence_grid

Smoke run (quick family, 2 seeds, result in a temp file, verdicts meaningless):

    .venv/bin/python bench/evidence.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    default_out,
    machine_info,
    set_threads,
    setup_logging,
    wait_for_quiet,
    write_result,
)

NFR_CUT_PERCENT = -30.0  # Δ%NFR of the selected MUSCLE vs new, averaged over tasks
ACCURACY_POINTS = -0.5  # accuracy vs new, points, averaged over tasks
BEATS_CONTROL_POINTS = -15.0  # Δ%NFR(muscle) − Δ%NFR(continue_ce), points
MIN_SEEDS = 5


def _cond(what: str, value: Any, passed: bool, **extra: Any) -> dict[str, Any]:
    return {"condition": what, "value": value, "passed": bool(passed), **extra}


def _upper_below_zero(ci: list[float] | None) -> bool:
    return ci is not None and ci[1] < 0


def _verdict(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    ok = all(c["passed"] for c in conditions)
    return {"verdict": "confirmed" if ok else "not confirmed", "conditions": conditions}


def target_nfr_cut(ev: dict[str, Any]) -> dict[str, Any]:
    avg = ev["averaged_over_tasks"]
    boot = avg["cluster_bootstrap"]["muscle_vs_new"]
    level = avg["delta_nfr_percent"].get("muscle_vs_new", {})
    acc = avg["accuracy_change_points"].get("muscle", {})
    diff = avg["delta_nfr_percent_muscle_minus_continue_ce"]
    missing = [m for m in ev["missing"] if m["role"] == "muscle"]
    value = boot["value"]
    # A task without MUSCLE in some seed drops out of the averages; a cut averaged over the
    # tasks that remain (possibly one) is not a cut "averaged over tasks".
    left_out = sorted(set(ev["tasks"]) - set(boot["tasks"]))
    return _verdict(
        [
            _cond(
                f"the averages below cover every task ({len(ev['tasks'])})",
                f"{len(boot['tasks'])} of {len(ev['tasks'])} tasks",
                not left_out,
                left_out=left_out,
            ),
            _cond(
                f"Δ%NFR vs new averaged over tasks <= {NFR_CUT_PERCENT}",
                value,
                value is not None and value <= NFR_CUT_PERCENT,
                tasks=boot["tasks"],
            ),
            _cond(
                "cluster-bootstrap CI of that Δ%NFR excludes 0 (below it)",
                boot["ci"],
                _upper_below_zero(boot["ci"]),
                resamples=boot["resamples"],
            ),
            _cond(
                "seed-level 95% t-interval of that Δ%NFR excludes 0 (below it)",
                level.get("ci"),
                _upper_below_zero(level.get("ci")),
                n_seeds=level.get("n_seeds"),
            ),
            _cond(
                f"accuracy vs new averaged over tasks >= {ACCURACY_POINTS} points",
                acc.get("mean"),
                acc.get("mean") is not None and acc["mean"] >= ACCURACY_POINTS,
            ),
            _cond(
                f"Δ%NFR(muscle) − Δ%NFR(continue_ce) <= {BEATS_CONTROL_POINTS} points",
                diff.get("mean"),
                diff.get("mean") is not None and diff["mean"] <= BEATS_CONTROL_POINTS,
                tasks=avg["tasks"].get("muscle_minus_continue_ce"),
            ),
            _cond(
                "a MUSCLE setting passed the validation floor in every (seed, task)",
                f"{len(missing)} cells without MUSCLE",
                not missing,
                missing=missing,
            ),
        ]
    )


def finding_flips_while_accuracy_rises(ev: dict[str, Any]) -> dict[str, Any]:
    conditions = []
    for task in ev["tasks"]:
        cells = [ev["per_seed"][str(s)][task] for s in ev["seeds"]]
        gains = [
            100.0 * (c["roles"]["new"]["accuracy"]["value"] - c["accuracy_old"]["value"])
            for c in cells
        ]
        flips = [c["roles"]["new"]["nfr"]["numerator"] for c in cells]
        mean_gain = sum(gains) / len(gains)
        conditions.append(
            _cond(
                f"{task}: accuracy rises (mean over seeds, points) while new has negative flips"
                " in every seed",
                {"accuracy_gain_points": mean_gain, "negative_flips_per_seed": flips},
                mean_gain > 0 and min(flips) > 0,
            )
        )
    return _verdict(conditions)


def finding_close_accuracies(ev: dict[str, Any]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    xs, ys, cells = [], [], []
    for s in ev["seeds"]:
        for task in ev["tasks"]:
            c = ev["per_seed"][str(s)][task]
            delta = c["delta_nfr_percent"].get("muscle_vs_new", {}).get("value")
            if delta is None:
                continue
            gap = 100.0 * abs(c["accuracy_old"]["value"] - c["roles"]["new"]["accuracy"]["value"])
            xs.append(gap)
            ys.append(delta)
            cells.append({"seed": s, "task": task, "gap_points": gap, "delta_nfr_percent": delta})
    rho = p = None
    if len(xs) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
        res = spearmanr(xs, ys)
        rho, p = float(res.statistic), float(res.pvalue)
    return _verdict(
        [
            _cond(
                "Spearman rho(|acc_old − acc_new|, Δ%NFR of MUSCLE) > 0 with p < 0.05 over"
                " (seed, task) cells",
                {"rho": rho, "p_value": p, "n_cells": len(xs)},
                rho is not None and rho > 0 and p is not None and p < 0.05,
                cells=cells,
            )
        ]
    )


def finding_compat_gain(ev: dict[str, Any]) -> dict[str, Any]:
    avg = ev["averaged_over_tasks"]
    seeds = avg["delta_nfr_percent_muscle_minus_continue_ce"]
    boot = avg["cluster_bootstrap"]["muscle_minus_continue_ce"]
    return _verdict(
        [
            _cond(
                "Δ%NFR(muscle) − Δ%NFR(continue_ce): seed-level t-interval below 0",
                {"mean": seeds.get("mean"), "ci": seeds.get("ci"), "p_value": seeds.get("p_value")},
                _upper_below_zero(seeds.get("ci")),
                n_seeds=seeds.get("n_seeds"),
            ),
            _cond(
                "the same difference: cluster-bootstrap CI below 0",
                {"value": boot["value"], "ci": boot["ci"]},
                _upper_below_zero(boot["ci"]),
            ),
        ]
    )


def verdicts(ev: dict[str, Any], *, quick: bool) -> dict[str, Any]:
    n = len(ev["seeds"])
    return {
        "grade": {
            "n_seeds": n,
            "enough_seeds": n >= MIN_SEEDS,
            "quick_family": quick,
            "note": None
            if n >= MIN_SEEDS and not quick
            else f"smoke run ({n} seeds{', quick family' if quick else ''}): not evidence",
        },
        "selected_muscle_cuts_nfr": target_nfr_cut(ev),
        "flips_while_accuracy_rises": finding_flips_while_accuracy_rises(ev),
        "muscle_helps_most_when_accuracies_are_close": finding_close_accuracies(ev),
        "compat_gain_exceeds_extra_training": finding_compat_gain(ev),
    }


def selections(ev: dict[str, Any]) -> dict[str, Any]:
    """Per task: how often each grid point won, and the seeds with no point past the floor."""
    out: dict[str, Any] = {}
    for task in ev["tasks"]:
        wins: dict[str, int] = {}
        none = []
        for s in ev["seeds"]:
            sel = ev["per_seed"][str(s)][task]["selection"] or {}
            if sel.get("winner"):
                wins[sel["winner"]["role"]] = wins.get(sel["winner"]["role"], 0) + 1
            else:
                none.append(s)
        out[task] = {"wins": wins, "seeds_without_winner": none}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None, help=f"default {MIN_SEEDS} (--quick: 2)")
    ap.add_argument("--family", default="default", choices=("default", "continued", "legacy"))
    ap.add_argument("--grid", default=None, help="selection grid as YAML (knob: [values])")
    ap.add_argument("--quick", action="store_true", help="quick family, 2 seeds, temp result")
    ap.add_argument("--out", type=Path, default=None, help="demo directory (resumable)")
    ap.add_argument("--overwrite", action="store_true", help="start the demo directory over")
    ap.add_argument("--name", default="evidence", help="result file name in bench/results")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="demo config overrides (key=value)")
    args = ap.parse_args()
    setup_logging()

    from compatlm.config import apply_overrides, build_config
    from compatlm.demo.pipeline import DemoConfig, quick_defaults, run_demo

    n_seeds = args.seeds or (2 if args.quick else MIN_SEEDS)
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="compatlm_evidence_")) / "demo"
        if args.quick
        else Path("runs/bench-evidence")
    )
    data: dict[str, Any] = quick_defaults() if args.quick else {}
    data |= {"seeds": list(range(n_seeds)), "quick": args.quick, "family": args.family}
    overrides = ["runtime.progress=false", *args.overrides]
    if args.grid is not None:
        overrides.append(f"select.grid={args.grid}")
    cfg = build_config(DemoConfig, apply_overrides(data, overrides), "demo")

    set_threads(args.threads)
    load = wait_for_quiet(skip=args.quick)
    machine = machine_info(threads=args.threads)
    t0 = time.perf_counter()
    run_demo(cfg, out, overwrite=args.overwrite)
    seconds = time.perf_counter() - t0
    ev = json.loads((out / "evidence.json").read_text(encoding="utf-8"))
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    doc = {
        "command": f".venv/bin/python bench/evidence.py {argv}".strip(),
        "family": args.family,
        "seeds": cfg.seeds,
        "select": cfg.select.model_dump(mode="json"),
        "demo_dir": str(out),
        "wall_seconds": round(seconds, 1),
        "load": load,
        "threads": {"torch": args.threads, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "verdicts": verdicts(ev, quick=args.quick),
        "selections": selections(ev),
        "evidence": ev,
    }
    path = write_result(default_out(args.name, args.quick), doc, machine)
    print(f"wrote {path} ({seconds:.0f} s)")
    for name, v in doc["verdicts"].items():
        if name != "grade":
            print(f"{name}: {v['verdict']}")


if __name__ == "__main__":
    main()
