"""The CI gate: ``--fail-if "negative_flip_rate>0.02"`` conditions checked against metrics.json.

Syntax: ``[task:][reference_vs_other:]name OP number`` with OP one of ``> >= < <= == !=``.
Without a ``reference_vs_other`` scope a condition applies to every comparison whose reference
is the run's reference role (``old``); without a task scope, to every task. A condition is a
*failure* when it holds. A metric that is undefined (null with a reason) on a comparison in
scope also fails the gate: a check that cannot be evaluated must not pass silently. Conditions
that match no comparison at all are an input error for the same reason.

Names are the full snake_case metric names of metrics.json; the table abbreviations NFR, PFR,
BTC and BEC are accepted too (any case). Thresholds are in the metric's own unit and checked
against its range when parsed: rates are fractions in [0, 1] (reports *show* percent, so
``negative_flip_rate>5`` is refused with "did you mean 0.05?"), deltas of rates lie in
[-1, 1], counts are >= 0, ``*_change_percent`` is in percent.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compatlm.errors import CompatlmError
from compatlm.eval.metrics import (
    CLASSIFICATION_METRICS,
    CLASSIFICATION_RATIOS,
    COUNT_NAMES,
    RELATIVE_METRICS,
    SIMILARITY_COUNT_NAMES,
    SIMILARITY_METRICS,
    SIMILARITY_RATIOS,
)

NOISE_COUNTS = ("flips_within_noise", "negative_flips_within_noise")
GATE_NAMES = (
    *CLASSIFICATION_METRICS,
    *SIMILARITY_METRICS,
    *RELATIVE_METRICS,
    *COUNT_NAMES,
    *SIMILARITY_COUNT_NAMES,
    *NOISE_COUNTS,
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
ALIASES = {
    "nfr": "negative_flip_rate",
    "pfr": "positive_flip_rate",
    "btc": "backward_trust_compatibility",
    "bec": "backward_error_compatibility",
}
# Units of thresholds. Ratio metrics and p-values are fractions in [0, 1], differences of
# them lie in [-1, 1], counts are >= 0; anything else (percent changes, test statistics) only
# has to be finite.
SIGNED_FRACTIONS = ("accuracy_delta", "delta_negative_flip_rate", "delta_accuracy")
FRACTIONS = tuple(
    name
    for name in (
        *(r.name for r in (*CLASSIFICATION_RATIOS, *SIMILARITY_RATIOS)),
        *(n for n in GATE_NAMES if n.endswith("_p_value")),
    )
    if name not in SIGNED_FRACTIONS
)
COUNTS = (*COUNT_NAMES, *SIMILARITY_COUNT_NAMES, *NOISE_COUNTS)
_COND = re.compile(r"^\s*(?P<name>[A-Za-z_][\w]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>\S+)\s*$")


@dataclass(frozen=True)
class Condition:
    text: str
    task: str | None
    pair: str | None  # "reference_vs_other"
    name: str
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)


@dataclass(frozen=True)
class GateFailure:
    condition: str
    task: str
    comparison: str
    value: float | None
    message: str


def parse_condition(text: str) -> Condition:
    """Parse one ``--fail-if`` condition; bad syntax or an unknown name is a CompatlmError."""
    parts = text.split(":")
    if len(parts) > 3:
        raise CompatlmError(f"--fail-if {text!r}: expected [task:][reference_vs_other:]name>value")
    *scopes, cond = parts
    task = pair = None
    if len(scopes) == 2:
        task, pair = scopes
    elif len(scopes) == 1:
        if "_vs_" in scopes[0]:
            pair = scopes[0]
        else:
            task = scopes[0]
    if any(s is not None and not s.strip() for s in (task, pair)):
        raise CompatlmError(f"--fail-if {text!r}: empty scope before ':'")
    m = _COND.match(cond)
    if not m:
        raise CompatlmError(
            f"--fail-if {text!r}: expected name OP number with OP one of "
            f"{' '.join(sorted(_OPS, key=len))}, e.g. negative_flip_rate>0.02"
        )
    name = metric_name(m.group("name"), text)
    try:
        threshold = float(m.group("num"))
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        raise CompatlmError(
            f"--fail-if {text!r}: expected a finite number after {m.group('op')}, "
            f"found {m.group('num')!r}"
        )
    _check_unit(name, threshold, text)
    return Condition(text, task, pair, name, m.group("op"), threshold)


def metric_name(given: str, text: str) -> str:
    """The full metric name for ``given`` (a full name or an alias, any case)."""
    low = given.lower()
    if low in GATE_NAMES:
        return low
    if low in ALIASES:
        return ALIASES[low]
    close = difflib.get_close_matches(low, [*GATE_NAMES, *ALIASES], n=1, cutoff=0.6)
    hint = f" (did you mean {ALIASES.get(close[0], close[0])!r}?)" if close else ""
    raise CompatlmError(
        f"--fail-if {text!r}: unknown metric {given!r}{hint}; valid names: "
        f"{', '.join(GATE_NAMES)} (or NFR, PFR, BTC, BEC)"
    )


def _check_unit(name: str, threshold: float, text: str) -> None:
    """Refuse a threshold outside the metric's range (a percent given for a fraction)."""
    if name in COUNTS:
        if threshold < 0:
            raise CompatlmError(
                f"--fail-if {text!r}: {name} is a count of instances (>= 0), found {threshold:g}"
            )
        return
    if name in SIGNED_FRACTIONS:
        low, what = -1.0, "differences of fractions"
    elif name in FRACTIONS:
        low, what = 0.0, "fractions"
    else:
        return
    if low <= threshold <= 1.0:
        return
    # A percent typed for a fraction: 5 meant 5% = 0.05.
    hint = f": did you mean {threshold / 100:g}?" if 1 < abs(threshold) <= 100 else ""
    raise CompatlmError(
        f"--fail-if {text!r}: {name} is in [{low:g}, 1], found {threshold:g}; rates are "
        f"{what} (reports show percent){hint}"
    )


