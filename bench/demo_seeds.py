"""The demo's quality and time targets: run `compatlm demo` over seeds and record the result.

Records wall time (cold = empty family cache, warm = cached family), each task's old/new/MUSCLE
accuracy and negative flip rates (mean ± 95% t half-width over seeds), the mean Δ%NFR of MUSCLE
against the vanilla update and the McNemar p of MUSCLE vs new, into
``bench/results/demo_seeds.json`` with machine facts.

    .venv/bin/python bench/demo_seeds.py --seeds 3                  # warm family cache
    .venv/bin/python bench/demo_seeds.py --seeds 1 --cold           # empty cache: cold timing
    .venv/bin/python bench/demo_seeds.py --seeds 3 -- mask=old_correct   # extra demo overrides
    .venv/bin/python bench/demo_seeds.py --seeds 3 --family continued --name demo_continued \
        --out runs/bench-continued           # + port/interpolate/merge (same-shape bases)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, machine_info, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="build the family in an empty cache")
    ap.add_argument("--out", default=None, help="demo output dir (default: a temp dir)")
    ap.add_argument("--name", default="demo_seeds", help="result file name in bench/results")
    ap.add_argument("--family", default="default", choices=("default", "continued", "legacy"))
    ap.add_argument("overrides", nargs="*", help="demo config overrides (key=value)")
    args = ap.parse_args()

    env = dict(os.environ)
    if args.cold:
        env["COMPATLM_CACHE"] = tempfile.mkdtemp(prefix="compatlm_cold_")
    out = Path(args.out or tempfile.mkdtemp(prefix="compatlm_demo_")) / "demo"
    cmd = [
        sys.executable, "-m", "compatlm", "demo", "--seeds", str(args.seeds), "--out", str(out),
        "--family", args.family, "--overwrite", "runtime.progress=false", *args.overrides,
    ]  # fmt: skip
    machine = machine_info(threads=int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    # Largest resident set of any finished child (the demo, or a pre-training worker it ran).
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    doc = {
        "command": " ".join(["compatlm", *cmd[3:]]),
        "cold_cache": args.cold,
        "wall_seconds": round(seconds, 1),
        "peak_rss_mb_largest_process": round(peak_rss_mb, 1),
        "seeds": summary["seeds"],
        "overall": summary["overall"],
        "tasks": summary["tasks"],
        "notes": summary.get("notes", []),
    }
    path = write_result(RESULTS_DIR / f"{args.name}.json", doc, machine)
    print(f"wrote {path} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
