"""``compatlm sweep``: one method over a grid of its knob, selected on validation data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
examples:
  compatlm sweep configs/sweep.yaml --out runs/sweep
  compatlm sweep configs/sweep.yaml 'values=[0.0, 0.25, 0.5]' accuracy_floor=0.6 --out runs/sweep
  compatlm sweep configs/sweep.yaml --out runs/sweep --resume     # continue an interrupted sweep

Builds one candidate per value of `knob`, evaluates old, new and every candidate on the
validation task, selects the lowest negative flip rate among candidates whose accuracy is at
least the floor (default: the new model's), then evaluates only that one on the test task.
Writes sweep.json, sweep.md, plots/sweep_front.png, candidates/, validation/ and test/.
Exit code 1 when no candidate reaches the accuracy floor (nothing is picked).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="sweep a method's knob, pick the lowest-NFR candidate above an accuracy floor",
        description="Sweep one method over a grid of its knob and select for compatibility.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="sweep config (YAML)")
    p.add_argument("--out", required=True, help="sweep directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--resume", action="store_true", help="continue a sweep in --out")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from compatlm.config import load_config
    from compatlm.methods.config import SweepConfig
    from compatlm.methods.sweep import run_sweep

    cfg = load_config(SweepConfig, args.config, args.overrides)
    result = run_sweep(cfg, Path(args.out), overwrite=args.overwrite, resume=args.resume)
    for path in result.paths:
        print(f"wrote {path}")
    if result.selected is None:
        print(f"no candidate selected: {result.reason}", file=sys.stderr)
        return 1
    print(f"selected {result.selected.name}: {result.selected.spec}")
    return 0
