"""Prediction records: the per-instance JSONL schema and strict loading of prediction files.

Owns :class:`Prediction` (one line of ``predictions/<task>/<role>.jsonl``, schema_version 1;
the schema, and the source of every per-line error message), :class:`PredictionSet` (one
validated file, keyed by ``example_id``) and :func:`load_predictions`, which reads three kinds
of input:

* compatlm files (lines carry ``schema_version: 1``; every schema key must be present),
* minimal foreign lines (``example_id`` + ``correct`` and optionally parsed/output/score/target/
  slice/group/margin) so predictions from any harness can be compared,
* lm-eval ``--log_samples`` files (``samples_<task>_<date>.jsonl``), delegated to
  :mod:`compatlm.eval.lmeval_logs`.

Every problem is a one-line :class:`~compatlm.errors.CompatlmError` naming file, line and field.

compatlm and foreign files are read into compact columns (:mod:`compatlm.eval.reader`,
:mod:`compatlm.eval.columns`): a 2M-row file is ~120-180 MB of arrays instead of 3 GB of
objects, with exactly the values and errors the model gives. lm-eval files (small) are
validated row by row into :class:`Prediction` objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, field_validator

from compatlm.errors import CompatlmError, input_error
from compatlm.io import read_jsonl

if TYPE_CHECKING:
    from compatlm.eval.columns import Columns

SCHEMA_VERSION = 1

# How each field must look, for error messages ("expected ..., found ...").
_EXPECTED = {
    "schema_version": "1",
    "task": "a string",
    "kind": "'multiple_choice' or 'generation'",
    "role": "a string",
    "model": "a string",
    "example_id": "a non-empty string",
    "example_hash": "a string or null",
    "prompt_hash": "a string or null",
    "target": "an integer (choice index) or a string",
    "output": "a string or null",
    "parsed": "an integer, a string or null",
    "correct": "true or false (a JSON boolean)",
    "score": "a finite number in [0, 1] or null",
    "margin": "a finite number or null",
    "loglikelihoods": "a list of finite numbers or null",
    "choice_lengths": "a list of integers or null",
    "metric": "a string",
    "slice": "a string or null",
    "group": "a non-empty string, an integer or null",
}

# Keys a schema_version-1 line must carry (values may be null where the schema allows it):
# a compatlm file missing one of them was written by a buggy or older writer, and comparing it
# silently would hide that.
REQUIRED_V1 = (
    "task",
    "kind",
    "role",
    "model",
    "example_id",
    "example_hash",
    "prompt_hash",
    "target",
    "output",
    "parsed",
    "correct",
    "metric",
)

# Keys that, if present on some lines, must be equal on every line of one file.
FILE_CONSTANT = ("task", "kind", "role", "model", "metric")


class Prediction(BaseModel):
    """One (model, example) result. Only ``example_id`` and ``correct`` are required so that
    foreign prediction files can be compared; compatlm's own files carry every field."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    schema_version: Literal[1] | None = None
    task: str | None = None
    kind: Literal["multiple_choice", "generation"] | None = None
    role: str | None = None
    model: str | None = None
    example_id: str = Field(min_length=1)
    example_hash: str | None = None
    prompt_hash: str | None = None
    target: int | str | None = None
    output: str | None = None
    parsed: int | str | None = None
    correct: bool
    score: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    margin: float | None = Field(None, allow_inf_nan=False)
    # Finite only: 1e999 parses as inf, and an infinite log-likelihood decides no choice.
    loglikelihoods: list[FiniteFloat] | None = None
    choice_lengths: list[int] | None = None
    metric: str | None = None
    slice: str | None = None
    # The unit that makes instances correlated (a fact, a source document): statistics resample
    # and test whole groups. Optional, but all-or-none within a file.
    group: str | None = Field(None, min_length=1)

    @field_validator("group", mode="before")
    @classmethod
    def _group_as_text(cls, value: Any) -> Any:
        # Integer group ids (as task ids may be) are stored as strings, so 7 and "7" are one
        # group in both files; bools are not ids and stay a type error.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @property
    def has_parsed(self) -> bool:
        """True when the writer stated ``parsed`` (null = extraction failed), not just omitted it."""
        return "parsed" in self.model_fields_set


# Looked up once per key of every foreign line: the class attribute is a property that costs
# about a microsecond per access, a third of the load time of a large file.
FIELDS = frozenset(Prediction.model_fields)


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
            from compatlm.eval.columns import ColumnsBuilder

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
        from compatlm.eval.reader import read_outputs

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


