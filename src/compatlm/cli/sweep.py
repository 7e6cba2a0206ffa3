"""``compatlm sweep``: a method over a grid of its knobs, selected on one split, tested once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compatlm.cli.common import add_overrides, load_config
from compatlm.errors import printable

EPILOG = """\
examples:
  compatlm sweep configs/sweep.yaml --out runs/sweep
  compatlm sweep configs/sweep.yaml select.accuracy_floor=-1.0 'grid.kd_weight=[0.25, 0.5]' --out runs/sweep
  compatlm sweep configs/sweep.yaml select.metric=inconsistency_flip_rate --out runs/sweep
  compatlm sweep configs/sweep.yaml --out runs/sweep --resume     # continue an interrupted sweep

Builds one candidate per grid point (every combination of `grid`, or `knob` over `values`) and
the `control`, evaluates old, new and all of them on the selection split (select.split), picks
the lowest negative flip rate (select.metric) among those whose accuracy is at least the new
model's plus select.accuracy_floor points, and only then evaluates old, new, the winner and
the control on select.test_split. The test split is not opened before the winner is fixed.
Writes selection.json, sweep.md, plots/sweep_front.png, candidates/, validation/ and test/.
Exit code 1 when no candidate reaches the accuracy floor (nothing is picked; the candidates
built are removed), 2 for bad input (checked before anything is trained).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="sweep a method's knobs, pick the lowest-NFR candidate above an accuracy floor",
        description="Sweep a method over a grid of its knobs, select on one split, test once.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="sweep config (YAML)")
    p.add_argument("--out", required=True, help="sweep directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--resume", action="store_true", help="continue a sweep in --out")
    add_overrides(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from compatlm.methods.config import SweepConfig
    from compatlm.methods.sweep import run_sweep

    cfg = load_config(SweepConfig, args.config, args.overrides)
    result = run_sweep(cfg, Path(args.out), overwrite=args.overwrite, resume=args.resume)
    for path in result.paths:
        print(printable(f"wrote {path}"))
    if result.selected is None:
        print(printable(f"no candidate selected: {result.reason}"), file=sys.stderr)
        return 1
    print(printable(f"selected {result.selected.name}: {result.selected.spec}"))
    return 0
