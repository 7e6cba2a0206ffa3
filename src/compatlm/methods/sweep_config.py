"""Config of ``compatlm sweep``: the grid of a method's knobs, the control, the selection rule.

Two ways to name the data, both selecting on one split and looking at another once:

* ``task`` + ``select`` (split names): ``select.split`` (default ``validation``) is the split the
  knobs are chosen on, ``select.test_split`` (default ``test``) the split the winner is then
  evaluated on. The task's ``path`` is a directory of per-split files (``validation.jsonl``,
  ``test.jsonl``, HF layouts), a path containing ``{split}``, or absent for a hub dataset.
  ``select.accuracy_floor`` is in points relative to the new model (``-0.5`` = accuracy at least
  the new model's minus 0.5 points on the selection split).
* ``validation`` + ``test`` (one task config each) and an absolute ``accuracy_floor`` (null = the
  new model's validation accuracy): the original form, kept as it was.

The grid is one knob (``knob`` + ``values``) or several (``grid``: knob → values, every
combination). ``control`` adds one more candidate built once (a same-budget control method such
as ``continue_ce`` or ``kd_new``, or a ready ModelSpec); it is a point of the comparison and is
evaluated on the test split beside the winner.

:func:`method_configs` turns the grid into one validated method config per combination (before
any work starts) and :func:`point_name` gives each its file-safe role name in the eval runs.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from compatlm.config import (
    CompareConfig,
    RuntimeConfig,
    StrictModel,
    TaskConfig,
    apply_overrides,
    build_config,
    read_yaml,
)
from compatlm.errors import CompatlmError
from compatlm.spec import ModelSpecField

if TYPE_CHECKING:
    from compatlm.methods.registry import Method

GridValue = float | int | str | bool
ROLE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

# Selection metrics (all measured against old on the selection split) and which way is better.
SELECT_METRICS: dict[str, Literal["min", "max"]] = {
    "negative_flip_rate": "min",
    "inconsistency_flip_rate": "min",
    "negative_flip_impact": "min",
    "similarity_negative_flip_rate": "min",
    "backward_trust_compatibility": "max",
}
SelectMetric = Literal[
    "negative_flip_rate",
    "inconsistency_flip_rate",
    "negative_flip_impact",
    "similarity_negative_flip_rate",
    "backward_trust_compatibility",
]


class SelectConfig(StrictModel):
    """How the winner is chosen: the best ``metric`` on ``split`` among the points whose accuracy
    there is at least the new model's plus ``accuracy_floor`` points; then one look at
    ``test_split``."""

    split: str = Field(
        "validation", pattern=ROLE_PATTERN, description="split the knobs are selected on (labelled)"
    )
    test_split: str | Literal[False] = Field(
        "test",
        description="split the winner, old, new and the control are evaluated on once after the"
        " winner is fixed; false = no test look",
    )
    metric: SelectMetric = Field(
        "negative_flip_rate", description="what the winner is best at (vs old, on `split`)"
    )
    accuracy_floor: float = Field(
        0.0,
        ge=-100.0,
        le=100.0,
        description="points relative to the new model's accuracy on `split`: -0.5 = at least"
        " new's accuracy minus 0.5 points; 0 = no accuracy loss",
    )
    control_competes: bool = Field(
        True, description="the control can be selected; false = it is only shown beside the winner"
    )

    @model_validator(mode="after")
    def _splits(self) -> SelectConfig:
        if self.test_split is not False and self.test_split == self.split:
            raise ValueError(
                f"test_split {self.test_split!r} is the selection split; choose on one split and"
                " test on another"
            )
        if isinstance(self.test_split, str) and not re.match(ROLE_PATTERN, self.test_split):
            raise ValueError(f"test_split {self.test_split!r}: letters, digits, _ . - only")
        return self


class ControlConfig(StrictModel):
    """The control candidate: a registry method built once, or an existing ModelSpec."""

    name: str = Field("control", pattern=ROLE_PATTERN, description="its role name in the runs")
    method: str | None = Field(
        None, description="registry name of a same-budget control, e.g. continue_ce or kd_new"
    )
    config: dict[str, Any] | str | None = Field(
        None,
        description="the control method's config (mapping or YAML path); default: the sweep's"
        " `config` (same data and training budget)",
    )
    spec: ModelSpecField | None = Field(
        None, description="a candidate already built: its ModelSpec"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ControlConfig:
        if (self.method is None) == (self.spec is None):
            raise ValueError("give exactly one of method (build it) or spec (already built)")
        if self.spec is not None and self.config is not None:
            raise ValueError("config is only used with method")
        if self.name in ("old", "new") or "_vs_" in self.name:
            raise ValueError(f"name {self.name!r} is reserved; choose another role name")
        return self


class SweepConfig(StrictModel):
    """``compatlm sweep``: a method over a grid of its knobs, selected on one split, tested once."""

    method: str = Field(description="registry name of a candidate method (`compatlm methods`)")
    config: dict[str, Any] | str = Field(
        description="the method's config: a mapping with its keys, or the path of its YAML file"
    )
    knob: str | None = Field(
        None, description="dotted key varied, e.g. alpha, vectors.1.weight, kd_weight, focal.beta"
    )
    values: list[GridValue] | None = Field(None, description="the grid of `knob`")
    grid: dict[str, list[GridValue]] | None = Field(
        None, description="several knobs: dotted key -> values; one candidate per combination"
    )
    old: ModelSpecField | None = Field(
        None, description="old ModelSpec (default: the method config's old)"
    )
    new: ModelSpecField | None = Field(
        None, description="new ModelSpec (default: the method config's new)"
    )
    task: TaskConfig | None = Field(
        None, description="the task whose splits `select` names (path: a directory or {split})"
    )
    select: SelectConfig | None = Field(
        None, description="selection rule on `task`'s splits (defaults apply when task is given)"
    )
    validation: TaskConfig | None = Field(
        None, description="original form: task + split the knobs are selected on"
    )
    test: TaskConfig | None = Field(
        None, description="original form: task + split the selected candidate is evaluated on"
    )
    accuracy_floor: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="original form: minimum validation accuracy; null = the new model's",
    )
    control: ControlConfig | None = Field(None, description="a control candidate to compare with")
    runtime: RuntimeConfig = RuntimeConfig()
    compare: CompareConfig = CompareConfig()

    @model_validator(mode="after")
    def _shape(self) -> SweepConfig:
        if self.grid is not None and (self.knob is not None or self.values is not None):
            raise ValueError("give either knob + values or grid, not both")
        if self.grid is None and (self.knob is None or self.values is None):
            raise ValueError("give knob + values (one knob) or grid (knob -> values)")
        by_split = self.task is not None or self.select is not None
        if by_split and (
            self.validation is not None or self.test is not None or self.accuracy_floor is not None
        ):
            raise ValueError(
                "give either task + select (splits by name, select.accuracy_floor) or"
                " validation/test/accuracy_floor (one task config per split), not both"
            )
        if self.select is not None and self.task is None:
            raise ValueError("select names splits of `task`; give task")
        if not by_split and self.validation is None:
            raise ValueError("give task (+ select) or validation: the data the knobs are chosen on")
        return self

    def knobs(self) -> dict[str, list[GridValue]]:
        """knob -> values, in the order combinations are enumerated."""
        if self.grid is not None:
            return dict(self.grid)
        assert self.knob is not None and self.values is not None  # the validator ensures it
        return {self.knob: list(self.values)}

    def rule(self) -> SelectConfig | None:
        """The selection rule by split name, or None for the original validation/test form."""
        if self.task is None:
            return None
        return self.select or SelectConfig()


def role_name(knob: str, value: GridValue) -> str:
    """A file-safe role name for a grid value (eval roles: letters, digits, _ . -)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{knob}_{json.dumps(value)}").strip("_") or "c"


