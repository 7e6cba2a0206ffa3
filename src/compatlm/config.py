"""Configuration: pydantic models, YAML files and ``section.key=value`` overrides.

Precedence is defaults < YAML < command-line overrides. Every model is frozen and forbids
unknown keys; an unknown key is reported with its valid siblings. An override's value is parsed
as YAML (``batch_size=8`` is an int, ``x=false`` a bool that overrides a YAML ``true``,
``tasks=[a, b]`` a list); ``None``/``null`` means "not given" and falls back to the default.

Numbers are checked where they are read, not where they are used hours later: every float of
every config (this module's, and the train/method configs built on :class:`StrictModel`) must be
finite, seeds are :data:`Seed` (what numpy accepts), and YAML is parsed with the bounds of
:mod:`compatlm.safe_yaml` (size, nesting, alias expansion, repeated keys).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from compatlm import safe_yaml
from compatlm.errors import CompatlmError, input_error
from compatlm.spec import ModelSpecField

C = TypeVar("C", bound="StrictModel")


# numpy's SeedSequence/RandomState take 0..2**32-1; a negative seed passed validation and
# crashed after every model had run.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1, description="random seed, 0..2**32-1")]

# lm-eval join keys: `doc_id` (lm-eval's own position) or `doc.<field>[.<field>...]`.
JOIN_KEY_PATTERN = r"doc_id|doc(\.[A-Za-z0-9_\-]+)+"

DEVICES = "auto | cpu | cuda | cuda:N | mps"
_DEVICE = re.compile(r"auto|cpu|cuda|cuda:\d+|mps")


class StrictModel(BaseModel):
    """Base of every config: immutable, unknown keys are errors, floats must be finite
    (``.inf``/``.nan`` in YAML are refused: no rate, weight or tolerance means anything there)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", protected_namespaces=(), allow_inf_nan=False
    )


class RuntimeConfig(StrictModel):
    """Where and how models run."""

    device: str = Field("auto", description=DEVICES)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="fp32 on CPU; bf16 is the usual choice on recent GPUs"
    )
    batch_size: int = Field(16, ge=1)
    scoring: Literal["cached", "full"] = Field(
        "cached",
        description="multiple choice: cached = each context once, its choices on its KV cache;"
        " full = every (context, choice) pair in full, as lm-eval (same answers, slower)",
    )
    seed: Seed = 0
    trust_remote_code: bool = Field(
        False, description="run model code shipped with a checkpoint; off unless you trust it"
    )
    allow_pickle: bool = Field(
        False, description="allow loading pickle-based .bin weights (unsafe); safetensors otherwise"
    )
    progress: bool = True

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        # Availability (is there a GPU?) is checked when a run starts, not here: a config for
        # a GPU machine must still validate on a laptop.
        if not _DEVICE.fullmatch(value):
            raise ValueError(f"expected {DEVICES}")
        return value


class TaskConfig(StrictModel):
    """One task to evaluate: a registry name (hellaswag, piqa, gsm8k, samsum, demo_*) or a
    local JSONL file (``path`` + ``kind``)."""

    name: str
    kind: Literal["multiple_choice", "generation"] | None = None
    path: str | None = Field(
        None,
        description="local source: compatlm JSONL, or for hellaswag/piqa/gsm8k/samsum a file or"
        " directory of parquet/json/jsonl in the hub dataset's schema",
    )
    split: str | None = Field(
        None, description="dataset split; None = the task's default (validation for hellaswag/piqa)"
    )
    limit: int | None = Field(None, ge=1, description="evaluate only the first N examples")
    # generation settings (None = the task's default)
    max_new_tokens: int | None = Field(None, ge=1)
    stop: list[str] | None = None
    no_repeat_ngram_size: int | None = Field(None, ge=0)
    extract: str | None = Field(
        None, description="answer extraction: none | gsm8k | last_number | regex:<pattern>"
    )
    metric: str | None = Field(
        None, description="multiple choice: acc | acc_norm; generation: exact_match | rouge1 | ..."
    )
    pass_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="similarity metrics: score >= this counts as correct"
    )
    chat_template: bool = Field(
        False, description="generation: wrap the prompt in the tokenizer's chat template"
    )
    models: dict[str, ModelSpecField] = Field(
        default_factory=dict,
        description="per-task ModelSpec by role (each task has its own adapter): overrides"
        " old/new/candidates for this task; a role named only here is evaluated on this task only",
    )

    def with_models(self, models: dict[str, Any]) -> TaskConfig:
        """This task with ``models`` replaced and validated (``model_copy(update=...)`` would
        keep the strings unparsed, and a nested config is not validated again)."""
        return TaskConfig.model_validate({**self.model_dump(), "models": models})


class CompareConfig(StrictModel):
    """How two prediction sets are compared."""

    tolerance: float = Field(0.0, ge=0.0, description="similarity flips need |ΔS| > tolerance")
    bootstrap: int = Field(1000, ge=0, description="paired bootstrap resamples (0 = no CIs)")
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    seed: Seed = 0
    allow_prompt_mismatch: bool = False
    allow_metric_mismatch: bool = Field(
        False,
        description="compare files whose metric (acc vs acc_norm) or lm-eval filter differs"
        " (recorded as a warning)",
    )
    noise_batch_size: int | None = Field(
        None,
        ge=1,
        description="eval: re-score the new model's multiple-choice tasks with this batch size;"
        " the largest decision-score change is the noise floor (noise.json) and flips with"
        " margins below it are labelled within_noise",
    )
    fail_if: list[str] = Field(
        default_factory=list, description='gate conditions, e.g. "negative_flip_rate>0.02"'
    )
    # Not dumped with the other settings (metrics.json of every other comparison stays as it
    # was): compare_files records it under settings.join_key when one is given.
    join_key: str | None = Field(
        None,
        exclude=True,
        description="lm-eval samples files in `compare OLD NEW`: the field that becomes"
        " example_id, doc_id (default) or doc.<field> of the logged doc (e.g. doc.id, to join"
        " with a compatlm file whose ids are the task rows' id)",
    )

    @field_validator("join_key")
    @classmethod
    def _join_key_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(JOIN_KEY_PATTERN, value):
            raise ValueError("expected doc_id or doc.<field> (e.g. doc.id)")
        return value


