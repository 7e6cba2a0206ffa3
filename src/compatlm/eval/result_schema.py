"""The typed schema of ``metrics.json`` (schema_version 1), as ``compatlm compare`` writes it.

Owns the one description of that file: pydantic models of the document, each comparison, its
counts and metrics. Compare validates every document against it before writing
(:func:`check_document`), so a field added, renamed or retyped in the code that builds the
document fails loudly instead of shipping an unannounced format. Readers (the report side, CI
scripts) load a file through :func:`load_metrics` and get the same models, or one line naming
the file, the field and what was expected.

Conventions the models enforce:

- every metric is ``{value, numerator, denominator, ci, reason}``: a rate keeps the counts it
  came from, and an undefined metric is ``value: null`` *with* a ``reason``, never 0;
- the metric names of a comparison are exactly those of :mod:`compatlm.eval.metrics`
  (classification, similarity, relative change): a missing or unknown name is an error;
- types are strict: ``"5"`` is not a count and ``true`` is not a number.

The models only check: compare still writes the dictionary it built, so the bytes on disk do
not depend on how pydantic would serialise them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from compatlm.config import CompareConfig
from compatlm.errors import CompatlmError, input_error
from compatlm.eval.metrics import CLASSIFICATION_METRICS, SIMILARITY_METRICS
from compatlm.io import dumps

Count = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    """Unknown keys are errors and nothing is coerced (a count stored as a string is drift)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Metric(_Strict):
    """One metric: the value, the counts it is a ratio of, its CI, and why it is undefined."""

    value: float | None
    numerator: int | float | None
    denominator: int | None
    ci: Annotated[list[float], Field(min_length=2, max_length=2)] | None
    reason: str | None

    @model_validator(mode="after")
    def _null_has_reason(self) -> Metric:
        # The product's promise: an undefined metric says why, so a reader never takes a
        # missing number for a measured 0.
        if self.value is None and self.reason is None:
            raise ValueError("value is null without a reason (an undefined metric must say why)")
        return self


