"""Validating a block of prediction lines at once, column by column.

Owns :func:`block_columns`, the fastest of the three routes of :mod:`compatlm.eval.reader`.
Most files are written by one program and every line has the same keys, so a block (a few MB
of lines) is decoded by the C scanner in one pass, each field is gathered into one tuple and
checked as a whole: the set of value types, ranges with numpy, the file-level rules (one
task/kind/role/model/metric, groups on all rows or none) over the block. Anything unusual
anywhere in the block — another key set, a value of a type or range the checks do not clear
outright, a rule broken — and the block goes to the row-by-row route, which accepts or refuses
each line exactly as the pydantic model does. So this route only accepts blocks whose every
row the model accepts with the same values.

Duplicate keys, which a decoded dict hides, are ruled out by counting quotes: in a block
without backslashes every ``"`` delimits a string, so the block holds exactly
2 × (keys + string values) of them when no key repeats (a repeated key adds a key string the
dicts do not have) and no string hides deeper than the counted ones.
"""

from __future__ import annotations

import json
import re
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import numpy as np

from compatlm.eval.prediction import FILE_CONSTANT
from compatlm.eval.rows import FIELD_ORDER, FileChecks, layout_of
from compatlm.io import MAX_JSON_DEPTH

_NONE = type(None)
_STR_OR_NONE = frozenset({str, _NONE})
_ID_TYPES = frozenset({str, int, _NONE})
_FLOAT_OR_NONE = frozenset({float, _NONE})
_LIST_OR_NONE = frozenset({list, _NONE})
_KINDS = frozenset({None, "multiple_choice", "generation"})
_I64 = 2**63
_LINE_START = re.compile(r"\n[^{]")  # a line that does not start with "{" (blank, indented)


def _reject(name: str) -> Any:
    raise ValueError(name)


# The C scanner of a decoder, called directly: one C call per line, no Python frame.
_SCAN = json.JSONDecoder(parse_constant=_reject).scan_once


class _Doubt(Exception):
    """The block needs the row-by-row route."""


def _types(col: Any) -> set[type]:
    return set(map(type, col))


def _ints_in_range(values: Any) -> None:
    values = list(values)
    if values and (min(values) < -_I64 or max(values) >= _I64):
        raise _Doubt


def _flat(col: tuple, types: set[type]) -> list[Any]:
    lists = col if _NONE not in types else [v for v in col if v is not None]
    return list(chain.from_iterable(lists))


def _check(name: str, col: tuple, types: set[type]) -> Any:
    """The column as the builder takes it (``types``: its value types), or :class:`_Doubt`."""
    if name == "example_id":
        if types != {str} or "" in col:
            raise _Doubt
    elif name == "correct":
        if types != {bool}:
            raise _Doubt
    elif name == "kind":
        if not types <= _STR_OR_NONE or not set(col) <= _KINDS:
            raise _Doubt
    elif name in ("target", "parsed"):
        if not types <= _ID_TYPES:
            raise _Doubt
        if int in types:
            _ints_in_range(col if types == {int} else (v for v in col if type(v) is int))
    elif name in ("score", "margin"):
        if not types <= _FLOAT_OR_NONE:  # ints (and their conversion) are the row route's
            raise _Doubt
        values = np.array(col, dtype=np.float64)  # (n,) None -> NaN (JSON has no NaN)
        known = values[~np.isnan(values)]
        ok = (known >= 0.0) & (known <= 1.0) if name == "score" else np.isfinite(known)
        if not ok.all():
            raise _Doubt
        return values
    elif name == "loglikelihoods":
        if not types <= _LIST_OR_NONE:
            raise _Doubt
        flat = _flat(col, types)
        if not _types(flat) <= {float} or not np.isfinite(np.array(flat, np.float64)).all():
            raise _Doubt
    elif name == "choice_lengths":
        if not types <= _LIST_OR_NONE:
            raise _Doubt
        flat = _flat(col, types)
        if not _types(flat) <= {int}:
            raise _Doubt
        _ints_in_range(flat)
    elif name == "group":
        if types == {_NONE}:
            return None
        if types != {str} or "" in col:  # int groups are converted on the row route
            raise _Doubt
    elif name == "schema_version":
        if types != {int} or set(col) != {1}:
            raise _Doubt
    elif not types <= _STR_OR_NONE:  # the text fields
        raise _Doubt
    return col


