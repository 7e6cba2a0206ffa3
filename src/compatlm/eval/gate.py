"""The CI gate: ``--fail-if "negative_flip_rate>0.02"`` conditions checked against metrics.json.

Syntax: ``[task:][reference_vs_other:]name OP number`` with OP one of ``> >= < <= == !=``.
Without a ``reference_vs_other`` scope a condition applies to every comparison whose reference
is the run's reference role (``old``); without a task scope, to every task. A condition is a
*failure* when it holds. A metric that is undefined (null with a reason) on a comparison in
scope also fails the gate: a check that cannot be evaluated must not pass silently. Conditions
that match no comparison at all are an input error for the same reason.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compatlm.errors import CompatlmError
from compatlm.eval.metrics import (
    CLASSIFICATION_METRICS,
    COUNT_NAMES,
    RELATIVE_METRICS,
    SIMILARITY_COUNT_NAMES,
    SIMILARITY_METRICS,
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
    name = m.group("name")
    if name not in GATE_NAMES:
        raise CompatlmError(
            f"--fail-if {text!r}: unknown metric {name!r}; valid names: {', '.join(GATE_NAMES)}"
        )
    try:
        threshold = float(m.group("num"))
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        raise CompatlmError(
            f"--fail-if {text!r}: expected a finite number after {m.group('op')}, "
            f"found {m.group('num')!r}"
        )
    return Condition(text, task, pair, name, m.group("op"), threshold)


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