def parse_conditions(texts: list[str]) -> list[Condition]:
    return [parse_condition(t) for t in texts]


def _lookup(comp: dict[str, Any], name: str) -> tuple[bool, float | None, str | None]:
    """(applicable, value, reason) of ``name`` in one comparison entry of metrics.json."""
    if name in comp["metrics"]:
        m = comp["metrics"][name]
        return True, m["value"], m["reason"]
    if name in COUNT_NAMES:
        value = comp["counts"].get(name)
        return True, value, None if value is not None else "not measured (parsed missing)"
    sim = comp.get("similarity") or {}
    if name in SIMILARITY_METRICS or name in SIMILARITY_COUNT_NAMES:
        if sim.get("metrics") is None:
            return False, None, sim.get("reason")
        if name in SIMILARITY_COUNT_NAMES:
            return True, sim["counts"][name], None
        m = sim["metrics"][name]
        return True, m["value"], m["reason"]
    if name in RELATIVE_METRICS:
        rel = comp.get("relative_to_baseline")
        if rel is None:
            return False, None, "no baseline comparison"
        return True, rel[name]["value"], rel[name]["reason"]
    noise = comp.get("noise") or {}
    if noise.get("noise_margin") is None:
        return False, None, "no noise margin given"
    return True, noise.get(name), None


def check_gate(doc: dict[str, Any], conditions: list[str] | list[Condition]) -> list[GateFailure]:
    """Evaluate conditions against a metrics.json document; returns the failures (empty = pass)."""
    conds = [c if isinstance(c, Condition) else parse_condition(c) for c in conditions]
    comps = doc.get("comparisons") or []
    default_ref = doc.get("settings", {}).get("reference") or (
        comps[0]["reference"] if comps else None
    )
    failures: list[GateFailure] = []
    for cond in conds:
        evaluated = 0
        for comp in comps:
            pair = f"{comp['reference']}_vs_{comp['other']}"
            if cond.task is not None and comp["task"] != cond.task:
                continue
            if cond.pair is not None and pair != cond.pair:
                continue
            if cond.pair is None and comp["reference"] != default_ref:
                continue
            applicable, value, reason = _lookup(comp, cond.name)
            if not applicable:
                continue
            evaluated += 1
            where = f"{comp['task']}: {pair}"
            if value is None:
                failures.append(
                    GateFailure(
                        cond.text,
                        comp["task"],
                        pair,
                        None,
                        f"{where}: {cond.name} is undefined ({reason}); cannot check {cond.text!r}",
                    )
                )
            elif cond.holds(float(value)):
                failures.append(
                    GateFailure(
                        cond.text,
                        comp["task"],
                        pair,
                        float(value),
                        f"{where}: {cond.name} = {value:.6g} {cond.op} {cond.threshold:g}",
                    )
                )
        if evaluated == 0:
            raise CompatlmError(
                f"--fail-if {cond.text!r}: matches no comparison where {cond.name} is defined; "
                f"comparisons: "
                + ", ".join(f"{c['task']}:{c['reference']}_vs_{c['other']}" for c in comps)
            )
    return failures


NO_GATE = "no --fail-if condition was given"


def gate_record(doc: dict[str, Any], conditions: list[str]) -> dict[str, Any]:
    """The ``gate`` entry of metrics.json: the conditions checked, whether the run passed and
    each failure. Without conditions ``passed`` is null with the reason (nothing was checked,
    which is not a pass). A condition matching no comparison raises, as in :func:`check_gate`."""
    if not conditions:
        return {"conditions": [], "passed": None, "failures": [], "reason": NO_GATE}
    failures = check_gate(doc, conditions)
    return {
        "conditions": list(conditions),
        "passed": not failures,
        "failures": [
            {
                "condition": f.condition,
                "task": f.task,
                "comparison": f.comparison,
                "value": f.value,
                "message": f.message,
            }
            for f in failures
        ],
        "reason": None,
    }
