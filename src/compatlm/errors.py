"""User-facing errors, exit codes and terminal-safe text.

Everything a user can get wrong (a malformed file, a bad flag, a model that does not fit) is
raised as :class:`CompatlmError`. The CLI prints ``error: <message>`` on one line and exits
with code 2; it never shows a traceback for these. Programming errors stay ordinary exceptions
(the CLI logs their traceback to a file and exits 3).

:func:`printable` is the one place data (task, role and model names, ids, paths) is made safe
to show on a terminal: control characters and bidirectional overrides are escaped, so a name
cannot move the cursor, retitle the window or fake a "gate passed" line.
"""

from __future__ import annotations

import re
from os import PathLike

# The CLI's exit codes (documented in `compatlm --help` and the README).
EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

# C0 controls, DEL, C1 controls (ESC/CSI/OSC start sequences), the bidi embeddings/overrides/
# isolates and marks (they reorder what the terminal shows), line/paragraph separators (they
# break "one line") and lone surrogates (they cannot be encoded, so printing them crashes).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``str(text)`` with every unsafe character written as a ``repr``-style escape
    (``\\x1b``, ``\\n``, ``\\u202e``); everything else, including non-ASCII letters, is kept."""
    return _UNSAFE.sub(_escape, str(text))


class CompatlmError(Exception):
    """A problem the user can fix; ``str(err)`` is a single line that names it."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        # One line, always: multi-line messages from libraries are folded so the CLI contract
        # ("one-line error") holds whatever we wrap; data quoted in the message (a path, a
        # task name) is escaped so that printing the error cannot drive the terminal.
        super().__init__(printable(" ".join(str(message).split())))


def where(
    path: str | PathLike[str] | None, line: int | None = None, field: str | None = None
) -> str:
    """Format a location prefix: ``file.jsonl:12: field 'label'``."""
    parts: list[str] = []
    if path is not None:
        parts.append(f"{path}:{line}" if line is not None else str(path))
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join(parts)


def input_error(
    message: str,
    path: str | PathLike[str] | None = None,
    line: int | None = None,
    field: str | None = None,
) -> CompatlmError:
    """Build a :class:`CompatlmError` whose message starts with where the problem is."""
    loc = where(path, line, field)
    return CompatlmError(f"{loc}: {message}" if loc else message)
