"""Prediction records: the per-instance JSONL schema and strict loading of prediction files.

Owns :func:`load_predictions`, which reads a file into a
:class:`~compatlm.eval.prediction_set.PredictionSet` (one validated file, keyed by
``example_id``). The schema it validates against — :class:`Prediction`, one line of
``predictions/<task>/<role>.jsonl`` — lives below the readers in :mod:`compatlm.eval.prediction`;
both are re-exported here, their usual import path. Three kinds of input are read:

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
from typing import Any

from compatlm.errors import CompatlmError, input_error
from compatlm.eval.lmeval_logs import load_lmeval_samples, pick_filter
from compatlm.eval.prediction import (
    FIELDS,
    FILE_CONSTANT,
    REQUIRED_V1,
    SCHEMA_VERSION,
    Prediction,
    describe,
    parse_line,
    row_of,
    validation_message,
)
from compatlm.eval.prediction_set import PredictionSet
from compatlm.eval.reader import read_columns
from compatlm.io import read_jsonl

__all__ = [
    "FIELDS",
    "FILE_CONSTANT",
    "REQUIRED_V1",
    "SCHEMA_VERSION",
    "Prediction",
    "PredictionSet",
    "describe",
    "is_lmeval_file",
    "load_predictions",
    "parse_line",
    "row_of",
    "validation_message",
]


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