class EvalConfig(StrictModel):
    """``compatlm eval``: score old, new and candidates on tasks, then compare and report."""

    old: ModelSpecField = Field(
        description="ModelSpec of the old version: base[@rev][+adapter[@rev]]"
    )
    new: ModelSpecField = Field(description="ModelSpec of the new version")
    candidates: dict[str, ModelSpecField] = Field(
        default_factory=dict, description="name -> ModelSpec"
    )
    tasks: list[TaskConfig]
    runtime: RuntimeConfig = RuntimeConfig()
    compare: CompareConfig = CompareConfig()
    out: str | None = Field(None, description="run directory (the --out flag wins)")

    @field_validator("compare")
    @classmethod
    def _no_join_key(cls, value: CompareConfig) -> CompareConfig:
        # eval writes compatlm predictions, which join on example_id: a join key here would be
        # ignored, or refused only after every model had been scored.
        if value.join_key is not None:
            raise ValueError(
                "compare.join_key applies to lm-eval samples files in `compatlm compare OLD NEW`;"
                " eval predictions join on example_id"
            )
        return value


def _valid_keys(cls: type[BaseModel]) -> list[str]:
    return sorted(cls.model_fields)


def _check_unknown(cls: type[BaseModel], data: Any, prefix: str, source: str) -> None:
    """Walk ``data`` against ``cls`` and raise on the first unknown key, naming the valid ones."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if key not in cls.model_fields:
            path = f"{prefix}{key}"
            raise CompatlmError(
                f"{source}: unknown key {path!r}; valid keys"
                f"{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(_valid_keys(cls))}"
            )
        sub = _submodel(cls.model_fields[key].annotation)
        if sub is not None:
            if isinstance(value, list):
                for i, item in enumerate(value):
                    _check_unknown(sub, item, f"{prefix}{key}[{i}].", source)
            else:
                _check_unknown(sub, value, f"{prefix}{key}.", source)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The StrictModel inside ``X``, ``list[X]`` or ``X | None``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"runtime.batch_size=8"`` -> (["runtime", "batch_size"], 8); split on the first ``=``."""
    if "=" not in text:
        raise CompatlmError(f"override {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise CompatlmError(f"override {text!r}: empty key segment")
    try:
        value = safe_yaml.load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        why = getattr(err, "problem", None) or err
        raise CompatlmError(f"override {text!r}: value is not valid YAML ({why})") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with every ``a.b=value`` applied (lists indexed by number)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = out
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[_index(part, node, text)]
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, (dict, list)):
                    raise CompatlmError(f"override {text!r}: {part!r} is not a section")
        last = parts[-1]
        if isinstance(node, list):
            node[_index(last, node, text)] = value
        else:
            node[last] = value
    return out


def _index(part: str, node: list, text: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise CompatlmError(
            f"override {text!r}: {part!r} is not an index of a {len(node)}-item list"
        )
    return int(part)


def _drop_nones(data: Any) -> Any:
    # None means "not given": remove it so the default applies (a YAML `key:` with no value too).
    if isinstance(data, dict):
        return {k: _drop_nones(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_drop_nones(v) for v in data]
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise input_error("config file not found", path)
    size = path.stat().st_size
    if size > safe_yaml.MAX_BYTES:
        raise input_error(
            f"config is {size:,} bytes; the limit is {safe_yaml.MAX_BYTES:,} (is this a config?)",
            path,
        )
    try:
        data = safe_yaml.load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise input_error("config is not valid UTF-8", path) from None
    except safe_yaml.YamlLimitError as err:
        line = err.problem_mark.line + 1 if err.problem_mark is not None else None
        raise input_error(str(err.problem), path, line) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise input_error(f"invalid YAML ({getattr(err, 'problem', err)})", path, line) from None
    if data is None:
        raise input_error("config is empty", path)
    if not isinstance(data, dict):
        raise input_error(f"expected a mapping at the top, found {type(data).__name__}", path)
    return data


def build_config(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Validate ``data`` into ``cls`` with one-line errors."""
    data = _drop_nones(data)
    _check_unknown(cls, data, "", source)
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top)"
        found = first.get("input")
        msg = first["msg"].removeprefix("Value error, ")
        # A message that already quotes the value (a model spec's) need not repeat it.
        said = isinstance(found, dict) or (isinstance(found, str) and repr(found) in msg)
        found_s = "" if said else f", found {found!r}"
        raise CompatlmError(f"{source}: field {loc!r}: {msg}{found_s}") from None


def load_config(cls: type[C], path: str | Path | None, overrides: list[str] | None = None) -> C:
    """defaults < YAML file (optional) < overrides."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    return build_config(cls, data, str(path) if path is not None else "overrides")


def dump_config(cfg: BaseModel) -> str:
    """The fully resolved config as YAML (what ``config.yaml`` in a run directory holds)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
