"""``compatlm compare``: prediction files or a run directory -> flips, metrics.json, reports.

:func:`print_summary` (the console table) is shared with ``compatlm report``. Exit codes:
0 = done (gate passed), 1 = a ``--fail-if`` condition held, 2 = bad input, 3 = internal error.
Names from the files (tasks, roles, paths) are printed through
:func:`~compatlm.errors.printable`: a prediction file must not be able to drive the terminal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from compatlm.cli import argtypes
from compatlm.cli.common import add_fail_if, load_config, print_gate
from compatlm.errors import printable

EPILOG = """\
examples:
  compatlm compare old.jsonl new.jsonl --out runs/cmp
  compatlm compare old.jsonl new.jsonl --out runs/cmp --overwrite \\
      --fail-if "negative_flip_rate>0.02" --fail-if "piqa:backward_trust_compatibility<0.9"
  compatlm compare samples_gsm8k_old.jsonl samples_gsm8k_new.jsonl --out runs/lm --filter strict-match
  compatlm compare predictions/piqa/old.jsonl samples_piqa_new.jsonl --out runs/mix --join-key doc.id
  compatlm compare runs/eval                  # recompare a run dir's predictions/<task>/<role>.jsonl
  compatlm compare runs/eval --fail-if "old_vs_muscle:negative_flip_rate>0.01"

Inputs: compatlm prediction files, minimal JSONL lines ({"example_id": "7", "correct": true, ...})
or lm-eval --log_samples files (samples_<task>_<date>.jsonl).
lm-eval rows join on doc_id (the doc's position in lm-eval's dataset); --join-key doc.FIELD
joins them on a field of the logged doc instead, e.g. doc.id to meet a compatlm file whose
example_id is the task rows' "id" (the key must be a string or integer, unique, on every row).
--fail-if syntax: [task:][reference_vs_other:]metric OP number, OP in > >= < <= == !=;
without a reference_vs_other scope it applies to every comparison against the old model.
Exit codes: 0 ok, 1 a --fail-if condition held, 2 bad input, 3 internal error.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare prediction files (or a run directory): flips, metrics.json, reports",
        description="Join two prediction sets on example_id and measure negative flips, "
        "compatibility scores and paired statistics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="OLD NEW | RUN_DIR")
    p.add_argument("--out", help="output directory (required with two files)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    add_fail_if(p)
    p.add_argument("--config", help="YAML with CompareConfig keys (flags override it)")
    p.add_argument(
        "--tolerance",
        type=argtypes.non_negative_float,
        help="similarity flips need |ΔS| > X (default 0)",
    )
    p.add_argument(
        "--bootstrap",
        type=argtypes.non_negative_int,
        help="paired bootstrap resamples (0 = no CIs)",
    )
    p.add_argument(
        "--confidence",
        type=argtypes.finite_float(0.0, 1.0, low_open=True, high_open=True),
        help="CI level, in (0, 1) (default 0.95)",
    )
    p.add_argument(
        "--seed", type=argtypes.seed, help=f"bootstrap seed, 0..{argtypes.SEED_MAX} (default 0)"
    )
    p.add_argument(
        "--allow-prompt-mismatch",
        action="store_true",
        default=None,
        help="compare even when prompt_hash differs (recorded as a warning)",
    )
    p.add_argument(
        "--allow-metric-mismatch",
        action="store_true",
        default=None,
        help="compare even when the metric (acc/acc_norm) or lm-eval filter differs (warning)",
    )
    p.add_argument(
        "--noise-margin",
        type=argtypes.non_negative_float,
        help="label flips with |margin| below X (>= 0) on both sides",
    )
    p.add_argument(
        "--filter", help="lm-eval samples: which filter's rows (default: the only one/none)"
    )
    p.add_argument(
        "--metric", help="lm-eval samples: metric deciding correct (default acc/exact_match)"
    )
    p.add_argument(
        "--join-key",
        metavar="doc.FIELD",
        help="lm-eval samples: join on this field of the logged doc instead of doc_id"
        " (compare.join_key)",
    )
    p.add_argument("--reference", default="old", help="run dir mode: reference role (default old)")
    p.add_argument("--baseline", default="new", help="run dir mode: baseline for candidates (new)")
    p.set_defaults(func=run_compare)


def _config(args: argparse.Namespace):
    from compatlm.config import CompareConfig

    flags = {
        "tolerance": args.tolerance,
        "bootstrap": args.bootstrap,
        "confidence": args.confidence,
        "seed": args.seed,
        "allow_prompt_mismatch": args.allow_prompt_mismatch,
        "allow_metric_mismatch": args.allow_metric_mismatch,
        "join_key": args.join_key,
    }
    return load_config(
        CompareConfig,
        args.config,
        flags=flags,
        append={"fail_if": args.fail_if},
        source=args.config or "command line",
    )


def run_compare(args: argparse.Namespace) -> int:
    from compatlm.errors import CompatlmError
    from compatlm.eval.compare_io import compare_files, compare_run
    from compatlm.eval.gate import parse_conditions
    from compatlm.report import render_report

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
            inputs=[args.config] if args.config else [],
            render=render_report,  # the reports are part of the set compare swaps in
        )
        out = Path(args.out)
    elif len(args.inputs) == 1 and Path(args.inputs[0]).is_dir():
        if args.out or args.filter or args.metric or args.join_key:
            raise CompatlmError(
                "compare RUN_DIR writes into RUN_DIR; --out/--filter/--metric/--join-key apply"
                " to two files"
            )
        out = Path(args.inputs[0])
        doc = compare_run(
            out,
            cfg,
            reference=args.reference,
            baseline=args.baseline,
            noise_margin=args.noise_margin,
            render=render_report,
        )
    else:
        raise CompatlmError(
            f"expected OLD NEW prediction files or one run directory, found {args.inputs!r}"
        )
    print_summary(doc)
    _paths(out, doc)
    return print_gate(doc, cfg.fail_if) if conditions else 0


