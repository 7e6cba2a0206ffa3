"""How many of an update's negative flips are retraining noise: old vs old across adapter seeds.

A seed of the demo trains the old and the new task adapter with that seed on a fixed pair of
bases. Two *old* adapters of different seeds are the same model version retrained, so the
negative flips between them (old_t wrong where old_s is right) are what retraining alone does:
no base update is involved. This script reads the predictions a finished multi-seed demo wrote
(no training, no model) through :mod:`compatlm.demo.stability` (which the demo's
``evidence.json`` uses for the test split) and puts three NFRs side by side, per task and split:

- ``update``: NFR of new_s vs old_s (the flips the demo reports), per seed s;
- ``retrain_old``: NFR of old_t vs old_s, averaged over t ≠ s, per seed s;
- ``retrain_new``: the same between new adapters.

and decomposes each role's negative flips by how robustly the old *version* knows the instance:
an instance is ``old_stable`` when the old adapters of every seed answer it correctly. A flip
there is a regression of the version (every retrained old model gets it right, this model does
not); a flip on the other instances (some old seed already misses them) is one retraining could
undo or cause. Per role (new, and every candidate the demo evaluated in all seeds, e.g. MUSCLE
and ``continue_ce``): its NFR vs old_s split into the stable and the unstable part, each with
numerator and denominator (all instances), and its Δ% vs new on each part.

Statistics: seeds are the level. Per seed one value (the retrain values average over the other
seeds, so seed values share adapters and their t-interval is somewhat optimistic); mean and 95%
t-interval over seeds. The decomposition reads old predictions of every seed on the same split;
it describes the family and selects nothing.

The committed results read the 5-seed runs of ``muscle_init.py`` and ``muscle_repair_mask.py``
(default family, hellaswag + piqa; both rebuild the demo's old and new adapters, identically)::

    .venv/bin/python bench/flip_noise.py --demo runs/bench-init
    .venv/bin/python bench/flip_noise.py --demo runs/bench-repair --name flip_noise_repair

Smoke run (first 2 seeds, result in a temp file)::

    .venv/bin/python bench/flip_noise.py --demo runs/bench-init --quick
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import default_out, demo_seeds, machine_info, portable, write_result

from compatlm.demo.stability import load_task, task_stability
from compatlm.errors import CompatlmError

SPLITS = {"validation": "validation", "test": "eval"}  # split -> directory in a seed run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True, help="a finished multi-seed demo directory")
    ap.add_argument("--tasks", nargs="+", default=None, help="default: every task of the demo")
    ap.add_argument("--quick", action="store_true", help="first 2 seeds, temp result")
    ap.add_argument("--name", default="flip_noise", help="result file name in bench/results")
    args = ap.parse_args()

    seeds = demo_seeds(args.demo)[: 2 if args.quick else None]
    if len(seeds) < 2:
        raise SystemExit(f"{args.demo}: needs at least 2 seed directories, found {len(seeds)}")
    tasks = args.tasks or sorted(p.name for p in (args.demo / "seed0/eval/predictions").iterdir())
    try:
        results = {
            task: {
                split: task_stability(load_task(args.demo, seeds, task, run), seeds)
                for split, run in SPLITS.items()
            }
            for task in tasks
        }
    except CompatlmError as err:
        raise SystemExit(f"error: {err}") from None
    doc: dict[str, Any] = {
        "command": "python bench/flip_noise.py " + " ".join(sys.argv[1:]),
        "demo": str(portable(str(args.demo))),
        "seeds": seeds,
        "how": "NFR in percent of all instances of the split; per seed, then mean and 95%"
        " t-interval over seeds; old_stable = every seed's old adapter answers correctly",
        "tasks": results,
    }
    demo_json = args.demo / "demo.json"
    if demo_json.exists():
        doc["family_key"] = json.loads(demo_json.read_text(encoding="utf-8")).get("family_key")
    path = write_result(default_out(args.name, args.quick), doc, machine_info(threads=1))
    print(f"wrote {path}")
    for task, splits in doc["tasks"].items():
        for split, r in splits.items():
            s = r["seed_level"]
            print(
                f"{task} {split}: update NFR {s['update']['mean']:.2f}%, retrain old"
                f" {s['retrain_old']['mean']:.2f}% (ratio {s['retrain_old_over_update']['mean']:.2f}),"
                f" stable share {s['stable_share_of_update_flips']['mean']:.2f}"
            )


if __name__ == "__main__":
    main()
