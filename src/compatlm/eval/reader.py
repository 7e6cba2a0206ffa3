"""Reading compatlm and minimal foreign prediction files into :class:`~compatlm.eval.columns.Columns`.

Owns :func:`read_columns` (the loader behind :func:`compatlm.eval.records.load_predictions`)
and :func:`read_outputs`; the file-level rules it applies row by row are
:class:`compatlm.eval.rows.FileChecks`. The file is read in blocks of
:data:`BLOCK_BYTES`; each block becomes numpy columns before the next is read, so a 2M-row
file never exists as 2M objects. A block takes the first of three routes that clears it:

1. whole block (:mod:`compatlm.eval.block`): one key set, every column of plain values;
2. row by row (:func:`compatlm.eval.rows.fast_row`): each line checked in plain Python;
3. careful (:func:`compatlm.eval.rows.careful_row`): the old route, ``io.parse_json`` then the
   pydantic model, for every line the first two have any doubt about.

The first two only *accept*, and only what the model accepts with the same values; every
refused line gets the model's one-line error, byte for byte. File-level rules (schema_version
on all lines or none, one task/kind/role/model/metric, groups on all rows or none, unique ids)
raise what the row-by-row loader raised, at the line it raised them: duplicates are found by
sorting the ids once at the end, and before any other error is raised the rows read so far are
checked for a duplicate that would have come first.
"""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from compatlm.errors import CompatlmError, input_error
from compatlm.eval.block import block_columns
from compatlm.eval.columns import Columns, ColumnsBuilder, first_duplicate, trim_heap
from compatlm.eval.rows import FileChecks, careful_row, fast_row
from compatlm.io import MAX_JSON_DEPTH

BLOCK_BYTES = 2 << 20  # read size; one block's lines and decoded objects are alive at a time

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_JSON_SPACE = " \t\n\r"


