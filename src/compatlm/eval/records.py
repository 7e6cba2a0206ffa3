"""Prediction records: the per-instance JSONL schema and strict loading of prediction files.

Owns :class:`Prediction` (one line of ``predictions/<task>/<role>.jsonl``, schema_version 1),
:class:`PredictionSet` (one validated file, keyed by ``example_id``) and
:func:`load_predictions`, which reads three kinds of input:

* compatlm files (lines carry ``schema_version: 1``; every schema key must be present),
* minimal foreign lines (``example_id`` + ``correct`` and optionally parsed/output/score/target/
  slice/margin) so predictions from any harness can be compared,
* lm-eval ``--log_samples`` files (``samples_<task>_<date>.jsonl``), delegated to
  :mod:`compatlm.eval.lmeval_logs`.

Every problem is a one-line :class:`~compatlm.errors.CompatlmError` naming file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compatlm.errors import CompatlmError, input_error
from compatlm.io import read_jsonl

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
_FILE_CONSTANT = ("task", "kind", "role", "model", "metric")


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
    loglikelihoods: list[float] | None = None
    choice_lengths: list[int] | None = None
    metric: str | None = None
    slice: str | None = None

    @property
    def has_parsed(self) -> bool:
        """True when the writer stated ``parsed`` (null = extraction failed), not just omitted it."""
        return "parsed" in self.model_fields_set


@dataclass
class PredictionSet:
    """A validated prediction file: rows keyed by ``example_id`` in file order."""

    path: Path
    rows: dict[str, Prediction]
    lines: dict[str, int]  # example_id -> line number, for error messages
    source: Literal["compatlm", "foreign", "lm-eval"]
    task: str | None = None
    kind: str | None = None
    role: str | None = None
    model: str | None = None
    metric: str | None = None
    filter: str | None = None  # lm-eval filter the rows come from
    # Hashes are only comparable between files hashed the same way: compatlm hashes the
    # example's canonical JSON and the prompt's token ids, lm-eval hashes the doc and prompt text.
    hash_scheme: Literal["compatlm", "lm-eval"] = "compatlm"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def has_parsed(self) -> bool:
        return bool(self.rows) and all(p.has_parsed for p in self.rows.values())

    @property
    def has_score(self) -> bool:
        return bool(self.rows) and all(p.score is not None for p in self.rows.values())

    @property
    def label(self) -> str:
        return self.role or self.path.stem


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
        obj = {k: v for k, v in obj.items() if k in Prediction.model_fields}
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
) -> PredictionSet:
    """Read and validate a prediction file (compatlm, minimal foreign or lm-eval samples).

    ``role`` labels the set (default: the role written in the file, else the file stem).
    ``filter`` and ``metric`` apply to lm-eval files only: which filter's rows to use (default:
    the only one, else ``none``) and which per-sample metric decides ``correct``.
    """
    path = Path(path)
    if is_lmeval_file(path):
        from compatlm.eval.lmeval_logs import load_lmeval_samples, pick_filter

        sets = load_lmeval_samples(path, metric=metric, role=role)
        return pick_filter(sets, filter, path)
    if filter is not None:
        raise CompatlmError(f"{path}: --filter applies to lm-eval samples files only")
    if metric is not None:
        raise CompatlmError(f"{path}: --metric applies to lm-eval samples files only")
    return _load_compatlm(path, role=role)


def _load_compatlm(path: Path, *, role: str | None) -> PredictionSet:
    rows: dict[str, Prediction] = {}
    lines: dict[str, int] = {}
    constants: dict[str, tuple[Any, int]] = {}
    versioned: bool | None = None
    for lineno, obj in read_jsonl(path):
        pred = parse_line(obj, path, lineno)
        this_versioned = pred.schema_version is not None
        if versioned is None:
            versioned = this_versioned
        elif versioned != this_versioned:
            raise input_error(
                "mixes compatlm lines (with schema_version) and foreign lines (without)",
                path,
                lineno,
                "schema_version",
            )
        if pred.example_id in rows:
            raise input_error(
                f"duplicate example_id {pred.example_id!r} (first on line "
                f"{lines[pred.example_id]})",
                path,
                lineno,
                "example_id",
            )
        for key in _FILE_CONSTANT:
            value = getattr(pred, key)
            if value is None:
                continue
            if key not in constants:
                constants[key] = (value, lineno)
            elif constants[key][0] != value:
                what = "tasks" if key == "task" else f"{key} values"
                raise input_error(
                    f"mixed {what} in one file: expected {constants[key][0]!r} "
                    f"(as on line {constants[key][1]}), found {value!r}",
                    path,
                    lineno,
                    key,
                )
        rows[pred.example_id] = pred
        lines[pred.example_id] = lineno
    const = {k: v[0] for k, v in constants.items()}
    return PredictionSet(
        path=path,
        rows=rows,
        lines=lines,
        source="compatlm" if versioned else "foreign",
        task=const.get("task"),
        kind=const.get("kind"),
        role=role or const.get("role"),
        model=const.get("model"),
        metric=const.get("metric"),
    )
