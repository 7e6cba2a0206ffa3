"""A sweep's selection rule: the numbers of every point on the selection split → one winner.

The rule (the paper's future work, a mask or teacher mix adapted to the data, made a measured
choice; MUSCLE, arXiv 2407.09435, §6): among the points whose accuracy on the selection split is
at least the floor, take the best selection metric (lowest negative flip rate vs old by
default), ties broken by higher accuracy, then by grid order. The floor is the new model's
accuracy there plus ``accuracy_floor`` points (or, in the original form, an absolute accuracy
or the new model's). The comparison is exact (fractions of counts), so ``>=`` means it.

:func:`choose` is given the ``metrics.json`` of the selection split's evaluation and nothing
else: it cannot see the test split, which is evaluated only after it returned a winner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from compatlm.errors import CompatlmError
from compatlm.methods.sweep_config import SELECT_METRICS

NFR = "negative_flip_rate"


@dataclass
class SweepPoint:
    name: str  # role name in the eval runs
    value: Any  # the knob's value (a mapping for several knobs; None for new / the control)
    spec: str
    negative_flip_rate: dict[str, Any]  # metric object vs old: value, numerator, denominator
    accuracy: dict[str, Any]  # accuracy of this model on the split, same shape
    eligible: bool = False
    pareto: bool = False
    knobs: dict[str, Any] | None = None  # knob -> value of a grid point
    kind: str = "candidate"  # candidate (a grid point) | control | new
    metric: dict[str, Any] | None = None  # the selection metric when it is not the NFR


@dataclass(frozen=True)
class Entry:
    """A model of the comparison before it is measured."""

    name: str
    spec: str
    kind: str = "candidate"
    value: Any = None
    knobs: dict[str, Any] | None = None


@dataclass
class Selection:
    points: list[SweepPoint]  # grid points in grid order, then the control
    new: SweepPoint
    floor: dict[str, Any]  # value + where it came from
    winner: SweepPoint | None
    reason: str
    rule: dict[str, Any] = field(default_factory=dict)


def frac(metric: dict[str, Any] | None) -> Fraction | None:
    """The exact value numerator/denominator of a metric object (None when undefined)."""
    if not metric or metric.get("value") is None or not metric.get("denominator"):
        return None
    return Fraction(metric["numerator"]) / Fraction(metric["denominator"])


def metric_of(p: SweepPoint, metric: str) -> dict[str, Any]:
    if metric == NFR:
        return p.negative_flip_rate
    return p.metric or {"value": None, "reason": f"{metric} was not measured"}


def _pct(x: Fraction | float) -> str:
    return f"{100 * float(x):.2f}%"


def select(
    points: list[SweepPoint],
    floor: Fraction,
    *,
    metric: str = NFR,
    control_competes: bool = True,
) -> tuple[SweepPoint | None, str]:
    """Mark eligible and Pareto points; return the choice and a one-line reason."""
    if not points:
        return None, "the grid is empty: no candidate to select"
    lower_is_better = SELECT_METRICS[metric] == "min"
    words = metric.replace("_", " ")

    def competes(p: SweepPoint) -> bool:
        return p.kind != "control" or control_competes

    scored = [(p, frac(metric_of(p, metric)), frac(p.accuracy)) for p in points]
    scored = [(p, m, a) for p, m, a in scored if m is not None and a is not None]
    for p in points:
        p.eligible = p.pareto = False
    for p, m, a in scored:
        p.eligible = competes(p) and a >= floor
        # On the front when no other point is at least as good on both axes and better on one.
        p.pareto = not any(
            (m2 <= m if lower_is_better else m2 >= m) and a2 >= a and (m2 != m or a2 > a)
            for q, m2, a2 in scored
            if q is not p
        )
    eligible = [(i, p, m, a) for i, (p, m, a) in enumerate(scored) if p.eligible]
    if not eligible:
        contenders = [(p, a) for p, _, a in scored if competes(p)]
        if not contenders:
            return None, f"no candidate has a defined {words} and accuracy: nothing to select"
        best, acc = max(contenders, key=lambda pa: pa[1])  # first of the most accurate
        return None, (
            f"no candidate reaches the accuracy floor {_pct(floor)}: the most accurate,"
            f" {best.name}, has accuracy {_pct(acc)} ({100 * float(floor - acc):.2f} points"
            " below the floor); lower the accuracy floor or widen the grid"
        )
    _, chosen, best_m, _ = min(
        eligible, key=lambda e: (e[2] if lower_is_better else -e[2], -e[3], e[0])
    )
    n_compete = sum(1 for p in points if competes(p))
    return chosen, (
        f"{'lowest' if lower_is_better else 'highest'} {words} ({_pct(best_m)}) among"
        f" {len(eligible)} of {n_compete} candidates with accuracy >= {_pct(floor)}"
    )


def floor_of(
    new: SweepPoint, *, points: float | None, absolute: float | None, split: str, field_name: str
) -> tuple[Fraction, dict[str, Any]]:
    """The accuracy floor: new's accuracy + ``points`` (points), else ``absolute``, else new's
    accuracy. Config numbers enter as their decimal text (``0.7`` is 7/10, not the float)."""
    if absolute is not None:
        value = Fraction(str(absolute))
        return value, {"value": float(value), "source": "accuracy_floor"}
    ref = frac(new.accuracy)
    if ref is None:
        raise CompatlmError(
            f"{field_name}: the new model's accuracy on {split} is undefined"
            f" ({new.accuracy.get('reason')}); the floor is relative to it"
        )
    if points is None:
        return ref, {"value": float(ref), "source": f"{split} accuracy of the new model"}
    value = ref + Fraction(str(points)) / 100
    sign = "+" if points >= 0 else "−"
    return value, {
        "value": float(value),
        "source": f"{split} accuracy of the new model {sign} {abs(points):g} points",
        "reference": new.accuracy,
        "points": points,
    }


def point_from_metrics(doc: dict[str, Any], task: str, entry: Entry, metric: str) -> SweepPoint:
    """The point of ``entry`` from a ``metrics.json`` (its comparison against old)."""
    for comp in doc["comparisons"]:
        if comp["task"] == task and comp["reference"] == "old" and comp["other"] == entry.name:
            # Similarity metrics (generation with scores) live beside the classification ones.
            m = {**((comp.get("similarity") or {}).get("metrics") or {}), **comp["metrics"]}
            if metric not in m:
                raise CompatlmError(
                    f"select.metric: {metric!r} is not measured on task {task!r}"
                    f" (measured: {', '.join(sorted(k for k in m if k in SELECT_METRICS))})"
                )
            return SweepPoint(
                entry.name,
                entry.value,
                entry.spec,
                m[NFR],
                m["accuracy_new"],
                knobs=entry.knobs,
                kind=entry.kind,
                metric=None if metric == NFR else m[metric],
            )
    raise CompatlmError(f"metrics.json has no comparison old vs {entry.name} on task {task!r}")


def choose(
    val_metrics: dict[str, Any],
    task: str,
    entries: list[Entry],
    new_spec: str,
    *,
    metric: str = NFR,
    split: str = "validation",
    floor_points: float | None = None,
    floor_absolute: float | None = None,
    floor_field: str = "select.accuracy_floor",
    control_competes: bool = True,
) -> Selection:
    """Apply the rule to the selection split's ``metrics.json`` (the only data it is given)."""
    points = [point_from_metrics(val_metrics, task, e, metric) for e in entries]
    new = point_from_metrics(val_metrics, task, Entry("new", new_spec, kind="new"), metric)
    floor, floor_doc = floor_of(
        new, points=floor_points, absolute=floor_absolute, split=split, field_name=floor_field
    )
    winner, reason = select(points, floor, metric=metric, control_competes=control_competes)
    rule = {
        "split": split,
        "metric": metric,
        "better": "lower" if SELECT_METRICS[metric] == "min" else "higher",
        "accuracy_floor": floor_doc,
        "control_competes": control_competes,
        "ties": "higher accuracy, then grid order",
        "reference": "old",
    }
    return Selection(points, new, floor_doc, winner, reason, rule)
