"""`compatlm compare` on 2M instances: wall time, peak RSS, and where the time goes.

Builds two prediction files (roles old and new, 2,000,000 multiple-choice instances each, two
slices, 100,000 groups of ~20 correlated instances) in a temp dir, in compatlm's own schema-1
format (every field written, as ``compatlm eval`` does) or as minimal foreign lines
(``--format minimal``: example_id, correct, parsed, slice, group). Then:

1. runs ``compatlm compare OLD NEW --out DIR --bootstrap 1000`` in a subprocess and records its
   wall time and peak RSS (``os.wait4`` of that child). Linux carries a process's high-water
   RSS across ``exec``, so a child's peak is at least its parent's: the files are built in a
   separate child and torch (imported for the machine facts) is only imported after the runs;
2. re-runs the same comparison in a second subprocess with timers around its phases (load
   each file, ``compare_sets`` with the time inside ``measure`` — bootstrap and tests — counted
   apart, writing flips / metrics.json / reports) and records seconds and peak RSS after each.

Targets: < 1 GB peak RSS and < 60 s. Writes ``bench/results/compare_2m.json`` with machine
facts (``--quick``: 100k instances, 5k groups, a temp result file, no waiting for a quiet
machine).

    .venv/bin/python bench/compare_2m.py --format minimal    # bench/results/compare_2m.json
    .venv/bin/python bench/compare_2m.py --name compare_2m_full   # full lines (1.7 GB of files)
    .venv/bin/python bench/compare_2m.py --quick

Measured on the 2-core machine (quiet): minimal 23 s, 0.88 GB peak; full lines 52 s, 0.95 GB
(the row-object loader took 114 CPU-s and 7.3 GB for the minimal files). Most of the peak is
the report step holding every flip of the flips file as a dict (~0.6 GB for 273k flips); most
of the full-line time is JSON decoding (~5 us a line).
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

from common import default_out, last_json_line, machine_info, wait_for_quiet, write_result

REPO = Path(__file__).resolve().parents[1]
TARGET_RSS_MB = 1024
TARGET_SECONDS = 60.0


def _hex16(x: int) -> str:
    return f"{x:016x}"


def build_files(work: Path, n: int, n_groups: int, fmt: str, seed: int = 0) -> dict:
    """Write ``old.jsonl`` and ``new.jsonl``; returns the generating rates for the result file.

    Correctness is correlated within a group: each group has its own difficulty (the old
    model's chance of being right), and the update flips right→wrong with probability 0.08
    and wrong→right with 0.25, so flips cluster where groups are hard.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    group = rng.integers(0, n_groups, size=n)  # (N,) group of each instance
    difficulty = rng.beta(4.0, 2.0, size=n_groups)  # (G,) P(old right) per group
    old = rng.random(n) < difficulty[group]  # (N,)
    u = rng.random(n)
    new = np.where(old, u >= 0.08, u < 0.25)  # (N,)
    target = rng.integers(0, 4, size=n)  # (N,) gold choice
    wrong = (target + rng.integers(1, 4, size=n)) % 4  # (N,) a wrong choice
    for role, correct in (("old", old), ("new", new)):
        parsed = np.where(correct, target, wrong)
        with (work / f"{role}.jsonl").open("w", encoding="utf-8") as fh:
            lines = []
            for i in range(n):
                g, c, p, t = int(group[i]), bool(correct[i]), int(parsed[i]), int(target[i])
                row = {
                    "example_id": str(i),
                    "correct": c,
                    "parsed": p,
                    "slice": "even" if g % 2 == 0 else "odd",
                    "group": f"doc{g}",
                }
                if fmt == "compatlm":
                    lls = [-2.0 - 0.1 * k for k in range(4)]
                    lls[p] = -1.0
                    row = {
                        "schema_version": 1,
                        "task": "synthetic_mc",
                        "kind": "multiple_choice",
                        "role": role,
                        "model": f"m-{role}",
                        "example_id": row["example_id"],
                        "example_hash": _hex16(i),
                        "prompt_hash": _hex16(i * 7919),
                        "target": t,
                        "output": f" choice {p}",
                        "parsed": p,
                        "correct": c,
                        "score": 0.7 if c else 0.1,
                        "margin": 0.5,
                        "loglikelihoods": lls,
                        "choice_lengths": [9, 9, 9, 9],
                        "metric": "acc",
                        "slice": row["slice"],
                        "group": row["group"],
                    }
                lines.append(json.dumps(row))
                if len(lines) == 50_000:
                    fh.write("\n".join(lines) + "\n")
                    lines = []
            if lines:
                fh.write("\n".join(lines) + "\n")
    return {
        "accuracy_old": float(old.mean()),
        "accuracy_new": float(new.mean()),
        "negative_flip_rate": float((old & ~new).mean()),
        "positive_flip_rate": float((~old & new).mean()),
        "groups_present": int(np.unique(group).size),
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_phases(work: Path, bootstrap: int) -> None:
    """Phase-by-phase timing of one comparison (run in its own process; prints one JSON line).

    Runs the public ``compare_files`` with timers around the functions it calls: reading each
    file, ``compare_sets`` (and, inside it, ``measure``: bootstrap and tests), and writing
    flips, metrics.json and the reports.
    """
    t0 = time.perf_counter()
    import compatlm.eval.compare as compare_mod
    import compatlm.eval.compare_io as io_mod
    from compatlm.config import CompareConfig
    from compatlm.report import render_report

    imports = time.perf_counter() - t0
    calls: list[dict] = []

    def timed(module, name: str, label: str) -> None:
        inner = getattr(module, name)

        def wrapper(*a, **k):
            start, cpu = time.perf_counter(), _cpu_seconds()
            try:
                return inner(*a, **k)
            finally:
                calls.append(
                    {
                        "phase": label,
                        "seconds": round(time.perf_counter() - start, 2),
                        "cpu_seconds": round(_cpu_seconds() - cpu, 2),
                        "peak_rss_mb_so_far": round(_rss_mb()),
                    }
                )

        setattr(module, name, wrapper)

    timed(io_mod, "load_predictions", "load_file")
    timed(io_mod, "compare_sets", "compare_sets")
    timed(compare_mod, "measure", "measure (inside compare_sets)")
    timed(io_mod, "_write", "write_flips_metrics_reports")
    cfg = CompareConfig(bootstrap=bootstrap)
    start = time.perf_counter()
    doc = io_mod.compare_files(
        work / "old.jsonl", work / "new.jsonl", work / "phases_out", cfg, render=render_report
    )
    total = time.perf_counter() - start
    summed: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for c in calls:
        summed[c["phase"]] = round(summed.get(c["phase"], 0.0) + c["seconds"], 2)
        cpu[c["phase"]] = round(cpu.get(c["phase"], 0.0) + c["cpu_seconds"], 2)
    top = sum(v for k, v in summed.items() if "inside" not in k)
    summed["other (metrics document, output directory checks)"] = round(total - top, 2)
    comp = doc["comparisons"][0]
    print(
        json.dumps(
            {
                "imports_seconds": round(imports, 2),
                "compare_files_seconds": round(total, 2),
                "seconds_by_phase": summed,
                "cpu_seconds_by_phase": cpu,
                "calls": calls,
                "flips": comp["counts"]["negative_flips"] + comp["counts"]["positive_flips"],
                "peak_rss_mb": round(_rss_mb()),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--groups", type=int, default=100_000)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--format", choices=("compatlm", "minimal"), default="compatlm")
    ap.add_argument("--quick", action="store_true", help="100k instances, temp result file")
    ap.add_argument("--name", default="compare_2m", help="result file name in bench/results")
    ap.add_argument("--no-phases", action="store_true", help="skip the phase-by-phase re-run")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    ap.add_argument("--child-phases", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--child-build", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.groups = 100_000, 5_000
    if args.child_phases:
        child_phases(Path(args.child_phases), args.bootstrap)
        return
    if args.child_build:
        rates = build_files(Path(args.child_build), args.n, args.groups, args.format)
        print(json.dumps(rates))
        return
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or 1), "MKL_NUM_THREADS": str(threads or 1)}
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="compatlm_cmp2m_") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        build = [sys.executable, __file__, "--child-build", str(work), "--n", str(args.n)]
        build += ["--groups", str(args.groups), "--format", args.format]
        rates = last_json_line(
            subprocess.run(build, check=True, capture_output=True, text=True).stdout
        )
        build_seconds = time.perf_counter() - t0
        sizes = {p.name: p.stat().st_size for p in sorted(work.glob("*.jsonl"))}
        load = wait_for_quiet(skip=args.quick or args.no_wait)
        cmd = [
            sys.executable, "-m", "compatlm", "-q", "compare", str(work / "old.jsonl"),
            str(work / "new.jsonl"), "--out", str(work / "out"), "--bootstrap",
            str(args.bootstrap),
        ]  # fmt: skip
        t0 = time.perf_counter()
        with open(work / "compare.log", "w+") as log:
            proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=log)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            log.seek(0)
            if proc.returncode != 0:
                raise SystemExit(f"compare failed ({proc.returncode}): {log.read()[-2000:]}")
        peak_mb = usage.ru_maxrss / 1024  # Linux: KB
        # CPU time is what the machine's other jobs do not inflate (wall time they do).
        cpu_seconds = usage.ru_utime + usage.ru_stime
        metrics = json.loads((work / "out" / "metrics.json").read_text(encoding="utf-8"))
        comp = metrics["comparisons"][0]
        phases = None
        if not args.no_phases:
            child = [sys.executable, __file__, "--child-phases", str(work)]
            child += ["--bootstrap", str(args.bootstrap)]
            res = subprocess.run(child, env=env, cwd=REPO, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"phase run failed: {res.stderr[-2000:]}")
            phases = last_json_line(res.stdout)
    machine = machine_info(threads=threads) | {"load_average_before": load_before}
    m = comp["metrics"]
    doc = {
        "benchmark": "compare_2m",
        "quick": args.quick,
        "setup": {
            "instances": args.n,
            "groups": args.groups,
            "slices": 2,
            "bootstrap": args.bootstrap,
            "format": args.format,
            "file_bytes": sizes,
            "build_files_seconds": round(build_seconds, 1),
            "generating_rates": rates,
        },
        "command": " ".join(["compatlm", *cmd[3:]]).replace(str(work), "$TMP"),
        "load": load,
        "wall_seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "peak_rss_mb": round(peak_mb),
        "targets": {"peak_rss_mb": TARGET_RSS_MB, "wall_seconds": TARGET_SECONDS},
        "meets_targets": {
            "peak_rss": peak_mb < TARGET_RSS_MB,
            "wall_time": seconds < TARGET_SECONDS,
        },
        "result": {
            "n": comp["n"],
            "n_groups": comp["n_groups"],
            "clustered": comp["clustered"],
            "negative_flip_rate": {k: m["negative_flip_rate"][k] for k in ("value", "ci")},
            "mcnemar_p_value": m["mcnemar_p_value"]["value"],
            "cluster_adjusted_mcnemar_statistic": m["cluster_adjusted_mcnemar_statistic"]["value"],
            "cluster_permutation_p_value": m["cluster_permutation_p_value"]["value"],
            "slices": sorted(comp["slices"]),
        },
        "phases": phases,
    }
    path = write_result(default_out(args.name, args.quick), doc, machine)
    keys = ("wall_seconds", "cpu_seconds", "peak_rss_mb", "phases")
    print(json.dumps({k: doc[k] for k in keys}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
