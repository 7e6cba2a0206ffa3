"""The per-instance prediction schema: :class:`Prediction` (one line of
``predictions/<task>/<role>.jsonl``, schema_version 1) and the source of every per-line error
message — which keys a compatlm line must carry, how each field must look, and
:func:`parse_line`, which validates one JSON object into a :class:`Prediction`.

The readers (:mod:`compatlm.eval.rows`, :mod:`compatlm.eval.block`, :mod:`compatlm.eval.reader`,
:mod:`compatlm.eval.lmeval_logs`) build on it and :mod:`compatlm.eval.records`, which loads
files with them, re-exports it, so it imports none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, field_validator

from compatlm.errors import input_error

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
