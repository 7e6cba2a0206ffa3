"""``compatlm sweep``: one method over a grid of one knob, selected for compatibility.

Every method trades the new model's accuracy gain against negative flips through one knob
(alpha for port/interpolate, a weight ω for task arithmetic, kd_weight λ or focal β for MUSCLE).
The sweep builds one candidate per grid value, evaluates old, new and all candidates on the
*validation* task (``compatlm eval`` machinery: predictions, flips, metrics.json), and selects

    the candidate with the lowest negative flip rate (vs old) among those whose validation
    accuracy is at least the floor (default: the vanilla new model's validation accuracy),

ties broken by higher accuracy, then grid order. Only the selected candidate is then evaluated
on the *test* task, so the reported test numbers are not selected on. An empty grid, or a grid
where no candidate reaches the floor, is reported as such: nothing is picked silently.

Output (``--out``): ``candidates/<name>/`` (one per value), ``validation/`` and ``test/`` (eval
run directories), ``sweep.json`` (every point with its counts, the floor, the choice and why),
``sweep.md`` and ``plots/sweep_front.png`` (NFR vs accuracy, the Pareto front, the floor).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from compatlm.config import EvalConfig, apply_overrides, build_config, dump_config, read_yaml
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_bytes, atomic_write_json, atomic_write_text, prepare_out_dir
from compatlm.methods.config import SweepConfig
from compatlm.methods.registry import Method, get_method
from compatlm.methods.sweep_report import front_png, sweep_markdown

log = logging.getLogger(__name__)


@dataclass
class SweepPoint:
    name: str  # role name in the eval runs
    value: Any  # the knob's value (None for the vanilla new model)
    spec: str
    negative_flip_rate: dict[str, Any]  # metric object vs old: value, numerator, denominator
    accuracy: dict[str, Any]  # validation accuracy of this model, same shape
    eligible: bool = False
    pareto: bool = False


@dataclass
class SweepResult:
    points: list[SweepPoint]
    new: SweepPoint
    floor: dict[str, Any]  # value + where it came from
    selected: SweepPoint | None
    reason: str
    test_metrics: dict[str, Any] | None
    paths: list[Path]


def role_name(knob: str, value: Any) -> str:
    """A file-safe role name for a grid value (eval roles: letters, digits, _ . -)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{knob}_{json.dumps(value)}").strip("_") or "c"


def method_configs(cfg: SweepConfig, method: Method) -> list[tuple[Any, Any]]:
    """(value, validated method config) per grid value — every point is checked before any
    work starts, so alpha=1.5 in the grid fails now, not after hours of evaluation."""
    if not cfg.values:
        raise CompatlmError("values: the grid is empty; give at least one value to sweep")
    data = read_yaml(cfg.config) if isinstance(cfg.config, str) else dict(cfg.config)
    out = []
    for value in cfg.values:
        point = apply_overrides(data, [f"{cfg.knob}={json.dumps(value)}"])
        source = f"sweep config ({cfg.knob}={json.dumps(value)})"
        out.append((value, build_config(method.config_cls, point, source)))
    return out


def _frac(metric: dict[str, Any]) -> Fraction | None:
    if metric.get("value") is None or not metric.get("denominator"):
        return None
    return Fraction(int(metric["numerator"]), int(metric["denominator"]))


def select(points: list[SweepPoint], floor: Fraction) -> tuple[SweepPoint | None, str]:
    """Mark eligible and Pareto points; return the choice and a one-line reason."""
    if not points:
        return None, "the grid is empty: no candidate to select"
    for p in points:
        acc = _frac(p.accuracy)
        p.eligible = acc is not None and _frac(p.negative_flip_rate) is not None and acc >= floor
    scored = [(p, _frac(p.negative_flip_rate), _frac(p.accuracy)) for p in points]
    scored = [(p, n, a) for p, n, a in scored if n is not None and a is not None]
    for p, n, a in scored:
        # On the front when no other point is at least as good on both axes and better on one.
        p.pareto = not any(
            (n2 <= n and a2 >= a) and (n2 < n or a2 > a) for q, n2, a2 in scored if q is not p
        )
    eligible = [(i, p) for i, p in enumerate(points) if p.eligible]
    if not eligible:
        best = max((a for _, _, a in scored), default=None)
        best_s = f"{float(best):.4f}" if best is not None else "undefined"
        return None, (
            f"no candidate reaches the accuracy floor {float(floor):.4f} (best candidate"
            f" accuracy: {best_s}); lower accuracy_floor or widen the grid"
        )
    _, chosen = min(
        eligible,
        key=lambda ip: (_frac(ip[1].negative_flip_rate), -_frac(ip[1].accuracy), ip[0]),  # type: ignore[operator]
    )
    return chosen, (
        f"lowest negative flip rate ({float(_frac(chosen.negative_flip_rate)):.4f}) among"  # type: ignore[arg-type]
        f" {len(eligible)} of {len(points)} candidates with accuracy >= {float(floor):.4f}"
    )


