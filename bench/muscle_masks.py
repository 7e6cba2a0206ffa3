"""MUSCLE's mask ablation (paper Table 7) and other compatibility-training variants on the demo.

For one demo task (default ``demo_piqa``, multiple choice) and seeds 0..N-1, the old and new task
adapters are trained once per seed; then one MUSCLE compatibility adapter per variant is trained
on the same pair and evaluated against the old model on the test split. A variant is a mask
(``student_wrong``, ``old_correct``, ``old_only``, ``token_likelihood``, ``sequence_likelihood``)
or any set of demo-config overrides (``--variant NAME key=value ...``). Per variant: accuracy,
NFR, PFR (mean ± 95% t half-width over seeds), Δ%NFR against the vanilla new adapter, and the
McNemar p of the candidate vs the vanilla new adapter, into ``bench/results/muscle_masks.json``.

    .venv/bin/python bench/muscle_masks.py                          # 5 masks × 3 seeds, piqa
    .venv/bin/python bench/muscle_masks.py --task demo_hellaswag --name muscle_masks_hellaswag
    .venv/bin/python bench/muscle_masks.py --masks student_wrong \\
        --variant lr3e-3_4ep training.compat_lr=0.003 training.compat_epochs=4

Every variant is an ordinary ``compatlm demo`` run directory under ``--work`` (resumable), with
the old/new adapters linked from the first variant's so all variants share the same vanilla pair.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, machine_info, write_result

MASKS = ("student_wrong", "old_correct", "old_only", "token_likelihood", "sequence_likelihood")
KEEP = ("acc_old", "acc", "nfr", "pfr", "delta_nfr", "delta_nfr_percent", "p_vs_new")


def link_vanilla(first: Path, out: Path, seeds: list[int], task: str) -> None:
    """Reuse the first variant's old/new task adapters (and their done.json markers)."""
    for seed in seeds:
        for role in ("old", "new"):
            src = first / f"seed{seed}" / "adapters" / task / role
            dst = out / f"seed{seed}" / "adapters" / task / role
            if src.is_dir() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src.resolve(), target_is_directory=True)


def run_variant(name: str, overrides: list[str], args, first: Path | None) -> dict:
    from compatlm.config import apply_overrides, build_config
    from compatlm.demo.pipeline import DemoConfig, run_demo

    out = args.work / name
    seeds = list(range(args.seeds))
    data = {"tasks": [args.task], "seeds": seeds, "alternatives": [], "family": args.family}
    cfg = build_config(
        DemoConfig, apply_overrides(data, ["runtime.progress=false", *overrides]), "demo"
    )
    if first is not None:
        link_vanilla(first, out, seeds, args.task)
    t0 = time.perf_counter()
    run_demo(cfg, out)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    entry = summary["tasks"][args.task]
    print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return {
        "overrides": overrides,
        "muscle": {k: entry["muscle"].get(k) for k in KEEP},
        "vanilla_new": {k: entry["new"].get(k) for k in KEEP},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="demo_piqa")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--family", default="default", choices=("default", "continued"))
    ap.add_argument("--masks", nargs="*", default=list(MASKS), help="mask variants to run")
    ap.add_argument(
        "--variant",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME KEY=VALUE",
        help="an extra variant: a name, then demo-config overrides",
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/compatlm_muscle_masks"))
    ap.add_argument("--name", default="muscle_masks", help="result file name in bench/results")
    args = ap.parse_args()

    variants = [(m, [f"mask={m}"]) for m in args.masks]
    variants += [(v[0], v[1:]) for v in args.variant]
    machine = machine_info(threads=int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    t0 = time.perf_counter()
    results, first = {}, None
    for name, overrides in variants:
        results[name] = run_variant(name, overrides, args, first)
        first = first or args.work / name
    argv = " ".join(sys.argv[1:])
    doc = {
        "command": f".venv/bin/python bench/muscle_masks.py {argv}".strip(),
        "task": args.task,
        "family": args.family,
        "seeds": list(range(args.seeds)),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "how": "demo defaults (compat lr 1e-3, 2 epochs, T=2, kd_weight 1, teacher_old cached)"
        " unless a variant overrides them; Δ%NFR = (NFR_candidate − NFR_new) / NFR_new, mean"
        " over seeds; p_vs_new = exact McNemar of candidate vs vanilla new adapter",
        "variants": results,
    }
    path = write_result(RESULTS_DIR / f"{args.name}.json", doc, machine)
    print(f"wrote {path}")
    for name, r in results.items():
        m = r["muscle"]
        print(
            f"{name:22s} acc {m['acc']['mean']:.4f} nfr {m['nfr']['mean']:.4f}"
            f" Δ%NFR {m['delta_nfr_percent']}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
