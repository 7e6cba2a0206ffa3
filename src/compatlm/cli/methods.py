"""``compatlm methods``: the registered methods with what they produce and their papers.

One row per entry of :mod:`compatlm.methods.registry` (name, pretty name, produces, reference),
so the list a user reads is the list ``build``, sweeps and the demo choose from.
"""

from __future__ import annotations

import argparse
import json

from compatlm.errors import printable
from compatlm.methods.registry import METHODS, describe

EPILOG = """\
examples:
  compatlm methods
  compatlm methods --json | jq -r '.[] | select(.produces == "adapter") | .name'

Build a candidate with `compatlm build NAME CONFIG --out DIR`; methods that produce predictions
have their own command (`compatlm rerank CONFIG --out DIR`).
"""

COLUMNS = ("name", "pretty_name", "produces", "reference")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "methods",
        help="list the registered methods: name, what they produce, their paper",
        description="List every method compatlm can build, with its reference.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    p.set_defaults(func=run_methods)


def run_methods(args: argparse.Namespace) -> int:
    rows = [describe(m) for m in METHODS.values()]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    header = {
        "name": "NAME",
        "pretty_name": "METHOD",
        "produces": "PRODUCES",
        "reference": "REFERENCE",
    }
    widths = {c: max(len(str(r[c])) for r in [header, *rows]) for c in COLUMNS[:-1]}
    for row in [header, *rows]:
        cells = [f"{row[c]:<{widths[c]}}" for c in COLUMNS[:-1]]
        print(printable("  ".join([*cells, row["reference"]])))
    return 0