def _point(metrics: dict[str, Any], task: str, role: str, value: Any, spec: str) -> SweepPoint:
    for comp in metrics["comparisons"]:
        if comp["task"] == task and comp["reference"] == "old" and comp["other"] == role:
            m = comp["metrics"]
            return SweepPoint(role, value, spec, m["negative_flip_rate"], m["accuracy_new"])
    raise CompatlmError(f"metrics.json has no comparison old vs {role} on task {task!r}")


def _eval(cfg: SweepConfig, old: str, new: str, cands: dict[str, str], task, out: Path,
          overwrite: bool, resume: bool) -> dict[str, Any]:  # fmt: skip
    from compatlm.eval.pipeline import run_eval

    ecfg = EvalConfig(old=old, new=new, candidates=cands, tasks=[task], runtime=cfg.runtime,
                      compare=cfg.compare)  # fmt: skip
    run = run_eval(ecfg, out, overwrite=overwrite, resume=resume)
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def _build(method: Method, mcfg: Any, out: Path, runtime: Any, resume: bool) -> str:
    """Build one candidate, reusing a finished one from an interrupted sweep (same config)."""
    manifest, recorded = out / "candidate.json", out / "config.yaml"
    if (
        resume
        and manifest.is_file()
        and recorded.is_file()
        and recorded.read_text(encoding="utf-8") == dump_config(mcfg)
    ):
        return json.loads(manifest.read_text(encoding="utf-8"))["spec"]
    prepare_out_dir(out, overwrite=True)
    return method.build(mcfg, out, runtime=runtime)


def run_sweep(
    cfg: SweepConfig, out: str | Path, *, overwrite: bool = False, resume: bool = False
) -> SweepResult:
    """Run the sweep described by ``cfg`` into ``out`` (see the module docstring)."""
    method = get_method(cfg.method)
    grid = method_configs(cfg, method)
    first = grid[0][1]
    old = cfg.old or getattr(first, "old", None)
    new = cfg.new or getattr(first, "new", None)
    if not old or not new:
        raise CompatlmError(
            f"sweep: give old and new (the {cfg.method} config has no old/new to borrow)"
        )
    names = [role_name(cfg.knob, v) for v, _ in grid]
    if len(set(names)) != len(names):
        raise CompatlmError(f"values: the grid repeats a value ({', '.join(names)})")
    out = prepare_out_dir(out, overwrite=overwrite, resume=resume)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    specs = {}
    for name, (_, mcfg) in zip(names, grid, strict=True):
        log.info("sweep: building %s", name)
        specs[name] = _build(method, mcfg, out / "candidates" / name, cfg.runtime, resume)
    val = _eval(cfg, old, new, specs, cfg.validation, out / "validation", overwrite, resume)
    task = cfg.validation.name
    points = [_point(val, task, n, v, specs[n]) for n, (v, _) in zip(names, grid, strict=True)]
    vanilla = _point(val, task, "new", None, new)
    if cfg.accuracy_floor is not None:
        floor = Fraction(cfg.accuracy_floor)
        floor_doc = {"value": cfg.accuracy_floor, "source": "accuracy_floor"}
    else:
        vf = _frac(vanilla.accuracy)
        if vf is None:
            raise CompatlmError(
                "accuracy_floor: the new model's validation accuracy is undefined"
                f" ({vanilla.accuracy.get('reason')}); set accuracy_floor explicitly"
            )
        floor = vf
        floor_doc = {"value": float(vf), "source": "validation accuracy of the new model"}
    selected, reason = select(points, floor)
    test_metrics = None
    if selected is not None and cfg.test is not None:
        test = _eval(cfg, old, new, {selected.name: selected.spec}, cfg.test, out / "test",
                     overwrite, resume)  # fmt: skip
        test_metrics = {
            role: _point(test, cfg.test.name, role, None, "").__dict__
            for role in ("new", selected.name)
        }
    result = SweepResult(points, vanilla, floor_doc, selected, reason, test_metrics, [])
    result.paths = _write_outputs(out, cfg, result)
    return result


def _write_outputs(out: Path, cfg: SweepConfig, r: SweepResult) -> list[Path]:
    doc = {
        "method": cfg.method,
        "knob": cfg.knob,
        "validation_task": cfg.validation.model_dump(mode="json", exclude_none=True),
        "floor": r.floor,
        "new": asdict(r.new),
        "points": [asdict(p) for p in r.points],
        "selected": asdict(r.selected) if r.selected else None,
        "reason": r.reason,
        "test": r.test_metrics,
    }
    return [
        atomic_write_json(out / "sweep.json", doc),
        atomic_write_text(out / "sweep.md", sweep_markdown(doc)),
        atomic_write_bytes(out / "plots" / "sweep_front.png", front_png(doc)),
    ]
