"""The ``compatlm`` command line: parser assembly, logging set-up and the exit-code contract.

Each command lives in the module of its name (``cli/eval.py``, ``cli/cache_teacher.py``, ...)
exposing ``register(subparsers)``; what commands share (config loading, trailing overrides, the
gate printer) is :mod:`compatlm.cli.common`. ``main`` owns what a pipeline sees of a run:

* exit codes: 0 ok, 1 a ``--fail-if`` gate failed, 2 bad input (every
  :class:`~compatlm.errors.CompatlmError` and argparse error: one ``error:`` line on stderr),
  3 internal error (the traceback goes to a log file, stderr gets one line naming it),
  130 interrupted;
* a reader that closes stdout early (``compatlm ... | head -c1``) is not an error: the rest of
  stdout is discarded and the command finishes with its own exit code;
* stderr of a successful run carries compatlm's own log lines only, never library chatter.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from compatlm import __version__
from compatlm.cli.common import recover_overrides
from compatlm.cli.crash import report_crash
from compatlm.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CompatlmError,
    printable,
)

# Order = order in `compatlm --help`.
COMMAND_MODULES = (
    "eval",
    "validate",
    "compare",
    "report",
    "train",
    "cache_teacher",
    "build",
    "methods",
    "rerank",
    "sweep",
    "demo",
)

EPILOG = """\
examples:
  compatlm demo --quick --out runs/demo-quick          # the whole story on a tiny offline family
  compatlm eval configs/eval.yaml --out runs/eval       # old vs new (+ candidates) on tasks
  compatlm compare old.jsonl new.jsonl --out runs/cmp --fail-if "negative_flip_rate>0.02"
  compatlm train compat configs/train_compat.yaml --out runs/compat
  compatlm report runs/eval                             # re-render a report from files alone

exit codes:
  0    ok (every --fail-if condition passed)
  1    a --fail-if gate condition held
  2    bad input: one "error: ..." line on stderr names the file, line or flag
  3    internal error: stderr names the exception and the log file holding the traceback
  130  interrupted (Ctrl-C)

Run `compatlm COMMAND --help` for each command's options and examples.
"""

# Library loggers that talk on every run; silenced below ERROR unless -vv.
NOISY_LOGGERS = ("transformers", "peft", "datasets", "accelerate", "httpx", "torch", "DeepSpeed")


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
    _one_line_errors(parser)
    return parser


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` and every subparser raise CompatlmError instead of printing usage.

    argparse's own ``error`` prints the usage block and exits, which breaks "one ``error:``
    line". It is replaced per instance (not by subclassing) because command modules pick their
    own parser classes for their subcommands.
    """

    def error(message: str) -> None:
        raise CompatlmError(f"{parser.prog}: {message} (see `{parser.prog} --help`)")

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in {id(p): p for p in action.choices.values()}.values():
                _one_line_errors(sub)


class _SafeFormatter(logging.Formatter):
    """Log lines quote data (task and model names, paths): escape what could drive a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _warning_to_debug_log(message, category, filename, lineno, file=None, line=None) -> None:
    # Library warnings (torch, peft, ...) are for developers: visible with -v, never on the
    # stderr of a normal run.
    logging.getLogger("compatlm.warnings").debug(
        "%s: %s (%s:%s)", category.__name__, message, filename, lineno
    )


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
    handler.setFormatter(_SafeFormatter(fmt))
    root = logging.getLogger("compatlm")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if verbose < 2:
        # Library chatter (transformers/peft/datasets) is noise in a CLI unless asked for.
        for noisy in NOISY_LOGGERS:
            logger = logging.getLogger(noisy)
            logger.setLevel(logging.ERROR)
            # DeepSpeed resets its logger's level (and adds a stdout handler) when imported,
            # which happens after this set-up; a filter survives that.
            if not any(isinstance(f, _ErrorsOnly) for f in logger.filters):
                logger.addFilter(_ErrorsOnly())
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        # Deprecation notices between library versions (peft calling a deprecated transformers
        # method on every adapter load) are for developers, and they would break the contract
        # that a failed command prints one `error:` line on stderr.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = _warning_to_debug_log
        # One "Loading weights" bar per model load drowns compatlm's own progress.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


class _StdoutGuard:
    """Stands in for ``sys.stdout`` during a command: when the reader goes away (``| head``)
    the rest of the output is dropped and the command carries on, so its exit code (a failed
    gate included) still says what happened. stdout is pointed at devnull as the Python docs
    advise for SIGPIPE, so the interpreter's flush at exit does not raise again."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._drop_output()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._drop_output()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def _drop_output(self) -> None:
        self.reader_gone = True
        _stdout_to_devnull(self.stream)


def _stdout_to_devnull(stream: Any) -> None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream (tests) has no fd
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args, extra = parser.parse_known_args(list(argv) if argv is not None else None)
    unknown = recover_overrides(args, extra)  # `CONFIG --out DIR a.b=1`: a.b=1 is an override
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except SystemExit as exit_:
        # compatlm's commands return their code; a library calling sys.exit(1) mid-run would
        # otherwise read as "gate failed" in CI.
        if exit_.code in (None, 0):
            return EXIT_OK
        raise RuntimeError(f"a library called sys.exit({exit_.code!r}) during the run") from exit_


def main(argv: Sequence[str] | None = None) -> int:
    guard = sys.stdout if isinstance(sys.stdout, _StdoutGuard) else _StdoutGuard(sys.stdout)
    sys.stdout = guard  # type: ignore[assignment]
    args: argparse.Namespace | None = None
    try:
        parser = build_parser()
        args = _parse(parser, argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_BAD_INPUT
        _setup_logging(args.verbose, args.quiet)
        code = _run(args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the guard, not at exit
        return code
    except CompatlmError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        # Only commands that can continue a run offer --resume (compare simply reruns).
        hint = "; rerun the same command with --resume to continue"
        print(f"interrupted{hint if hasattr(args, 'resume') else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # A write that bypassed the guard (straight to the buffer) met a closed stdout.
        _stdout_to_devnull(guard.stream)
        return EXIT_OK
    except Exception as err:  # the last line of defence: exit 3, never 1 (gate failed)
        return report_crash(err, args, argv)
    finally:
        from compatlm.rundir import release_locks

        release_locks()  # the next command (same process, or another one) may use the run dir
        if sys.stdout is guard:
            sys.stdout = guard.stream


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