def _decode(lines: list[str]) -> tuple[dict, ...]:
    try:
        decoded = list(map(_SCAN, lines, repeat(0)))  # [(object, end)] per line
    except (ValueError, RecursionError):
        raise _Doubt from None
    if len(decoded) != len(lines):
        # The scanner raises StopIteration at a line without a value, which ends map early.
        raise _Doubt
    objs, ends = zip(*decoded, strict=True)
    if list(ends) != list(map(len, lines)):
        # Only JSON whitespace may follow the object (a "\r" of CRLF files).
        for line, end in zip(lines, ends, strict=True):
            if end != len(line) and line[end:].strip(" \t\n\r"):
                raise _Doubt
    return objs


def _strings(col: tuple, types: set[type]) -> int:
    """How many strings ``col`` holds, at top level and inside its lists (one level)."""
    if str not in types:
        count = 0
    elif types == {str}:
        count = len(col)
    elif types == _STR_OR_NONE:
        count = len(col) - col.count(None)
    else:
        count = list(map(type, col)).count(str)
    if list in types:
        inner = list(chain.from_iterable(v for v in col if type(v) is list))
        count += list(map(type, inner)).count(str)
    return count


def block_columns(
    lines: list[str], text: str, checks: FileChecks, lineno0: int
) -> dict[str, Any] | None:
    """The columns of a block whose lines are ``text`` split on newlines (first on line
    ``lineno0``), for :meth:`~compatlm.eval.columns.ColumnsBuilder.add_columns`, or None when
    the block needs the row-by-row route. On success ``checks`` is advanced past the block."""
    n = len(lines)
    if not n or text[:1] != "{" or _LINE_START.search(text) or text.count("{") != n:
        return None  # blank or indented lines, or nested objects (count: one "{" per line)
    if "\\" in text:
        return None  # escapes: quotes no longer count strings
    if text.count("[") >= MAX_JSON_DEPTH - 1 and (
        max(map(str.count, lines, repeat("["))) >= MAX_JSON_DEPTH - 1
    ):
        return None
    try:
        objs = _decode(lines)
        keys = tuple(objs[0])
        width = len(keys)
        layout = layout_of(keys)
        if layout is None or width < 2 or set(map(len, objs)) != {width}:
            return None
        # Row tuples first, then columns: one pass over the dicts is kinder to the cache than
        # one pass per key. A row without one of the keys raises KeyError: another key set.
        rows = list(map(itemgetter(*keys), objs))
        del objs
        cols: dict[str, Any] = dict.fromkeys(FIELD_ORDER)
        strings = 0
        for key, col in zip(keys, zip(*rows, strict=True), strict=True):
            types = _types(col)
            strings += _strings(col, types)
            if key in cols:
                cols[key] = _check(key, col, types)
        del rows
        if text.count('"') != 2 * (n * width + strings):
            return None  # a repeated key, or strings nested deeper than counted
        if cols["example_id"] is None or cols["correct"] is None:
            return None
        _file_rules(cols, layout.versioned, checks, lineno0)
    except (_Doubt, KeyError):
        return None
    output = cols["output"]
    return {
        "example_id": cols["example_id"],
        "correct": cols["correct"],
        "parsed": cols["parsed"],
        "parsed_stated": np.full(n, layout.stated),
        "target": cols["target"],
        "score": cols["score"],
        "margin": cols["margin"],
        "example_hash": cols["example_hash"],
        "prompt_hash": cols["prompt_hash"],
        "slice": cols["slice"],
        "group": cols["group"],
        "has_output": None if output is None else np.not_equal(np.array(output, object), None),
    }


def _file_rules(cols: dict[str, Any], versioned: bool, checks: FileChecks, lineno0: int) -> None:
    """Raise :class:`_Doubt` unless the block keeps the file-level rules; then record it."""
    if checks.versioned is not None and checks.versioned != versioned:
        raise _Doubt
    found = {}
    for key in FILE_CONSTANT:
        col = cols[key]
        if col is None:
            continue
        values = set(col) - {None}
        if len(values) > 1:
            raise _Doubt
        if values:
            (value,) = values
            if key in checks.constants and checks.constants[key][0] != value:
                raise _Doubt
            found[key] = (value, lineno0 + col.index(value))
    has_group = cols["group"] is not None
    if checks.grouped is not None and checks.grouped[0] != has_group:
        raise _Doubt
    # The block is clean: the state is what the row route would have left.
    if checks.versioned is None:
        checks.versioned = versioned
    for key, first in found.items():
        checks.constants.setdefault(key, first)
    checks.last = None
    if checks.grouped is None:
        checks.grouped = (has_group, lineno0)
