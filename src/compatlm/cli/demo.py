"""``compatlm demo``: build the tiny offline family and run the whole story on it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from compatlm.cli.common import OVERRIDE_LISTS, add_overrides, load_config

EPILOG = """\
examples:
  compatlm demo                                  # default family, 1 seed, all four tasks
  compatlm demo --quick --out runs/demo-quick    # minutes-scale version (used by the tests)
  compatlm demo --seeds 3 --tasks demo_piqa demo_gsm8k
  compatlm demo --family continued --out runs/demo-continued   # + port, interpolate, merge
  compatlm demo --out runs/demo training.epochs=4 mask=old_correct
  compatlm demo --out runs/demo-grid 'select.grid={mask: [student_wrong, old_correct], kd_weight: [0.5, 1.0]}'

Rerunning the same command resumes: finished steps are reused, unfinished ones continue from
their checkpoints. The family (tokenizer, old and new bases, task data) is cached under
~/.cache/compatlm (set COMPATLM_CACHE to move it). MUSCLE's setting is chosen per seed and task
on the validation split (seed<S>/selection/<task>.json) before the test split is evaluated.
Writes --out/report.md, report.html, summary.json, evidence.json and one ordinary eval run
directory per seed (seed<S>/eval/).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole story on a tiny offline model family: update, flips, MUSCLE, report",
        description="Build (or load) the embedded tiny model family, train task adapters on the"
        " old and new bases, train the MUSCLE compatibility adapter and the alternatives,"
        " evaluate and report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1; default 1)")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="subset of the demo tasks")
    p.add_argument("--quick", action="store_true", help="smaller family and data: minutes")
    p.add_argument(
        "--family",
        choices=("default", "continued", "legacy"),
        default="default",
        help="default: skill tasks, a larger new base trained from scratch; continued:"
        " same-shape new base that continues the old one's pre-training (port, interpolate and"
        " merge then apply); legacy: the earlier world-facts family",
    )
    p.add_argument("--overwrite", action="store_true", help="start over in --out")
    p.add_argument(
        "--no-alternatives", action="store_true", help="MUSCLE and continue_ce only (no port etc.)"
    )
    add_overrides(p, "demo config overrides")
    # `--tasks a b key=value`: argparse hands trailing overrides to --tasks; they are given back.
    p.set_defaults(func=run_demo_command, **{OVERRIDE_LISTS: ("tasks",)})


def run_demo_command(args: argparse.Namespace) -> int:
    from compatlm.demo.pipeline import DemoConfig, quick_defaults, run_demo
    from compatlm.errors import CompatlmError

    if args.seeds < 1:
        raise CompatlmError(f"--seeds: expected a positive number, found {args.seeds}")
    data: dict = quick_defaults() if args.quick else {}
    data.update({"seeds": list(range(args.seeds)), "quick": args.quick, "family": args.family})
    if args.tasks:
        data["tasks"] = args.tasks
    if args.no_alternatives:
        data["alternatives"] = []
    cfg = load_config(DemoConfig, None, args.overrides, data=data, source="demo")
    t0 = time.perf_counter()
    report = run_demo(cfg, Path(args.out), overwrite=args.overwrite)
    out = report.parent
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    for name in ("report.md", "report.html", "summary.json", "evidence.json"):
        print(f"wrote {out / name}")
    for seed in cfg.seeds:
        print(f"wrote {out / f'seed{seed}' / 'eval' / 'report.html'}")
    print(report.read_text(encoding="utf-8"))
    return 0
