"""``compatlm build METHOD CONFIG``: build a candidate with a registered method.

The method names, the help text and the config class all come from
:mod:`compatlm.methods.registry`. ``build`` prints the candidate's ModelSpec as the only line on
stdout (so ``SPEC=$(compatlm build ...)`` works); the paths it wrote go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compatlm.cli.common import add_overrides, load_config
from compatlm.errors import printable
from compatlm.methods.registry import METHODS, candidate_names

EXAMPLES = """\
examples:
  compatlm build port configs/port.yaml --out runs/port
  compatlm build interpolate configs/interpolate.yaml alpha=0.3 --out runs/interp
  compatlm build task_arithmetic configs/task_arithmetic.yaml vectors.0.weight=0.5 --out runs/ta
  compatlm build continue_ce configs/train_compat.yaml --out runs/continue_ce   # muscle's config
  compatlm build pct configs/pct.yaml focal.beta=2 --out runs/pct
  SPEC=$(compatlm build interpolate configs/interpolate.yaml --out runs/i --overwrite)

The last stdout line is the candidate ModelSpec; put it under `candidates:` of an eval config.
`compatlm methods` lists every method with its paper.
"""


def epilog() -> str:
    names = candidate_names()
    width = max(len(n) for n in names) + 2
    lines = [f"  {n:<{width}}{METHODS[n].summary}" for n in names]
    return "methods:\n" + "\n".join(lines) + "\n\n" + EXAMPLES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build",
        help="build a candidate model with a registered method (see `compatlm methods`)",
        description="Build a candidate from a method config; prints its ModelSpec.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", metavar="METHOD", help=" | ".join(sorted(candidate_names())))
    p.add_argument("config", metavar="CONFIG", help="method config (YAML)")
    p.add_argument("--out", required=True, help="candidate directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    add_overrides(p)
    p.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from compatlm.methods.registry import get_candidate_method
    from compatlm.paths import BOOKKEEPING
    from compatlm.rundir import input_paths, prepare_out_dir

    method = get_candidate_method(args.method)
    cfg = load_config(method.config_cls, args.config, args.overrides)
    out = Path(args.out)
    if args.overwrite:
        inputs = [args.config, *input_paths(cfg)]  # never delete what the build reads
        prepare_out_dir(out, kind="candidate", overwrite=True, inputs=inputs, resumable=False)
    spec = method.build(cfg, out, runtime=cfg.runtime)
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name not in BOOKKEEPING):
        print(printable(f"wrote {path}"), file=sys.stderr)
    print(printable(spec))
    return 0
