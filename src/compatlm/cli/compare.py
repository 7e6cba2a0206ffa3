"""``compatlm compare`` (prediction files or a run directory -> flips, metrics.json, reports)
and ``compatlm report`` (re-render a run directory's reports, optionally re-check the gate).

Exit codes: 0 = done (gate passed), 1 = a ``--fail-if`` condition held, 2 = bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

COMPARE_EPILOG = """\
examples:
  compatlm compare old.jsonl new.jsonl --out runs/cmp
  compatlm compare old.jsonl new.jsonl --out runs/cmp --overwrite \\
      --fail-if "negative_flip_rate>0.02" --fail-if "piqa:backward_trust_compatibility<0.9"
  compatlm compare samples_gsm8k_old.jsonl samples_gsm8k_new.jsonl --out runs/lm --filter strict-match
  compatlm compare runs/eval                  # recompare a run dir's predictions/<task>/<role>.jsonl
  compatlm compare runs/eval --fail-if "old_vs_muscle:negative_flip_rate>0.01"

Inputs: compatlm prediction files, minimal JSONL lines ({"example_id": "7", "correct": true, ...})
or lm-eval --log_samples files (samples_<task>_<date>.jsonl).
--fail-if syntax: [task:][reference_vs_other:]metric OP number, OP in > >= < <= == !=;
without a reference_vs_other scope it applies to every comparison against the old model.
Exit codes: 0 ok, 1 a --fail-if condition held, 2 bad input.
"""

REPORT_EPILOG = """\
examples:
  compatlm report runs/eval
  compatlm report runs/cmp --fail-if "negative_flip_rate>0.02"

Re-renders report.md, report.html and plots/ from metrics.json and flips/ alone (offline).
Exit codes: 0 ok, 1 a --fail-if condition held, 2 bad input.
"""


def _add_gate(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="COND",
        help='exit 1 when COND holds, e.g. "negative_flip_rate>0.02" (repeatable)',
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare prediction files (or a run directory): flips, metrics.json, reports",
        description="Join two prediction sets on example_id and measure negative flips, "
        "compatibility scores and paired statistics.",
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="OLD NEW | RUN_DIR")
    p.add_argument("--out", help="output directory (required with two files)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    _add_gate(p)
    p.add_argument("--config", help="YAML with CompareConfig keys (flags override it)")
    p.add_argument("--tolerance", type=float, help="similarity flips need |ΔS| > X (default 0)")
    p.add_argument("--bootstrap", type=int, help="paired bootstrap resamples (0 = no CIs)")
    p.add_argument("--confidence", type=float, help="CI level (default 0.95)")
    p.add_argument("--seed", type=int, help="bootstrap seed (default 0)")
    p.add_argument(
        "--allow-prompt-mismatch",
        action="store_true",
        default=None,
        help="compare even when prompt_hash differs (recorded as a warning)",
    )
    p.add_argument(
        "--noise-margin", type=float, help="label flips with |margin| below X on both sides"
    )
    p.add_argument(
        "--filter", help="lm-eval samples: which filter's rows (default: the only one/none)"
    )
    p.add_argument(
        "--metric", help="lm-eval samples: metric deciding correct (default acc/exact_match)"
    )
    p.add_argument("--reference", default="old", help="run dir mode: reference role (default old)")
    p.add_argument("--baseline", default="new", help="run dir mode: baseline for candidates (new)")
    p.set_defaults(func=run_compare)

    r = subparsers.add_parser(
        "report",
        help="re-render report.md/report.html of a run directory from its files",
        description="Render the reports of a run directory from metrics.json and flips/.",
        epilog=REPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("run_dir", metavar="RUN_DIR")
    _add_gate(r)
    r.set_defaults(func=run_report)


def _config(args: argparse.Namespace):
    from compatlm.config import CompareConfig, build_config, read_yaml

    data: dict[str, Any] = read_yaml(args.config) if args.config else {}
    flags = {
        "tolerance": args.tolerance,
        "bootstrap": args.bootstrap,
        "confidence": args.confidence,
        "seed": args.seed,
        "allow_prompt_mismatch": args.allow_prompt_mismatch,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    data["fail_if"] = list(data.get("fail_if") or []) + list(args.fail_if)
    return build_config(CompareConfig, data, args.config or "command line")


def run_compare(args: argparse.Namespace) -> int:
    from compatlm.errors import CompatlmError
    from compatlm.eval.compare_io import compare_files, compare_run
    from compatlm.eval.gate import parse_conditions

    cfg = _config(args)
    conditions = parse_conditions(cfg.fail_if)  # bad gate syntax fails before any work
    if len(args.inputs) == 2:
        if not args.out:
            raise CompatlmError("compare OLD NEW needs --out DIR")
        doc = compare_files(
            args.inputs[0],
            args.inputs[1],
            args.out,
            cfg,
            overwrite=args.overwrite,
            noise_margin=args.noise_margin,
            filter=args.filter,
            metric=args.metric,
        )
        out = Path(args.out)
    elif len(args.inputs) == 1 and Path(args.inputs[0]).is_dir():
        if args.out or args.filter or args.metric:
            raise CompatlmError(
                "compare RUN_DIR writes into RUN_DIR; --out/--filter/--metric apply to two files"
            )
        out = Path(args.inputs[0])
        doc = compare_run(
            out,
            cfg,
            reference=args.reference,
            baseline=args.baseline,
            noise_margin=args.noise_margin,
        )
    else:
        raise CompatlmError(
            f"expected OLD NEW prediction files or one run directory, found {args.inputs!r}"
        )
    _summary(doc)
    _paths(out, doc)
    return _gate(doc, conditions)


def run_report(args: argparse.Namespace) -> int:
    from compatlm.eval.gate import parse_conditions
    from compatlm.report import load_run, render_report

    conditions = parse_conditions(args.fail_if)
    written = render_report(args.run_dir)
    doc = load_run(args.run_dir).doc
    _summary(doc)
    for path in written:
        print(f"wrote {path}")
    return _gate(doc, conditions)


def _summary(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from compatlm.report.fmt import pct, pvalue

    table = Table(title="compatlm compare")
    for col in ("task", "comparison", "N", "acc ref", "acc other", "NFR", "PFR", "McNemar p"):
        table.add_column(col, justify="left" if col in ("task", "comparison") else "right")
    for c in doc["comparisons"]:
        m = c["metrics"]
        table.add_row(
            c["task"],
            f"{c['reference']} → {c['other']}",
            str(c["n"]),
            pct(m["accuracy_old"], ci=False),
            pct(m["accuracy_new"], ci=False),
            pct(m["negative_flip_rate"], ci=False),
            pct(m["positive_flip_rate"], ci=False),
            pvalue(m["mcnemar_p_value"]),
        )
    console = Console(file=sys.stdout, highlight=False, markup=False)
    console.print(table)
    for c in doc["comparisons"]:
        for w in c["warnings"]:
            print(f"warning: {c['task']}: {c['reference']}_vs_{c['other']}: {w}")


def _paths(out: Path, doc: dict[str, Any]) -> None:
    for c in doc["comparisons"]:
        print(f"wrote {out / c['files']['flips']}")
    for name in ("metrics.json", "report.md", "report.html"):
        print(f"wrote {out / name}")


def _gate(doc: dict[str, Any], conditions: list) -> int:
    from compatlm.eval.gate import check_gate

    if not conditions:
        return 0
    failures = check_gate(doc, conditions)
    for f in failures:
        print(f"gate failed: {f.condition}: {f.message}", file=sys.stderr)
    if not failures:
        print(f"gate passed: {len(conditions)} condition(s)")
    return 1 if failures else 0
