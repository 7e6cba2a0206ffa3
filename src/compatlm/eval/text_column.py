"""The string column of a prediction file: ids and hashes, one string (or None) per row.

Owns :class:`Text` and what compare and the column builder do with it: build one from a block
of row values, join blocks, compare two columns row by row. The representation (fixed-width
bytes where exact, else variable-width strings) is what keeps 2M ids at memcpy speed and a
few bytes a row; :mod:`compatlm.eval.columns` holds the other column kind and the builder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STRINGS = np.dtypes.StringDType()

# Longest string (UTF-8 bytes) kept fixed-width: one long id must not make every row wide.
_MAX_WIDTH = 64


@dataclass
class Text:
    """One string or None per row: ``data`` holds the strings ("" for None), ``none`` marks
    the nulls (None when there are none).

    ``data`` is fixed-width UTF-8 bytes (``S<L>``, L = the longest value, at most
    :data:`_MAX_WIDTH`) when no value contains NUL (numpy pads with NULs and strips them on
    read, which is exact only then): hex digests and ids cost L bytes a row, and sorting and
    gathering them runs at memcpy speed. Longer values are numpy's variable-width
    ``StringDType``; values with a NUL are Python strings (object), because numpy compares
    variable-width strings only up to the first NUL ("a\x00b" == "a\x00c"). Byte order is
    not string order, but only equality (and a consistent sort) matters here.
    """

    data: np.ndarray  # (N,) S<L>, StringDType or object
    none: np.ndarray | None = None  # (N,) bool

    def __len__(self) -> int:
        return len(self.data)

    @property
    def fixed(self) -> bool:
        return self.data.dtype.kind == "S"

    def get(self, k: int) -> str | None:
        if self.none is not None and self.none[k]:
            return None
        value = self.data[k]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    def take(self, idx: np.ndarray) -> list[str | None]:
        """The values of rows ``idx`` as Python strings (None for null)."""
        data = self.data[idx]
        values = [v.decode("utf-8") for v in data.tolist()] if self.fixed else data.tolist()
        if self.none is not None:
            values = [
                None if m else v for v, m in zip(values, self.none[idx].tolist(), strict=True)
            ]
        return values

    def present(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx),) bool: the row has a string (not null)."""
        if self.none is None:
            return np.ones(len(idx), dtype=bool)
        return ~self.none[idx]

    def nonempty(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx),) bool: the row has a non-empty string."""
        data = self.data[idx]
        if data.dtype == object:
            lengths = np.fromiter(map(len, data), dtype=np.int64, count=len(data))
        else:
            lengths = np.strings.str_len(data)
        return self.present(idx) & (lengths > 0)


def _widen(data: np.ndarray, kind: str) -> np.ndarray:
    """String data as variable-width strings (kind "T") or Python strings ("O")."""
    if data.dtype.kind == kind:
        return data
    if data.dtype.kind == "S":
        data = np.strings.decode(data, "utf-8")
    return data.astype(STRINGS if kind == "T" else object)


def same_kind(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` (string data of two Text columns) in one comparable representation:
    fixed-width bytes with fixed-width bytes of any width, else the wider of the two kinds."""
    kinds = {a.dtype.kind, b.dtype.kind}
    if kinds == {"S"}:
        return a, b
    kind = "O" if "O" in kinds else "T"
    return _widen(a, kind), _widen(b, kind)


def text_differs(a: Text, ia: np.ndarray, b: Text, ib: np.ndarray) -> np.ndarray:
    """(len(ia),) bool: row ia[k] of ``a`` and row ib[k] of ``b`` hold different strings
    (nulls count as "")."""
    da, db = same_kind(a.data[ia], b.data[ib])
    return da != db


def text_block(values: Sequence[str | None]) -> Text:
    """A :class:`Text` of one block of row values."""
    none = None
    if None in values:
        as_objects = np.array(values, dtype=object)  # (n,)
        none = np.equal(as_objects, None)
        as_objects[none] = ""
        values = as_objects.tolist()
    joined = "".join(values)
    if "\x00" in joined:
        data = np.empty(len(values), dtype=object)
        data[:] = values
        return Text(data, none)
    if joined.isascii():
        data = np.array(values, dtype="S")
    else:
        data = np.array([v.encode("utf-8") for v in values], dtype="S")
    if data.dtype.itemsize <= _MAX_WIDTH:
        return Text(data, none)
    return Text(np.array(values, dtype=STRINGS), none)


def null_text(n: int) -> Text:
    """A :class:`Text` of ``n`` nulls (a block whose rows lack the field)."""
    return Text(np.zeros(n, dtype="S1"), np.ones(n, dtype=bool))


def concat_text(blocks: list[Text]) -> Text:
    """Blocks of one column as one :class:`Text` (fixed-width only if every block is)."""
    if not blocks:
        return Text(np.array([], dtype="S1"))
    kinds = {b.data.dtype.kind for b in blocks}
    if kinds == {"S"}:
        data = np.concatenate([b.data for b in blocks])  # widths promote to the widest
    else:
        kind = "O" if "O" in kinds else "T"
        data = np.concatenate([_widen(b.data, kind) for b in blocks])
    none = None
    if any(b.none is not None for b in blocks):
        none = np.concatenate(
            [np.zeros(len(b), dtype=bool) if b.none is None else b.none for b in blocks]
        )
    return Text(data, none)
