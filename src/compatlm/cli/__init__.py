"""The ``compatlm`` command line: parser assembly, logging set-up and error handling.

Each command family lives in its own module (``cli/compare.py``, ``cli/eval.py``, ...) exposing
``register(subparsers)``. ``main`` turns every :class:`~compatlm.errors.CompatlmError` into one
line on stderr and exit code 2; a failed CI gate is exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from compatlm import __version__
from compatlm.errors import CompatlmError

# Order = order in `compatlm --help`.
COMMAND_MODULES = ("eval", "compare", "train", "methods", "sweep", "demo")

EPILOG = """\
examples:
  compatlm demo --quick --out runs/demo-quick          # the whole story on a tiny offline family
  compatlm eval configs/eval.yaml --out runs/eval       # old vs new (+ candidates) on tasks
  compatlm compare old.jsonl new.jsonl --out runs/cmp --fail-if "negative_flip_rate>0.02"
  compatlm train compat configs/train_compat.yaml --out runs/compat
  compatlm report runs/eval                             # re-render a report from files alone

Run `compatlm COMMAND --help` for each command's options and examples.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compatlm",
        description="Measure and reduce regression (negative flips) across base-model updates.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"compatlm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"compatlm.cli.{name}")
        except ModuleNotFoundError as err:
            # A command family that is not part of this build is simply absent; any other
            # missing import is a real error and must surface.
            if err.name != f"compatlm.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 0 else logging.INFO
    try:
        from rich.console import Console
        from rich.logging import RichHandler

        # Logs go to stderr: stdout carries only results (paths written, a spec), so it pipes.
        handler: logging.Handler = RichHandler(
            console=Console(stderr=True),
            show_time=False,
            show_path=False,
            markup=False,
            rich_tracebacks=False,
        )
        fmt = "%(message)s"
    except ImportError:  # pragma: no cover - rich is a dependency
        handler = logging.StreamHandler()
        fmt = "%(levelname)s %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger("compatlm")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if verbose < 2:
        # Library chatter (transformers/peft/datasets) is noise in a CLI unless asked for.
        for noisy in ("transformers", "peft", "datasets", "accelerate", "httpx"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        # Deprecation notices between library versions (peft calling a deprecated transformers
        # method on every adapter load) are for developers, and they would break the contract
        # that a failed command prints one `error:` line on stderr.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # One "Loading weights" bar per model load drowns compatlm's own progress.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(list(argv) if argv is not None else None)
    if extra:
        # argparse stops filling a trailing `overrides` list once an option follows it
        # (`CONFIG --out DIR a.b=1`); such leftovers are overrides too, anything else is an error.
        # A leftover without "=" is a malformed override (`runtime.batch_size`): it is passed on
        # so the config layer names it ("expected section.key=value") in one error line.
        if hasattr(args, "overrides") and not any(a.startswith("-") for a in extra):
            args.overrides = [*(args.overrides or []), *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except CompatlmError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted; rerun the same command with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