def row_of(pred: Prediction) -> tuple[tuple, bool, tuple]:
    """(row in :data:`compatlm.eval.columns.ROW_FIELDS` order, has schema_version, the
    :data:`FILE_CONSTANT` values) of a validated row."""
    row = (pred.example_id, pred.correct, pred.parsed, pred.has_parsed, pred.target, pred.score,
           pred.margin, pred.example_hash, pred.prompt_hash, pred.slice, pred.group,
           pred.output is not None)  # fmt: skip
    consts = (pred.task, pred.kind, pred.role, pred.model, pred.metric)
    return row, pred.schema_version is not None, consts


def describe(value: Any) -> str:
    """``1 (int)`` style rendering of a found value for error messages (kept short)."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = "null" if value is None else type(value).__name__
    kind = {"dict": "object", "list": "list", "str": "string", "bool": "boolean"}.get(kind, kind)
    return f"{text} ({kind})"


def validation_message(err: ValidationError) -> tuple[str, str]:
    """(field, message) for the first problem pydantic found, in our one-line style."""
    first = err.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "(line)"
    if first["type"] == "missing":
        return name, "missing required field"
    if first["type"] == "extra_forbidden":
        return name, f"unknown field; valid fields: {', '.join(Prediction.model_fields)}"
    expected = _EXPECTED.get(name, first["msg"])
    return name, f"expected {expected}, found {describe(first.get('input'))}"


def parse_line(obj: dict[str, Any], path: Path, lineno: int) -> Prediction:
    """Validate one JSON object as a :class:`Prediction`."""
    if "schema_version" in obj:
        if obj["schema_version"] != SCHEMA_VERSION:
            raise input_error(
                f"expected schema_version {SCHEMA_VERSION}, found {describe(obj['schema_version'])}"
                " (written by another compatlm version?)",
                path,
                lineno,
                "schema_version",
            )
        for key in REQUIRED_V1:
            if key not in obj:
                raise input_error(
                    "missing required field (every key is required when schema_version is 1)",
                    path,
                    lineno,
                    key,
                )
    else:
        # Foreign lines may carry any extra bookkeeping (question text, ids of their own):
        # keep only the fields we know, so their extras are not an error.
        obj = {k: v for k, v in obj.items() if k in FIELDS}
    try:
        return Prediction.model_validate(obj)
    except ValidationError as err:
        name, message = validation_message(err)
        raise input_error(message, path, lineno, name) from None


def _looks_like_lmeval(path: Path, first: dict[str, Any]) -> bool:
    if "example_id" in first:
        return False
    return "doc_id" in first and ("filtered_resps" in first or "resps" in first)


def is_lmeval_file(path: str | Path) -> bool:
    """True when ``path`` holds lm-eval ``--log_samples`` lines (judged by its first line)."""
    path = Path(path)
    return _looks_like_lmeval(path, _first_object(path))


def _first_object(path: Path) -> dict[str, Any]:
    for _, obj in read_jsonl(path):
        return obj
    raise input_error("file is empty (no JSON lines)", path)  # pragma: no cover - read_jsonl


def load_predictions(
    path: str | Path,
    *,
    role: str | None = None,
    filter: str | None = None,
    metric: str | None = None,
    join_key: str | None = None,
) -> PredictionSet:
    """Read and validate a prediction file (compatlm, minimal foreign or lm-eval samples).

    ``role`` labels the set (default: the role written in the file, else the file stem).
    ``filter``, ``metric`` and ``join_key`` apply to lm-eval files only: which filter's rows to
    use (default: the only one, else ``none``), which per-sample metric decides ``correct`` and
    where ``example_id`` comes from (default ``doc_id``; ``doc.<field>`` for a doc field).
    """
    path = Path(path)
    if is_lmeval_file(path):
        from compatlm.eval.lmeval_logs import load_lmeval_samples, pick_filter

        sets = load_lmeval_samples(path, metric=metric, role=role, join_key=join_key)
        return pick_filter(sets, filter, path)
    if filter is not None:
        raise CompatlmError(f"{path}: --filter applies to lm-eval samples files only")
    if metric is not None:
        raise CompatlmError(f"{path}: --metric applies to lm-eval samples files only")
    if join_key is not None:
        raise CompatlmError(f"{path}: --join-key applies to lm-eval samples files only")
    return _load_compatlm(path, role=role)


def _load_compatlm(path: Path, *, role: str | None) -> PredictionSet:
    from compatlm.eval.reader import read_columns

    cols, const, versioned = read_columns(path)
    return PredictionSet(
        path=path,
        source="compatlm" if versioned else "foreign",
        task=const.get("task"),
        kind=const.get("kind"),
        role=role or const.get("role"),
        model=const.get("model"),
        metric=const.get("metric"),
        columns=cols,
    )
