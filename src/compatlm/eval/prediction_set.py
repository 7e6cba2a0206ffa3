"""One validated prediction file: :class:`PredictionSet`, rows keyed by ``example_id`` in file
order, held as compact columns (:mod:`compatlm.eval.columns`) or as :class:`Prediction` objects.

:func:`compatlm.eval.records.load_predictions` builds one from a file (and re-exports the
class); :mod:`compatlm.eval.lmeval_logs` builds them from lm-eval samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from compatlm.errors import CompatlmError
from compatlm.eval.columns import Columns, ColumnsBuilder
from compatlm.eval.prediction import Prediction, parse_line, row_of
from compatlm.eval.reader import read_outputs
from compatlm.io import read_jsonl


class PredictionSet:
    """A validated prediction file: rows keyed by ``example_id`` in file order.

    Two kinds, one interface. *Compact* sets (compatlm and minimal foreign files) hold
    :class:`~compatlm.eval.columns.Columns`; :attr:`rows` re-reads the file into
    :class:`Prediction` objects on first use, which costs what the columns save (use it for
    small files or when every field is needed). *Row-backed* sets (lm-eval files, sets built
    in code) hold the objects; their columns are derived on first use, so fill ``rows`` first.
    """

    def __init__(
        self,
        path: Path,
        rows: dict[str, Prediction] | None = None,
        lines: dict[str, int] | None = None,  # example_id -> line number, for error messages
        source: Literal["compatlm", "foreign", "lm-eval"] = "foreign",
        task: str | None = None,
        kind: str | None = None,
        role: str | None = None,
        model: str | None = None,
        metric: str | None = None,
        filter: str | None = None,  # lm-eval filter the rows come from
        # Hashes are only comparable between files hashed the same way: compatlm hashes the
        # example's canonical JSON and the prompt's token ids, lm-eval the doc and prompt text.
        hash_scheme: Literal["compatlm", "lm-eval"] = "compatlm",
        notes: list[str] | None = None,
        *,
        columns: Columns | None = None,
    ) -> None:
        if (rows is None) == (columns is None):
            raise TypeError("PredictionSet needs rows or columns (one of them)")
        self.path = Path(path)
        self._rows = rows
        self._lines = lines if rows is not None else None
        self._columns = columns
        self.source = source
        self.task, self.kind, self.role, self.model = task, kind, role, model
        self.metric, self.filter, self.hash_scheme = metric, filter, hash_scheme
        self.notes = list(notes or [])

    def __repr__(self) -> str:
        return f"PredictionSet({str(self.path)!r}, {len(self)} rows, source={self.source!r})"

    @property
    def columns(self) -> Columns:
        """The rows as arrays (built from ``rows`` once for a row-backed set)."""
        if self._columns is None:
            rows = list(self.rows.values())
            builder = ColumnsBuilder()
            lines = self.lines
            builder.add(
                [row_of(p)[0] for p in rows], np.array([lines.get(p.example_id, 0) for p in rows])
            )
            self._columns = builder.build(outputs=[p.output for p in rows])
        return self._columns

    @property
    def rows(self) -> dict[str, Prediction]:
        """example_id -> :class:`Prediction` (a compact set re-reads its file for them)."""
        if self._rows is None:
            self._rows = self._read_rows()
        return self._rows

    @property
    def lines(self) -> dict[str, int]:
        if self._lines is None:
            cols = self.columns
            self._lines = dict(zip(self.ids(), cols.lines.tolist(), strict=True))
        return self._lines

    def ids(self, idx: np.ndarray | None = None) -> list[str]:
        """The example ids of rows ``idx`` (default: all), in file order."""
        ids = self.columns.ids
        return ids.take(np.arange(len(ids)) if idx is None else idx)  # type: ignore[return-value]

    def outputs(self, idx: np.ndarray) -> list[str | None]:
        """The ``output`` of rows ``idx``: kept for row-backed sets, re-read by byte offset
        for compact ones (outputs can be long, and only flipped rows are shown)."""
        cols = self.columns
        if cols.outputs is not None:
            return [cols.outputs[k] for k in idx.tolist()]
        return read_outputs(self.path, cols, idx)

    def _read_rows(self) -> dict[str, Prediction]:
        rows = {}
        for lineno, obj in read_jsonl(self.path):
            pred = parse_line(obj, self.path, lineno)
            rows[pred.example_id] = pred
        if list(rows) != self.ids():
            raise CompatlmError(f"{self.path}: the file changed after it was read; read it again")
        return rows

    def __len__(self) -> int:
        # A row-backed set counts its rows without building columns (lm-eval fills them).
        if self._columns is None and self._rows is not None:
            return len(self._rows)
        return len(self.columns)

    @property
    def has_parsed(self) -> bool:
        return len(self) > 0 and bool(self.columns.parsed_stated.all())

    @property
    def has_score(self) -> bool:
        return len(self) > 0 and not bool(np.isnan(self.columns.score).any())

    @property
    def has_groups(self) -> bool:
        # The loader refuses files where only some rows have a group, so one row decides.
        return len(self) > 0 and self.columns.group.get(0) is not None

    @property
    def label(self) -> str:
        return self.role or self.path.stem
