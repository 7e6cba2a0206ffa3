"""``compatlm eval``: score old, new and candidates on tasks, then compare, report and gate.

The config checks it shares with ``compatlm validate`` live in :mod:`compatlm.cli.validate`.
"""

from __future__ import annotations

import argparse
import json

from compatlm.cli.common import (
    add_fail_if,
    add_overrides,
    print_existing,
    print_gate,
    require_out,
)
from compatlm.cli.validate import check_eval_config, load_eval_config

EPILOG = """\
examples:
  compatlm eval configs/eval.yaml --out runs/eval
  compatlm eval configs/eval.yaml --out runs/eval --resume            # continue an interrupted run
  compatlm eval configs/eval.yaml --out runs/eval --overwrite runtime.batch_size=4 tasks.0.limit=50
  compatlm eval configs/eval.yaml --out runs/eval --fail-if "negative_flip_rate>0.02"

Overrides are `section.key=value` (value parsed as YAML; list items by index: tasks.0.limit=50).
Writes config.yaml, env.json, predictions/<task>/<role>.jsonl, flips/, metrics.json,
report.md and report.html into --out. Exit codes: 0 ok, 1 a --fail-if condition held,
2 bad input (config, task file, model spec, runtime.device), 3 internal error.
"""

WRITTEN = (
    "config.yaml",
    "env.json",
    "predictions",
    "flips",
    "metrics.json",
    "report.md",
    "report.html",
    "plots",
    "noise.json",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score old, new and candidate models on tasks, then compare and report",
        description="Evaluate old, new and candidates per instance; write flips, metrics, reports.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="eval config (YAML)")
    p.add_argument("--out", help="run directory (default: `out:` of the config)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument(
        "--resume", action="store_true", help="continue a run in --out, skipping rows on disk"
    )
    add_fail_if(
        p, 'gate condition, e.g. "negative_flip_rate>0.02" (repeatable; adds to compare.fail_if)'
    )
    add_overrides(p)
    p.set_defaults(func=run_eval_command)


def run_eval_command(args: argparse.Namespace) -> int:
    from compatlm.cli.compare import print_summary
    from compatlm.eval.pipeline import run_eval
    from compatlm.models import resolve_device
    from compatlm.report import render_report

    cfg = load_eval_config(args.config, args.overrides, args.fail_if)
    out = require_out(args.out, cfg.out)
    check_eval_config(cfg)
    resolve_device(cfg.runtime.device)  # here, not in validate: a GPU config checks anywhere
    run = run_eval(cfg, out, overwrite=args.overwrite, resume=args.resume, inputs=[args.config])
    render_report(run)  # eval writes metrics.json and flips; the reports are rendered here
    doc = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    print_summary(doc)  # the headline numbers, as compare prints them
    print_existing(run, WRITTEN)
    if not cfg.compare.fail_if:
        return 0
    # compare recorded the gate in metrics.json (the report's banner shows the same outcome).
    return print_gate(doc, cfg.compare.fail_if)
