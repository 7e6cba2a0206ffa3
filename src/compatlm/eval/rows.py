"""One prediction line at a time: the plain-Python check, the exact fallback, the file rules.

Owns :func:`fast_row` (decode a line and accept it when every value is of a type and range
the pydantic model accepts unchanged, or say it cannot), :func:`careful_row` (what the
row-by-row loader did: ``io.parse_json``, then :func:`~compatlm.eval.prediction.parse_line`,
raising the model's one-line errors) and :class:`FileChecks` (the file-level rules, applied
row by row in file order by every route). :mod:`compatlm.eval.reader` uses them for blocks the
whole-block check of :mod:`compatlm.eval.block` does not clear; the property tests hold
fast_row to the model (it accepts only what the model accepts, with the same values).
"""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Any

from compatlm.errors import input_error
from compatlm.eval.prediction import FIELDS, FILE_CONSTANT, REQUIRED_V1, parse_line, row_of
from compatlm.io import parse_json

_JSON_SPACE = " \t\n\r"
_REQUIRED = frozenset(REQUIRED_V1)
# The schema fields in the order fast_row unpacks them (tests check it is every field).
FIELD_ORDER = (
    "schema_version", "task", "kind", "role", "model", "example_id", "example_hash",
    "prompt_hash", "target", "output", "parsed", "correct", "score", "margin",
    "loglikelihoods", "choice_lengths", "metric", "slice", "group",
)  # fmt: skip
_STR_OR_NONE = frozenset({str, type(None)})
_ID_TYPES = frozenset({str, int, type(None)})  # target, parsed
_FLOAT = frozenset({float})
_INT = frozenset({int})
_I64 = 2**63
_EXACT = 2**53  # ints up to here are exactly representable as floats


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN / Infinity: the careful path names the problem


# Objects decode as lists of (key, value) pairs: duplicate keys stay visible, and the key tuple
# of a line selects a cached layout instead of a dict being built.
_DECODE = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=list).raw_decode


class _Layout:
    """How to read the lines of one key sequence: positions of the schema fields."""

    __slots__ = ("get", "stated", "versioned")

    def __init__(self, keys: tuple[str, ...]) -> None:
        pad = len(keys)  # index of the None appended to the values
        self.get = operator.itemgetter(*(keys.index(f) if f in keys else pad for f in FIELD_ORDER))
        self.stated = "parsed" in keys
        self.versioned = "schema_version" in keys


def layout_of(keys: tuple[str, ...]) -> _Layout | None:
    """The layout of a key sequence, or None when its lines need the careful path."""
    names = set(keys)
    if len(names) != len(keys):
        return None  # a duplicate key: parse_json names it
    if "schema_version" in names and not (names <= FIELDS and names >= _REQUIRED):
        return None  # an unknown or missing field of a compatlm line: the model names it
    return _Layout(keys)


_CAREFUL = object()  # layout cache entry of key sequences that always take the careful path