def _exact_keys(names: Iterable[str], what: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A validator: the dict's keys are exactly ``names``."""
    expected = tuple(names)

    def check(value: dict[str, Any]) -> dict[str, Any]:
        missing = [n for n in expected if n not in value]
        unknown = [k for k in value if k not in expected]
        if missing or unknown:
            parts = [
                f"missing {missing}" if missing else "",
                f"unknown {unknown}" if unknown else "",
            ]
            raise ValueError(f"{what}: {'; '.join(p for p in parts if p)}")
        return value

    return check


ClassificationMetrics = Annotated[
    dict[str, Metric], AfterValidator(_exact_keys(CLASSIFICATION_METRICS, "classification metrics"))
]
SimilarityMetrics = Annotated[
    dict[str, Metric], AfterValidator(_exact_keys(SIMILARITY_METRICS, "similarity metrics"))
]


class Counts(_Strict):
    """Instance counts of a comparison (:data:`compatlm.eval.metrics.COUNT_NAMES`)."""

    n: Count
    old_correct: Count
    new_correct: Count
    old_wrong: Count
    new_wrong: Count
    both_correct: Count
    both_wrong: Count
    negative_flips: Count
    positive_flips: Count
    inconsistency_flips: Count | None  # null when parsed answers are missing on a side


class SimilarityCounts(_Strict):
    similarity_negative_flips: Count
    similarity_positive_flips: Count


class Similarity(_Strict):
    """Score-based flips (generation tasks); counts and metrics are null with a reason."""

    tolerance: float
    counts: SimilarityCounts | None
    metrics: SimilarityMetrics | None
    reason: str | None

    @model_validator(mode="after")
    def _null_has_reason(self) -> Similarity:
        if (self.metrics is None) != (self.reason is not None):
            raise ValueError("metrics must be null exactly when a reason is given")
        return self


class Measurement(_Strict):
    """What :func:`compatlm.eval.metrics.measure` returns: a whole comparison or one slice."""

    n: Count
    n_groups: Count | None
    n_groups_reason: str | None
    clustered: bool
    counts: Counts
    metrics: ClassificationMetrics
    similarity: Similarity


class Files(_Strict):
    """The two prediction files compared and the flips file written (run-relative)."""

    reference: str
    other: str
    flips: str


class Unmatched(_Strict):
    count: Count
    first_ids: list[str]


class UnmatchedRows(_Strict):
    reference_only: Unmatched
    other_only: Unmatched


class Noise(_Strict):
    """The noise floor used to label flips within_noise (all null when none was given)."""

    noise_margin: float | None
    flips_within_noise: Count | None
    negative_flips_within_noise: Count | None


class Side(_Strict):
    """How one side's ``correct`` was decided, as its prediction file states it."""

    model: str | None
    metric: str | None
    filter: str | None


class Scoring(_Strict):
    reference: Side
    other: Side


class RelativeChange(_Strict):
    """A candidate vs the baseline (vanilla new) model: candidate − baseline, and in percent."""

    baseline: str
    delta_negative_flip_rate: Metric
    negative_flip_rate_change_percent: Metric
    delta_accuracy: Metric
    accuracy_change_percent: Metric


class Comparison(Measurement):
    """One entry of ``comparisons``: (task, reference, other) and everything measured."""

    task: str
    kind: str | None
    reference: str
    other: str
    files: Files
    unmatched: UnmatchedRows
    slices: dict[str, Measurement]
    noise: Noise
    warnings: list[str]
    relative_to_baseline: RelativeChange | None
    scoring: Scoring | None
    # Present only when prompt hashes were not compared (the sides' tokenizers differ and
    # every example hash was verified instead); see compatlm.eval.compare.
    prompt_hash_check: str | None = None


class GateFailure(_Strict):
    condition: str
    task: str
    comparison: str
    value: float | None
    message: str


class Gate(_Strict):
    """The ``--fail-if`` outcome; ``passed`` is null with a reason when nothing was checked."""

    conditions: list[str]
    passed: bool | None
    failures: list[GateFailure]
    reason: str | None


class Settings(CompareConfig):
    """The CompareConfig the comparison ran with, plus what compare itself decided.

    Typed through CompareConfig itself, so a new compare option is part of the schema the
    moment it exists. ``baseline`` and ``noise_margin_source`` appear when a run directory
    was compared, ``lmeval_*`` when two files were.
    """

    noise_margin: float | dict[str, float] | None
    reference: str
    baseline: str | None = None
    noise_margin_source: str | None = None
    lmeval_filter: str | None = None
    lmeval_metric: str | None = None


class MetricsDocument(_Strict):
    """The whole ``metrics.json``."""

    schema_version: Literal[1]  # METRICS_SCHEMA_VERSION; a new version gets its own models
    generated_by: str
    settings: Settings
    comparisons: list[Comparison]
    # "schema" would shadow a BaseModel attribute: stored under that key, named otherwise here.
    schema_note: str = Field(alias="schema")
    # {task: {role: summary}} of compat-trained candidates (run directories only); the summary
    # is the training run's own diagnostics format (compatlm.train.diagnostics).
    diagnostics: dict[str, dict[str, dict[str, Any]]] | None = None
    git_hash: str | None
    gate: Gate


def _first_error(err: ValidationError) -> str:
    """``field 'comparisons.0.n': <what was expected>, found <value>`` of the first error."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top)"
    msg = first["msg"].removeprefix("Value error, ")
    found = first.get("input")
    found_s = "" if isinstance(found, dict | list) else f", found {found!r}"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"field {loc!r}: {msg}{found_s}{more}"


def check_document(doc: dict[str, Any]) -> MetricsDocument:
    """Validate the document compare is about to write, in the form it takes on disk.

    A failure here is a bug in compatlm (the code building the document drifted from this
    schema), not bad input: it raises RuntimeError, never a user-facing input error.
    """
    try:
        return MetricsDocument.model_validate_json(dumps(doc))
    except ValidationError as err:
        raise RuntimeError(
            f"metrics.json does not match compatlm.eval.result_schema: {_first_error(err)}"
        ) from None


def load_metrics(path: str | Path) -> MetricsDocument:
    """Read and validate a ``metrics.json``; bad input is one line naming file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise input_error("not found (run `compatlm compare` first)", path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise input_error(f"cannot be read ({err})", path) from None
    try:
        json.loads(text)
    except ValueError as err:
        raise input_error(f"not valid JSON ({err})", path) from None
    try:
        return MetricsDocument.model_validate_json(text)
    except ValidationError as err:
        raise CompatlmError(f"{path}: {_first_error(err)}") from None
