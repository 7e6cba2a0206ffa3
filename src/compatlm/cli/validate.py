"""``compatlm validate``: print the fully resolved eval config without loading a model.

It also owns what ``compatlm eval`` checks before any model is loaded (:func:`load_eval_config`,
:func:`check_eval_config`), so that both commands refuse the same mistakes the same way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from compatlm.cli.common import add_overrides, load_config
from compatlm.errors import printable

if TYPE_CHECKING:
    from compatlm.config import EvalConfig

EPILOG = """\
examples:
  compatlm validate configs/eval.yaml
  compatlm validate configs/eval.yaml runtime.batch_size=4 'tasks.0.stop=["\\n"]'

Prints the fully resolved configuration (defaults < YAML < overrides) as YAML.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    v = subparsers.add_parser(
        "validate",
        help="print the resolved eval config without loading models",
        description="Check an eval config (keys, types, tasks, gate conditions) and print it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("config", metavar="CONFIG", help="eval config (YAML)")
    add_overrides(v)
    v.set_defaults(func=run_validate)


def load_eval_config(
    config: str, overrides: Sequence[str], fail_if: Sequence[str] = ()
) -> EvalConfig:
    """The eval config; ``--fail-if`` conditions add to ``compare.fail_if`` and are parsed now,
    so a typo in a condition fails before hours of work."""
    from compatlm.config import EvalConfig
    from compatlm.eval.gate import parse_conditions

    cfg = load_config(EvalConfig, config, overrides, append={"compare.fail_if": fail_if})
    parse_conditions(cfg.compare.fail_if)
    return cfg


def check_eval_config(cfg: EvalConfig) -> list[dict[str, Any]]:
    """Everything checkable without loading a model; returns each task's effective settings."""
    from compatlm.eval.roles import roles_of
    from compatlm.tasks import check_task_config

    roles_of(cfg)
    return [check_task_config(task, f"tasks[{i}]") for i, task in enumerate(cfg.tasks)]


def run_validate(args: argparse.Namespace) -> int:
    import json

    from compatlm.config import dump_config

    cfg = load_eval_config(args.config, args.overrides)
    settings = check_eval_config(cfg)
    lines = dump_config(cfg).splitlines()
    # The task defaults filled in, as comments so the output stays a usable config file.
    lines.append("# effective task settings (defaults filled in):")
    lines += [f"#   {json.dumps(task, ensure_ascii=False)}" for task in settings]
    # YAML and JSON leave bidi overrides and C1 controls raw: escape them per line.
    sys.stdout.write("".join(printable(line) + "\n" for line in lines))
    return 0
