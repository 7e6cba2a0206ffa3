"""Compact columns of one prediction file: what a comparison needs, as numpy arrays.

Owns :class:`Columns` (one array per field compare reads, rows in file order), its column kind
:class:`Coded` (a few distinct values: parsed answers, targets, slices, groups, as integer
codes; the other kind, :class:`~compatlm.eval.text_column.Text`, one string per row for ids and
hashes, has its own module) and :class:`ColumnsBuilder`, which turns blocks of validated rows
into them.

Why columns: a :class:`~compatlm.eval.records.Prediction` object costs ~1.5 KB, so two files of
2M rows took 6 GB as objects; as columns they take ~60-90 bytes a row. Full rows are read
back from the file by byte offset only where they are shown (flipped instances).
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compatlm.eval.text_column import Text, concat_text, null_text, text_block

# The fields of one validated row, as readers hand them to ColumnsBuilder.add (positions).
ROW_FIELDS = (
    "example_id",
    "correct",
    "parsed",
    "parsed_stated",
    "target",
    "score",
    "margin",
    "example_hash",
    "prompt_hash",
    "slice",
    "group",
    "has_output",
)


@dataclass
class Coded:
    """A column of few distinct values (int, str or None) as codes into ``values``.

    Codes follow first appearance in the file (groups: sorted order). Values are compared as
    Python values (1 and "1" differ; bools and floats never occur: the schema refuses them).
    """

    codes: np.ndarray  # (N,) int32: row -> index into values
    values: list[Any]  # code -> value

    def __len__(self) -> int:
        return len(self.codes)

    def get(self, k: int) -> Any:
        return self.values[self.codes[k]]

    def take(self, idx: np.ndarray) -> list[Any]:
        """The values of rows ``idx`` as a list of Python values."""
        values = self.values
        return [values[c] for c in self.codes[idx].tolist()]

    def translate(self, other: Coded) -> np.ndarray:
        """(len(other.values),) int64: each of ``other``'s codes as a code of ``self`` (-1 for
        a value ``self`` does not have), so codes of two files can be compared."""
        index = {v: c for c, v in enumerate(self.values)}
        return np.array([index.get(v, -1) for v in other.values], dtype=np.int64)


@dataclass
class Columns:
    """The rows of one prediction file as arrays, in file order (N rows)."""

    ids: Text  # example_id (never null)
    lines: np.ndarray  # (N,) int64: line number of each row
    correct: np.ndarray  # (N,) bool
    parsed: Coded
    parsed_stated: np.ndarray  # (N,) bool: the row has a "parsed" key (null = extraction failed)
    target: Coded
    score: np.ndarray  # (N,) float64, NaN = null (valid scores are finite)
    margin: np.ndarray  # (N,) float64, NaN = null
    example_hash: Text
    prompt_hash: Text
    slice: Coded
    group: Coded  # all None when the file has no groups
    has_output: np.ndarray  # (N,) bool: output is not null
    offsets: np.ndarray | None = None  # (N,) int64 byte offset of each line (file-backed)
    outputs: list[str | None] | None = None  # every row's output (row-backed sets only)
    order: np.ndarray | None = field(default=None, repr=False)  # (N,) int64 ids argsort

    def __len__(self) -> int:
        return len(self.ids)

    def sort_order(self) -> np.ndarray:
        """(N,) int64 stable argsort of the ids (computed once; the loader's duplicate check
        already needs it)."""
        if self.order is None:
            self.order = np.argsort(self.ids.data, kind="stable")
        return self.order


class ColumnsBuilder:
    """Collects validated rows block by block (tuples in :data:`ROW_FIELDS` order) and builds
    :class:`Columns`. Converting per block keeps the Python objects of one block alive at a
    time, not those of the whole file."""

    def __init__(self) -> None:
        self._blocks: dict[str, list[Any]] = {name: [] for name in ROW_FIELDS}
        self._lines: list[np.ndarray] = []
        self._offsets: list[np.ndarray] = []
        self._index: dict[str, dict[Any, int]] = {
            name: {} for name in ("parsed", "target", "slice")
        }
        self.n = 0

    def add(self, rows: list[tuple], lines: np.ndarray, offsets: np.ndarray | None = None) -> None:
        """Add one block: ``rows`` with their (len(rows),) line numbers and byte offsets."""
        if rows:
            cols = dict(zip(ROW_FIELDS, zip(*rows, strict=True), strict=True))
            self.add_columns(len(rows), cols, lines, offsets)

    def add_columns(
        self,
        n: int,
        cols: dict[str, Sequence[Any] | np.ndarray | None],
        lines: np.ndarray,
        offsets: np.ndarray | None = None,
    ) -> None:
        """Add one block of ``n`` rows given as columns (:data:`ROW_FIELDS` keys; a value of
        None means null on every row) with their (n,) line numbers and byte offsets."""
        b = self._blocks
        b["example_id"].append(text_block(cols["example_id"]))  # type: ignore[arg-type]
        for name in ("correct", "parsed_stated", "has_output"):
            col = cols[name]
            b[name].append(np.zeros(n, bool) if col is None else np.asarray(col, dtype=bool))
        # Groups (often 100k distinct ids) are kept as strings and coded once at the end: a
        # dict of them filled block by block would pin the blocks' freed memory in place.
        col = cols["group"]
        b["group"].append(null_text(n) if col is None else text_block(col))  # type: ignore[arg-type]
        for name in ("parsed", "target", "slice"):
            col = cols[name]
            index = self._index[name]
            if col is None:
                code = index.setdefault(None, len(index))
                b[name].append(np.full(n, code, dtype=np.int32))
                continue
            for value in dict.fromkeys(col):  # the block's values, first appearance first
                if value not in index:
                    index[value] = len(index)
            b[name].append(np.fromiter(map(index.__getitem__, col), np.int32, count=n))
        for name in ("score", "margin"):
            # None becomes NaN in a float array: the "null" of score and margin.
            col = cols[name]
            b[name].append(np.full(n, np.nan) if col is None else np.asarray(col, np.float64))
        for name in ("example_hash", "prompt_hash"):
            col = cols[name]
            b[name].append(null_text(n) if col is None else text_block(col))  # type: ignore[arg-type]
        self._lines.append(np.asarray(lines, dtype=np.int64))
        if offsets is not None:
            self._offsets.append(np.asarray(offsets, dtype=np.int64))
        self.n += n

    def first_duplicate(
        self, pending_ids: Sequence[str] = (), pending_lines: Sequence[int] = ()
    ) -> tuple[str, int, int] | None:
        """(id, line, first line) of the first repeated id in file order among the rows added
        so far and the ``pending`` ones not yet added, or None."""
        blocks, lines = [*self._blocks["example_id"]], [*self._lines]
        if len(pending_ids):
            blocks.append(text_block(list(pending_ids)))
            lines.append(np.array(pending_lines, dtype=np.int64))
        ids = concat_text(blocks)
        found = first_duplicate(ids.data)
        if found is None:
            return None
        line_of = np.concatenate(lines)
        row, first = found
        return ids.get(row) or "", int(line_of[row]), int(line_of[first])

    def build(self, outputs: list[str | None] | None = None) -> Columns:
        """The columns of every row added. Each field's blocks are released as soon as they
        are joined, so the build needs one field's worth of extra memory, not a copy of all."""
        b = self._blocks

        # The blocks' small arrays live in glibc's heap, the joined ones are mapped apart:
        # without a trim after each field the freed blocks would stay resident until the end.
        def cat(name: str, dtype: Any) -> np.ndarray:
            joined = _cat(b.pop(name), dtype)
            trim_heap()
            return joined

        def coded(name: str) -> Coded:
            return Coded(cat(name, np.int32), list(self._index[name]))

        def text(name: str) -> Text:
            joined = concat_text(b.pop(name))
            trim_heap()
            return joined

        lines, self._lines = _cat(self._lines, np.int64), []
        offsets, self._offsets = (_cat(self._offsets, np.int64) if self._offsets else None), []
        cols = Columns(
            ids=text("example_id"),
            lines=lines,
            correct=cat("correct", bool),
            parsed=coded("parsed"),
            parsed_stated=cat("parsed_stated", bool),
            target=coded("target"),
            score=cat("score", np.float64),
            margin=cat("margin", np.float64),
            example_hash=text("example_hash"),
            prompt_hash=text("prompt_hash"),
            slice=coded("slice"),
            group=_coded_text(text("group")),
            has_output=cat("has_output", bool),
            offsets=offsets,
            outputs=outputs,
        )
        self._blocks = {name: [] for name in ROW_FIELDS}
        self.n = 0
        return cols


