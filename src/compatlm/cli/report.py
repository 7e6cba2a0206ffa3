"""``compatlm report``: re-render a run directory's reports from its files, optionally re-check
the gate (the gate checked then replaces the recorded one)."""

from __future__ import annotations

import argparse

from compatlm.cli.common import add_fail_if, print_gate
from compatlm.errors import printable

EPILOG = """\
examples:
  compatlm report runs/eval
  compatlm report runs/cmp --fail-if "negative_flip_rate>0.02"

Re-renders report.md, report.html and plots/ from metrics.json and flips/ alone (offline).
Exit codes: 0 ok, 1 a --fail-if condition held, 2 bad input, 3 internal error.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser(
        "report",
        help="re-render report.md/report.html of a run directory from its files",
        description="Render the reports of a run directory from metrics.json and flips/.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("run_dir", metavar="RUN_DIR")
    add_fail_if(r)
    r.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from compatlm.cli.compare import print_summary
    from compatlm.eval.gate import gate_record, parse_conditions
    from compatlm.io import atomic_write_json
    from compatlm.report import load_run, render_report
    from compatlm.rundir import lock

    parse_conditions(args.fail_if)
    if args.fail_if:
        # The gate checked now replaces the recorded one, so metrics.json and the report's
        # banner state the outcome this exit code reflects.
        data = load_run(args.run_dir)
        doc = {k: v for k, v in data.doc.items() if k != "gate"}
        doc["gate"] = gate_record(doc, list(args.fail_if))
        lock(data.run_dir)
        atomic_write_json(data.run_dir / "metrics.json", doc)
    written = render_report(args.run_dir)
    doc = load_run(args.run_dir).doc
    print_summary(doc)
    for path in written:
        print(printable(f"wrote {path}"))
    return print_gate(doc, args.fail_if) if args.fail_if else 0
