"""User-facing errors.

Everything a user can get wrong (a malformed file, a bad flag, a model that does not fit) is
raised as :class:`CompatlmError`. The CLI prints ``error: <message>`` on one line and exits
with code 2; it never shows a traceback for these. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

from os import PathLike


class CompatlmError(Exception):
    """A problem the user can fix; ``str(err)`` is a single line that names it."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line, always: multi-line messages from libraries are folded so the CLI contract
        # ("one-line error") holds whatever we wrap.
        super().__init__(" ".join(str(message).split()))


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