def fast_row(line: str, layouts: dict[tuple, Any]) -> tuple | None:
    """(row, versioned, constants) of a line whose decoded values the model would accept as
    they are, or None when the line needs the careful path.

    ``row`` is in :data:`compatlm.eval.columns.ROW_FIELDS` order, ``constants`` the
    (task, kind, role, model, metric) values; ``layouts`` caches key sequences between calls.
    """
    try:
        pairs, end = _DECODE(line)
    except (ValueError, RecursionError):
        return None
    if type(pairs) is not list or not pairs:
        return None
    if end != len(line) and line[end:].strip(_JSON_SPACE):
        return None
    keys, vals = zip(*pairs, strict=True)
    layout = layouts.get(keys)
    if layout is None:
        layout = layout_of(keys) or _CAREFUL
        if len(layouts) < 256:  # a file of ever-new key sets just stops caching
            layouts[keys] = layout
    if layout is _CAREFUL:
        return None
    (sv, task, kind, role, model, eid, eh, ph, target, output, parsed, correct, score, margin,
     lls, lengths, metric, slc, group) = layout.get((*vals, None))  # fmt: skip
    if type(eid) is not str or not eid or type(correct) is not bool:
        return None
    types = {type(task), type(role), type(model), type(eh), type(ph), type(output)}
    types.update((type(metric), type(slc)))
    if not types <= _STR_OR_NONE:
        return None
    if kind is not None and kind != "multiple_choice" and kind != "generation":
        return None
    if type(target) not in _ID_TYPES or type(parsed) not in _ID_TYPES:
        return None
    if (type(target) is int and not -_I64 <= target < _I64) or (
        type(parsed) is int and not -_I64 <= parsed < _I64
    ):
        return None
    if score is not None:
        if type(score) is float:
            if not 0.0 <= score <= 1.0:  # NaN and inf fail too
                return None
        elif type(score) is int and (score == 0 or score == 1):
            score = float(score)
        else:
            return None
    if margin is not None:
        if type(margin) is float:
            if margin - margin != 0.0:  # inf (1e999 decodes to it) or NaN
                return None
        elif type(margin) is int and -_EXACT <= margin <= _EXACT:
            margin = float(margin)
        else:
            return None
    if lls is not None:
        if type(lls) is not list:
            return None
        if lls:
            total = sum(lls) if set(map(type, lls)) == _FLOAT else None
            if total is None or total - total != 0.0:  # an inf/NaN element, or overflow
                return None
    if lengths is not None:
        if type(lengths) is not list:
            return None
        if lengths and (
            set(map(type, lengths)) != _INT or min(lengths) < -_I64 or max(lengths) >= _I64
        ):
            return None
    if group is not None:
        if type(group) is str:
            if not group:
                return None
        elif type(group) is int:
            group = str(group)  # as the model's before-validator does
        else:
            return None
    if layout.versioned and (type(sv) is not int or sv != 1):  # null included
        return None
    row = (eid, correct, parsed, layout.stated, target, score, margin, eh, ph, slc, group,
           output is not None)  # fmt: skip
    return row, layout.versioned, (task, kind, role, model, metric)


def careful_row(line: str, path: Path, lineno: int) -> tuple:
    """What the row-by-row loader did with a line: strict JSON, then the model. Raises its
    one-line errors; returns the same (row, versioned, constants) as :func:`fast_row`."""
    obj = parse_json(line, path, lineno)
    if not isinstance(obj, dict):
        raise input_error(f"expected a JSON object, found {type(obj).__name__}", path, lineno)
    return row_of(parse_line(obj, path, lineno))


class FileChecks:
    """The file-level rules, applied row by row in file order (duplicates aside)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.versioned: bool | None = None
        self.constants: dict[str, tuple[Any, int]] = {}
        self.last: tuple | None = None
        self.grouped: tuple[bool, int] | None = None  # (first row has a group, its line)

    def mixed_versions(self, versioned: bool, lineno: int) -> None:
        if self.versioned is None:
            self.versioned = versioned
        elif self.versioned != versioned:
            raise input_error(
                "mixes compatlm lines (with schema_version) and foreign lines (without)",
                self.path,
                lineno,
                "schema_version",
            )

    def constants_and_group(self, consts: tuple, group: str | None, lineno: int) -> None:
        # A row with the same constants as the previous one cannot break the rule: skip.
        if consts != self.last:
            for key, value in zip(FILE_CONSTANT, consts, strict=True):
                if value is None:
                    continue
                if key not in self.constants:
                    self.constants[key] = (value, lineno)
                elif self.constants[key][0] != value:
                    what = "tasks" if key == "task" else f"{key} values"
                    raise input_error(
                        f"mixed {what} in one file: expected {self.constants[key][0]!r} "
                        f"(as on line {self.constants[key][1]}), found {value!r}",
                        self.path,
                        lineno,
                        key,
                    )
            self.last = consts
        has = group is not None
        if self.grouped is None:
            self.grouped = (has, lineno)
        elif self.grouped[0] != has:
            first = self.grouped
            what = "has no group" if first[0] else f"has group {group!r}"
            raise input_error(
                f"this row {what} but line {first[1]} "
                f"{'has one' if first[0] else 'has none'} (give every row a group, or none)",
                self.path,
                lineno,
                "group",
            )