def print_summary(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from compatlm.report.fmt import num, pct, pvalue
    from compatlm.report.primary import is_similarity

    table = Table(title="compatlm compare")
    for col in ("task", "comparison", "N", "acc ref", "acc other", "NFR", "PFR", "McNemar p"):
        table.add_column(col, justify="left" if col in ("task", "comparison") else "right")
    # Similarity tasks (ROUGE ...): correct is only score >= pass_threshold, so their flips are
    # the score's (own table below), not accuracy's.
    sims = [c for c in doc["comparisons"] if is_similarity(c)]
    for c in doc["comparisons"]:
        if any(c is x for x in sims):
            continue
        m = c["metrics"]
        table.add_row(
            printable(c["task"]),
            printable(f"{c['reference']} → {c['other']}"),
            str(c["n"]),
            pct(m["accuracy_old"], ci=False),
            pct(m["accuracy_new"], ci=False),
            pct(m["negative_flip_rate"], ci=False),
            pct(m["positive_flip_rate"], ci=False),
            pvalue(m["mcnemar_p_value"]),
        )
    # Not a terminal (a CI log, a pipe): rich would wrap to 80 columns and cut role and task
    # names; a log line may be long.
    width = None if sys.stdout.isatty() else 240
    console = Console(file=sys.stdout, highlight=False, markup=False, width=width)
    if table.row_count:
        console.print(table)
    if sims:
        sim_table = Table(title="similarity tasks (S = mean score)")
        for col in ("task", "comparison", "N", "S ref", "S other", "sNFR", "sPFR"):
            sim_table.add_column(col, justify="left" if col in ("task", "comparison") else "right")
        for c in sims:
            m = c["similarity"]["metrics"]
            sim_table.add_row(
                printable(c["task"]),
                printable(f"{c['reference']} → {c['other']}"),
                str(c["n"]),
                num(m["mean_score_old"], ci=False),
                num(m["mean_score_new"], ci=False),
                pct(m["similarity_negative_flip_rate"], ci=False),
                pct(m["similarity_positive_flip_rate"], ci=False),
            )
        console.print(sim_table)
    for c in doc["comparisons"]:
        for w in c["warnings"]:
            print(printable(f"warning: {c['task']}: {c['reference']}_vs_{c['other']}: {w}"))


def _paths(out: Path, doc: dict[str, Any]) -> None:
    for c in doc["comparisons"]:
        print(printable(f"wrote {out / c['files']['flips']}"))
    for name in ("metrics.json", "report.md", "report.html"):
        print(printable(f"wrote {out / name}"))
