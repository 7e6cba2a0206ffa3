"""How many of an update's negative flips are retraining noise: old vs old across adapter seeds.

A seed of the demo trains the old and the new task adapter with that seed on a fixed pair of
bases. Two *old* adapters of different seeds are the same model version retrained, so the
negative flips between them (old_t wrong where old_s is right) are what retraining alone does:
no base update is involved. This script reads the predictions a finished multi-seed demo wrote
(no training, no model) and puts three NFRs side by side, per task and split:

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

from common import default_out, machine_info, portable, write_result
from knob_study import t_interval

SPLITS = {"validation": "validation", "test": "eval"}  # split -> directory in a seed run


def read_correct(path: Path) -> dict[str, bool]:
    """``{example_id: correct}`` of one prediction file (schema-checked by compatlm on write)."""
    out: dict[str, bool] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("correct"), bool):
            raise SystemExit(f"{path}:{n}: field 'correct': expected true/false")
        out[row["example_id"]] = row["correct"]
    return out


def seeds_of(demo: Path) -> list[int]:
    return sorted(int(p.name[4:]) for p in demo.glob("seed*") if p.name[4:].isdigit())


def load(demo: Path, seeds: list[int], task: str, split: str) -> dict[str, dict[int, Any]]:
    """``{role: {seed: {id: correct}}}`` for the roles every seed evaluated on this split."""
    by_role: dict[str, dict[int, Any]] = {}
    for s in seeds:
        d = demo / f"seed{s}" / SPLITS[split] / "predictions" / task
        for f in sorted(d.glob("*.jsonl")):
            by_role.setdefault(f.stem, {})[s] = read_correct(f)
    missing = [r for r in ("old", "new") if len(by_role.get(r, {})) != len(seeds)]
    if missing:
        raise SystemExit(f"{demo}: {task}/{split}: no {missing[0]}.jsonl in some seed")
    return {r: v for r, v in by_role.items() if len(v) == len(seeds)}


def nfr_count(ref: dict[str, bool], other: dict[str, bool], ids: list[str]) -> int:
    """Instances ``ref`` answers correctly and ``other`` does not."""
    return sum(ref[i] and not other[i] for i in ids)


def rate(num: int, den: int) -> dict[str, Any]:
    return {"value": num / den if den else None, "numerator": num, "denominator": den}


def _change(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else 100.0 * (value - base) / base


def task_split(by_role: dict[str, dict[int, Any]], seeds: list[int]) -> dict[str, Any]:
    old, new = by_role["old"], by_role["new"]
    ids = sorted(set.intersection(*(set(old[s]) for s in seeds)))
    n = len(ids)
    stable = [i for i in ids if all(old[s][i] for s in seeds)]
    stable_set = set(stable)
    unstable = [i for i in ids if i not in stable_set]
    per_seed: dict[int, dict[str, Any]] = {}
    for s in seeds:
        others = [t for t in seeds if t != s]
        cell: dict[str, Any] = {
            "update": rate(nfr_count(old[s], new[s], ids), n),
            "retrain_old": rate(sum(nfr_count(old[s], old[t], ids) for t in others), n * len(others)),
            "retrain_new": rate(sum(nfr_count(new[s], new[t], ids) for t in others), n * len(others)),
            "roles": {},
        }  # fmt: skip
        for role, preds in by_role.items():
            if role == "old":
                continue
            cell["roles"][role] = {
                "nfr_stable": rate(nfr_count(old[s], preds[s], stable), n),
                "nfr_unstable": rate(nfr_count(old[s], preds[s], unstable), n),
            }
        per_seed[s] = cell
    return {
        "n": n,
        "old_stable": rate(len(stable), n),
        "per_seed": {str(s): c for s, c in per_seed.items()},
        "summary": summarize(per_seed, [r for r in by_role if r != "old"]),
    }


def summarize(per_seed: dict[int, dict[str, Any]], roles: list[str]) -> dict[str, Any]:
    """Means and seed-level t-intervals of the per-seed values (percent of all instances)."""

    def pct(c: dict[str, Any]) -> float | None:
        return None if c["value"] is None else 100.0 * c["value"]

    cells = list(per_seed.values())
    out: dict[str, Any] = {
        k: t_interval([pct(c[k]) for c in cells]) for k in ("update", "retrain_old", "retrain_new")
    }
    out["retrain_old_over_update"] = t_interval(
        [c["retrain_old"]["value"] / c["update"]["value"] for c in cells if c["update"]["value"]]
    )
    new = [c["roles"]["new"] for c in cells]
    out["stable_share_of_update_flips"] = t_interval(
        [
            r["nfr_stable"]["numerator"]
            / (r["nfr_stable"]["numerator"] + r["nfr_unstable"]["numerator"])
            for r in new
            if r["nfr_stable"]["numerator"] + r["nfr_unstable"]["numerator"]
        ]
    )
    out["roles"] = {}
    for role in roles:
        rows = [c["roles"][role] for c in cells]
        out["roles"][role] = {
            part: {
                "nfr_percent": t_interval([pct(r[part]) for r in rows]),
                "delta_vs_new_percent": t_interval(
                    [
                        _change(r[part]["value"], b[part]["value"])
                        for r, b in zip(rows, new, strict=True)
                    ]
                ),
            }
            for part in ("nfr_stable", "nfr_unstable")
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True, help="a finished multi-seed demo directory")
    ap.add_argument("--tasks", nargs="+", default=None, help="default: every task of the demo")
    ap.add_argument("--quick", action="store_true", help="first 2 seeds, temp result")
    ap.add_argument("--name", default="flip_noise", help="result file name in bench/results")
    args = ap.parse_args()

    seeds = seeds_of(args.demo)[: 2 if args.quick else None]
    if len(seeds) < 2:
        raise SystemExit(f"{args.demo}: needs at least 2 seed directories, found {len(seeds)}")
    tasks = args.tasks or sorted(p.name for p in (args.demo / "seed0/eval/predictions").iterdir())
    doc: dict[str, Any] = {
        "command": "python bench/flip_noise.py " + " ".join(sys.argv[1:]),
        "demo": str(portable(str(args.demo))),
        "seeds": seeds,
        "how": "NFR in percent of all instances of the split; per seed, then mean and 95%"
        " t-interval over seeds; old_stable = every seed's old adapter answers correctly",
        "tasks": {
            task: {
                split: task_split(load(args.demo, seeds, task, split), seeds) for split in SPLITS
            }
            for task in tasks
        },
    }
    demo_json = args.demo / "demo.json"
    if demo_json.exists():
        doc["family_key"] = json.loads(demo_json.read_text(encoding="utf-8")).get("family_key")
    path = write_result(default_out(args.name, args.quick), doc, machine_info(threads=1))
    print(f"wrote {path}")
    for task, splits in doc["tasks"].items():
        for split, r in splits.items():
            s = r["summary"]
            print(
                f"{task} {split}: update NFR {s['update']['mean']:.2f}%, retrain old"
                f" {s['retrain_old']['mean']:.2f}% (ratio {s['retrain_old_over_update']['mean']:.2f}),"
                f" stable share {s['stable_share_of_update_flips']['mean']:.2f}"
            )


if __name__ == "__main__":
    main()