def _block_lines(data: bytes) -> tuple[list[Any], str | None]:
    """The lines of one block as str (a line that is not UTF-8: its UnicodeDecodeError), and
    the block's text when the fast routes may be tried on it (None: each line its own way)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        lines: list[Any] = []
        for raw in data.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                lines.append(err)
        return lines, None
    # A surrogate escape anywhere in the block: its lines take parse_json's check.
    return text.split("\n"), None if _SURROGATE_ESCAPE.search(text) else text


def read_columns(path: Path) -> tuple[Columns, dict[str, Any], bool]:
    """Read and validate a compatlm or minimal foreign prediction file.

    Returns the columns, the file constants (task, kind, role, model, metric as found) and
    whether the lines carry schema_version.
    """
    if not path.is_file():
        raise input_error("file not found" if not path.exists() else "not a file", path)
    builder = ColumnsBuilder()
    checks = FileChecks(path)
    layouts: dict[tuple, Any] = {}
    # The cyclic garbage collector would rescan the block's millions of fresh tuples over and
    # over (it triggers on allocations); decoding creates no cycles, so pause it.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _read(path, builder, checks, layouts)
    finally:
        if paused:
            gc.enable()


def _read(
    path: Path, builder: ColumnsBuilder, checks: FileChecks, layouts: dict[tuple, Any]
) -> tuple[Columns, dict[str, Any], bool]:
    base, lineno0, carry = 0, 1, b""
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(BLOCK_BYTES)
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            if not data:
                break
            if cut == 0:
                carry = data  # a line longer than the block: read on
                continue
            block, carry = data[:cut], data[cut:]
            n_lines = _read_block(block, base, lineno0, builder, checks, layouts, path)
            base += len(block)
            lineno0 += n_lines
            if not chunk:
                break
    if builder.n == 0:
        raise input_error("file is empty (no JSON lines)", path)
    cols = builder.build()
    # The sort that finds duplicates is the one every join of this file needs: keep it.
    cols.order = np.argsort(cols.ids.data, kind="stable")
    dup = first_duplicate(cols.ids.data, cols.order)
    if dup is not None:
        row, first = dup
        found = (cols.ids.get(row) or "", int(cols.lines[row]), int(cols.lines[first]))
        raise _duplicate_error(found, path)
    trim_heap()
    return cols, {k: v[0] for k, v in checks.constants.items()}, bool(checks.versioned)


def _duplicate_error(dup: tuple[str, int, int], path: Path) -> CompatlmError:
    eid, line, first = dup
    return input_error(
        f"duplicate example_id {eid!r} (first on line {first})", path, line, "example_id"
    )


def _read_block(
    block: bytes,
    base: int,
    lineno0: int,
    builder: ColumnsBuilder,
    checks: FileChecks,
    layouts: dict[tuple, Any],
    path: Path,
) -> int:
    """Validate the lines of one block and add its rows; returns how many lines it had."""
    lines, text = _block_lines(block)
    ended = block.endswith(b"\n")
    if ended:
        lines.pop()  # the empty string after the last newline is not a line
    final = len(lines) - 1  # the one line that may lack its newline
    newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)  # (L,) positions
    starts = np.concatenate(([0], newlines + 1))[: len(lines)]  # (lines,) line start offsets
    if text is not None:
        cols = block_columns(lines, text, checks, lineno0)
        if cols is not None:
            at = np.arange(len(lines), dtype=np.int64)
            builder.add_columns(len(lines), cols, lineno0 + at, base + starts)
            return len(lines)
    fast = text is not None
    rows: list[tuple] = []
    ks: list[int] | None = None  # line index of each row, once a blank line was skipped
    lineno = lineno0
    # Local copies of the file-level state: the checks run only when a row differs from it.
    v0, last = checks.versioned, checks.last
    g0 = None if checks.grouped is None else checks.grouped[0]
    try:
        for k, line in enumerate(lines):
            got = None
            if type(line) is str:
                if (
                    fast
                    and line[:1] == "{"
                    and line.count("{") == 1
                    and line.count("[") < MAX_JSON_DEPTH - 1
                ):
                    got = fast_row(line, layouts)
                if got is None:
                    if not line.strip():
                        if ks is None:
                            ks = list(range(len(rows)))
                        continue
                    # With its newline, as the row-by-row reader passed it: JSON error
                    # positions ("line 2 column 1") depend on it.
                    whole = line + "\n" if ended or k < final else line
                    got = careful_row(whole, path, lineno0 + k)
            else:
                raise input_error(f"not valid UTF-8 (byte {line.start})", path, lineno0 + k)
            row, versioned, consts = got
            if versioned is not v0:
                lineno = lineno0 + k
                checks.mixed_versions(versioned, lineno)
                v0 = checks.versioned
            rows.append(row)
            if ks is not None:
                ks.append(k)
            if consts != last or (row[10] is not None) is not g0:
                lineno = lineno0 + k
                checks.constants_and_group(consts, row[10], lineno)
                last, g0 = checks.last, checks.grouped[0]  # type: ignore[index]
    except CompatlmError as err:
        # The row-by-row loader refused a repeated id on its line, before later lines' errors.
        at = range(len(rows)) if ks is None else ks
        dup = builder.first_duplicate([r[0] for r in rows], [lineno0 + k for k in at])
        raise (err if dup is None else _duplicate_error(dup, path)) from None
    idx = np.arange(len(rows), dtype=np.int64) if ks is None else np.array(ks, dtype=np.int64)
    builder.add(rows, lineno0 + idx, base + starts[idx])
    return len(lines)


_PLAIN = json.JSONDecoder().raw_decode  # re-reading lines that were validated on load


def read_outputs(path: Path, cols: Columns, idx: np.ndarray) -> list[str | None]:
    """The ``output`` of rows ``idx`` (None where it is null), re-read from their lines by
    byte offset. A line that no longer holds its row means the file changed after loading."""
    out: list[str | None] = [None] * len(idx)
    want = np.flatnonzero(cols.has_output[idx])  # positions in idx whose row has an output
    if not len(want):
        return out
    assert cols.offsets is not None  # file-backed columns always have them
    rows = idx[want]
    with path.open("rb") as fh:
        for j, k, offset in zip(
            want.tolist(), rows.tolist(), cols.offsets[rows].tolist(), strict=True
        ):
            fh.seek(offset)
            raw = fh.readline()
            try:
                obj = dict(_PLAIN(raw.decode("utf-8").lstrip(_JSON_SPACE))[0])
            except (ValueError, TypeError):
                obj = {}
            output = obj.get("output")
            if obj.get("example_id") != cols.ids.get(k) or not isinstance(output, str):
                raise CompatlmError(
                    f"{path}:{int(cols.lines[k])}: the file changed after it was read; "
                    "compare again"
                )
            out[j] = output
    return out
