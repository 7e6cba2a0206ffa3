"""``compatlm eval`` (score old/new/candidates, compare, report, gate) and ``compatlm validate``
(print the fully resolved config without loading a model)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EVAL_EPILOG = """\
examples:
  compatlm eval configs/eval.yaml --out runs/eval
  compatlm eval configs/eval.yaml --out runs/eval --resume            # continue an interrupted run
  compatlm eval configs/eval.yaml --out runs/eval --overwrite runtime.batch_size=4 tasks.0.limit=50
  compatlm eval configs/eval.yaml --out runs/eval --fail-if "negative_flip_rate>0.02"

Overrides are `section.key=value` (value parsed as YAML; list items by index: tasks.0.limit=50).
Writes config.yaml, env.json, predictions/<task>/<role>.jsonl, flips/, metrics.json,
report.md and report.html into --out. Exit code 1 when a --fail-if condition holds.
"""

VALIDATE_EPILOG = """\
examples:
  compatlm validate configs/eval.yaml
  compatlm validate configs/eval.yaml runtime.batch_size=4 'tasks.0.stop=["\\n"]'

Prints the fully resolved configuration (defaults < YAML < overrides) as YAML.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score old, new and candidate models on tasks, then compare and report",
        description="Evaluate old, new and candidates per instance; write flips, metrics, reports.",
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="eval config (YAML)")
    p.add_argument("--out", help="run directory (default: `out:` of the config)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument(
        "--resume", action="store_true", help="continue a run in --out, skipping rows on disk"
    )
    p.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="COND",
        help='gate condition, e.g. "negative_flip_rate>0.02" (repeatable; adds to compare.fail_if)',
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=run_eval_command)

    v = subparsers.add_parser(
        "validate",
        help="print the resolved eval config without loading models",
        description="Check an eval config (keys, types, tasks, gate conditions) and print it.",
        epilog=VALIDATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("config", metavar="CONFIG", help="eval config (YAML)")
    v.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    v.set_defaults(func=run_validate)


def _load(config: str, overrides: list[str], fail_if: list[str] | None = None):
    from compatlm.config import EvalConfig, apply_overrides, build_config, read_yaml
    from compatlm.eval.gate import parse_conditions

    data = apply_overrides(read_yaml(config), overrides)
    if fail_if:
        compare = data.setdefault("compare", {}) or {}
        data["compare"] = compare
        compare["fail_if"] = list(compare.get("fail_if") or []) + list(fail_if)
    cfg = build_config(EvalConfig, data, config)
    parse_conditions(cfg.compare.fail_if)  # a typo in a condition fails before hours of work
    return cfg


def _check(cfg) -> list[dict]:
    """Everything checkable without loading a model; returns each task's effective settings."""
    from compatlm.eval.pipeline import roles_of
    from compatlm.tasks import check_task_config

    roles_of(cfg)
    return [check_task_config(task, f"tasks[{i}]") for i, task in enumerate(cfg.tasks)]


def run_validate(args: argparse.Namespace) -> int:
    import json

    from compatlm.config import dump_config

    cfg = _load(args.config, args.overrides)
    settings = _check(cfg)
    sys.stdout.write(dump_config(cfg))
    # The task defaults filled in, as comments so the output stays a usable config file.
    sys.stdout.write("# effective task settings (defaults filled in):\n")
    for task in settings:
        sys.stdout.write(f"#   {json.dumps(task, ensure_ascii=False)}\n")
    return 0


def run_eval_command(args: argparse.Namespace) -> int:
    import json

    from compatlm.errors import CompatlmError
    from compatlm.eval.gate import check_gate
    from compatlm.eval.pipeline import run_eval

    cfg = _load(args.config, args.overrides, args.fail_if)
    out = args.out or cfg.out
    if not out:
        raise CompatlmError("no output directory: pass --out DIR or set `out:` in the config")
    _check(cfg)
    run = run_eval(cfg, Path(out), overwrite=args.overwrite, resume=args.resume)
    written = ("config.yaml", "env.json", "predictions", "flips", "metrics.json", "report.md")
    for name in (*written, "report.html", "plots", "noise.json"):
        if (run / name).exists():
            print(run / name)
    if not cfg.compare.fail_if:
        return 0
    doc = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    failures = check_gate(doc, cfg.compare.fail_if)
    for failure in failures:
        print(f"gate failed: {failure.message}", file=sys.stderr)
    if failures:
        return 1
    print(f"gate passed: {'; '.join(cfg.compare.fail_if)}", file=sys.stderr)
    return 0