def _coded_text(t: Text) -> Coded:
    """A :class:`Text` column as a :class:`Coded` one (codes in sorted order of the values)."""
    if t.none is not None and t.none.all():
        return Coded(np.zeros(len(t), dtype=np.int32), [None] if len(t) else [])
    if t.none is not None:  # not after the loader's all-or-none rule; kept exact anyway
        values = t.take(np.arange(len(t)))
        index: dict[Any, int] = {}
        codes = [index.setdefault(v, len(index)) for v in values]
        return Coded(np.array(codes, dtype=np.int32), list(index))
    distinct, codes = np.unique(t.data, return_inverse=True)
    values = Text(distinct).take(np.arange(len(distinct)))
    return Coded(codes.astype(np.int32).reshape(-1), values)


def trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc only; elsewhere a no-op).

    The block-sized arrays and objects a load frees stay in glibc's heap: after large frees
    it raises its mmap threshold, so later arrays come from the heap and free memory below
    live data is kept. For a 2M-row file that is ~150 MB of RSS holding nothing.
    """
    with contextlib.suppress(AttributeError, OSError):  # not glibc
        ctypes.CDLL(None).malloc_trim(0)


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts) if parts else np.array([], dtype=dtype)


def first_duplicate(ids: np.ndarray, order: np.ndarray | None = None) -> tuple[int, int] | None:
    """(row, first row) of the first id in file order that repeats an earlier one, or None.

    ``ids`` is the (N,) string data of a :class:`Text`; ``order`` its stable argsort when the
    caller has it. A stable argsort puts equal ids side by side in row order, so a sorted
    position equal to its predecessor is a repeat and the head of its run the first occurrence.
    """
    if len(ids) < 2:
        return None
    if order is None:
        order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    repeat = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1  # sorted positions of repeats
    if not len(repeat):
        return None
    k = int(repeat[np.argmin(order[repeat])])  # the repeat that comes first in the file
    head = k
    while head > 0 and ordered[head - 1] == ordered[k]:
        head -= 1
    return int(order[k]), int(order[head])