def point_name(knobs: dict[str, Any]) -> str:
    """The role name of a grid point: its knobs' names, ``__`` between knobs."""
    name = "__".join(role_name(k, v) for k, v in knobs.items())
    return name.replace("_vs_", "_vs-")  # "_vs_" separates the two roles of a flips file


def grid_points(cfg: SweepConfig) -> list[dict[str, Any]]:
    """knob -> value per point: every combination, the first knob varying slowest."""
    knobs = cfg.knobs()
    for knob, values in knobs.items():
        if not values:
            raise CompatlmError(
                f"grid.{knob}: the grid is empty; give at least one value to sweep"
                if cfg.grid is not None
                else "values: the grid is empty; give at least one value to sweep"
            )
    return [dict(zip(knobs, combo, strict=True)) for combo in itertools.product(*knobs.values())]


def config_data(config: dict[str, Any] | str) -> dict[str, Any]:
    return read_yaml(config) if isinstance(config, str) else dict(config)


def method_configs(cfg: SweepConfig, method: Method) -> list[tuple[Any, Any]]:
    """(value, validated method config) per grid point — every point is checked before any
    work starts, so alpha=1.5 in the grid fails now, not after hours of evaluation. The value
    is the knob's value (one knob) or the mapping knob -> value (several)."""
    data = config_data(cfg.config)
    out = []
    for knobs in grid_points(cfg):
        sets = [f"{k}={json.dumps(v)}" for k, v in knobs.items()]
        source = f"sweep config ({', '.join(sets)})"
        value = next(iter(knobs.values())) if len(knobs) == 1 else knobs
        out.append((value, build_config(method.config_cls, apply_overrides(data, sets), source)))
    return out


def control_of(cfg: SweepConfig) -> tuple[str, Method | None, Any, str | None] | None:
    """(role name, method or None, validated config or None, ready spec or None)."""
    c = cfg.control
    if c is None:
        return None
    if c.spec is not None:
        return c.name, None, None, c.spec.format()  # a sweep deals in spec strings
    from compatlm.methods.registry import get_candidate_method

    try:
        method = get_candidate_method(c.method or "")
    except CompatlmError as err:
        raise CompatlmError(f"control.method: {err}") from None
    # Default: the sweep's own method config, so the control has the same data and budget.
    data = config_data(c.config if c.config is not None else cfg.config)
    return c.name, method, build_config(method.config_cls, data, "control config"), None
