"""What the CLI does with an exception nobody expected: exit code 3 and a traceback log.

A crash must not look like a failed gate (exit 1) in CI, and a user must not have to rerun a
long job to see what went wrong. The full traceback goes to ``compatlm-crash-<pid>.log`` in the
command's ``--out`` directory when that is a run directory compatlm made (it carries compatlm's
marker: a directory of the user's is never written to), else in the temp directory (``$TMPDIR``); stderr gets one line naming the exception and the log.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

from compatlm import __version__
from compatlm.errors import EXIT_INTERNAL, printable

MAX_MESSAGE = 300  # characters of the exception message shown on stderr (the log has all)


def _candidates(args: argparse.Namespace | None) -> list[Path]:
    name = f"compatlm-crash-{os.getpid()}.log"
    out = getattr(args, "out", None) if args is not None else None
    from compatlm.paths import MARKER

    # Only a run directory compatlm made (its marker is there) gets the log, next to the
    # partial run it explains; a directory of the user's is never written to.
    own = isinstance(out, str) and out and (Path(out) / MARKER).is_file()
    dirs = [Path(out)] if own else []
    return [*(d / name for d in dirs), Path(tempfile.gettempdir()) / name]


def write_crash_log(
    err: BaseException, args: argparse.Namespace | None, argv: Sequence[str] | None
) -> Path | None:
    """Write the traceback; returns the log's path, or None when no location was writable."""
    from compatlm.io import atomic_write_text

    # str(): a library caller of main() may pass paths; the log must still be written
    command = [str(a) for a in (argv if argv is not None else sys.argv[1:])]
    text = (
        f"compatlm {__version__} (Python {sys.version.split()[0]}) crashed\n"
        f"command: compatlm {' '.join(command)}\n\n"
        + "".join(traceback.format_exception(type(err), err, err.__traceback__))
    )
    for path in _candidates(args):
        try:
            return atomic_write_text(path, text)
        except OSError:
            continue
    return None


def report_crash(
    err: BaseException, args: argparse.Namespace | None, argv: Sequence[str] | None
) -> int:
    """Log ``err``'s traceback, print one ``error:`` line naming it, return exit code 3."""
    log = write_crash_log(err, args, argv)
    message = " ".join(str(err).split())
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    where = f"traceback in {log}" if log is not None else "no writable place for the traceback"
    what = f"{type(err).__name__}: {message}" if message else type(err).__name__
    line = f"error: internal error: {what} ({where}; please report it)"
    print(printable(line), file=sys.stderr)
    return EXIT_INTERNAL
