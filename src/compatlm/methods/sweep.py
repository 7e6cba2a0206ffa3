"""``compatlm sweep``: a method over a grid of its knobs, selected on one split, tested once.

Every method trades the new model's accuracy gain against negative flips through its knobs
(alpha for port/interpolate, a weight ω for task arithmetic; the mask, kd_weight λ, temperature
T, epochs or focal β for MUSCLE). The sweep builds one candidate per grid point (plus, when
configured, a control built once) and selects one of them on the *selection* split with the
rule of :mod:`compatlm.methods.selection`. The order of work is the guarantee that the test
split cannot influence the choice:

1. plan: every grid point's config, the control's, old and new are checked; the selection split
   is loaded completely (it must exist and carry labels); of the test split only the file's
   existence is checked — all before ``--out`` is touched or anything is trained;
2. build ``candidates/<name>/`` per grid point (and the control);
3. evaluate old, new, every candidate and the control on the selection split → ``validation/``;
4. :func:`~compatlm.methods.selection.choose` reads ``validation/metrics.json`` and nothing else;
   the winner is written to ``selection.json`` before any test data is opened;
5. evaluate only old, new, the winner and the control on the test split → ``test/``;
6. write ``selection.json`` (every point's numbers with numerators and denominators, the rule,
   the winner, the test numbers), ``sweep.md`` and ``plots/sweep_front.png`` (and, in the
   original ``validation``/``test`` form, ``sweep.json`` as before).

A failed sweep removes the work directories this invocation created (``candidates/``,
``validation/``, ``test/``; each renamed away in one step, then deleted): when no candidate
reaches the accuracy floor (the verdict files stay, the CLI exits 1), or on an error before the
winner is fixed. An error in the test look keeps everything (the selection is complete: fix the
test split and ``--resume``), and so does an interruption (``--resume`` continues it).
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compatlm.config import (
    EvalConfig,
    TaskConfig,
    dump_config,
)
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from compatlm.methods.registry import Method, get_candidate_method
from compatlm.methods.selection import (
    NFR,
    Entry,
    Selection,
    SweepPoint,
    choose,
    point_from_metrics,
    select,
)
from compatlm.methods.sweep_config import (
    SweepConfig,
    control_of,
    grid_points,
    method_configs,
    point_name,
    role_name,
)
from compatlm.methods.sweep_docs import legacy_document, selection_document
from compatlm.methods.sweep_splits import (
    check_selection_split,
    check_test_split_exists,
    same_file,
    sweep_splits,
)
from compatlm.report.sweep import front_png, sweep_markdown
from compatlm.rundir import input_paths, prepare_out_dir

__all__ = ["SweepPoint", "SweepResult", "method_configs", "role_name", "run_sweep", "select"]

log = logging.getLogger(__name__)
WORK_DIRS = ("candidates", "validation", "test")


@dataclass
class SweepResult:
    points: list[SweepPoint]
    new: SweepPoint
    floor: dict[str, Any]  # value + where it came from
    selected: SweepPoint | None
    reason: str
    test_metrics: dict[str, Any] | None  # role -> point on the test split (new, the winner)
    paths: list[Path]
    selection: Selection | None = None


@dataclass
class Plan:
    """Everything a sweep will do, checked before anything is written."""

    method: Method
    grid: list[tuple[str, dict[str, Any], Any, Any]]  # name, knobs, value, method config
    old: str
    new: str
    val_task: TaskConfig
    val_split: str
    test_task: TaskConfig | None
    test_split: str | None
    control: tuple[str, Method | None, Any, str | None] | None = None  # name, method, cfg, spec
    inputs: list[str] = field(default_factory=list)

    @property
    def control_name(self) -> str | None:
        return self.control[0] if self.control is not None else None


def _metric(cfg: SweepConfig) -> str:
    rule = cfg.rule()
    return rule.metric if rule is not None else NFR


def plan_sweep(cfg: SweepConfig) -> Plan:
    """Check every input of the sweep (step 1 of the module docstring); write nothing."""
    from compatlm.models import preflight

    method = get_candidate_method(cfg.method)
    grid_cfgs = method_configs(cfg, method)
    knobs = grid_points(cfg)
    first = grid_cfgs[0][1]
    old_spec = cfg.old or getattr(first, "old", None)
    new_spec = cfg.new or getattr(first, "new", None)
    if old_spec is None or new_spec is None:
        raise CompatlmError(
            f"sweep: give old and new (the {cfg.method} config has no old/new to borrow)"
        )
    # From here on a sweep deals in spec strings, as its builders return them and its
    # selection.json records them.
    old, new = str(old_spec), str(new_spec)
    names = [point_name(k) for k in knobs]
    if len(set(names)) != len(names):
        raise CompatlmError(f"values: the grid repeats a value ({', '.join(names)})")
    control = control_of(cfg)
    if control is not None and control[0] in names:
        raise CompatlmError(f"control.name: {control[0]!r} is also the name of a grid point")
    val_task, val_split, test_task, test_split, val_field, test_field = sweep_splits(cfg)
    if test_task is not None and same_file(val_task, test_task):
        raise CompatlmError(
            f"{val_field}: the selection split and the test split read the same data"
            f" ({val_task.path or val_task.name}); select on one split and test on another"
        )
    by_name = cfg.rule() is not None  # splits named in select: say which one
    n = check_selection_split(val_task, f"{val_field} {val_split!r}" if by_name else val_field)
    if test_task is not None:
        check_test_split_exists(
            test_task, f"{test_field} {test_split!r}" if by_name else test_field
        )
    checks = [("old", old), ("new", new)]
    if control is not None and control[3] is not None:
        checks.append(("control.spec", control[3]))
    for role, spec in checks:
        try:
            preflight(spec, cfg.runtime)
        except CompatlmError as err:
            raise CompatlmError(f"{role}: {err}") from None
    log.info("sweep: %d grid points, selecting on %s (%d examples)", len(names), val_split, n)
    grid = [(nm, k, v, c) for nm, k, (v, c) in zip(names, knobs, grid_cfgs, strict=True)]
    inputs = [t.path for t in (val_task, test_task) if t is not None and t.path is not None]
    if isinstance(cfg.config, str):
        inputs.append(cfg.config)
    return Plan(method, grid, old, new, val_task, val_split, test_task, test_split, control, inputs)


def _eval(cfg: SweepConfig, old: str, new: str, cands: dict[str, str], task: TaskConfig,
          out: Path, overwrite: bool, resume: bool) -> dict[str, Any]:  # fmt: skip
    from compatlm.eval.pipeline import run_eval
    from compatlm.report import render_report

    ecfg = EvalConfig(old=old, new=new, candidates=cands, tasks=[task], runtime=cfg.runtime,
                      compare=cfg.compare)  # fmt: skip
    run = run_eval(ecfg, out, overwrite=overwrite, resume=resume)
    render_report(run)  # eval itself renders nothing; each eval run keeps its reports
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def _build(method: Method, mcfg: Any, out: Path, runtime: Any, resume: bool) -> str:
    """Build one candidate, reusing a finished one from an interrupted sweep (same config)."""
    manifest, recorded = out / "candidate.json", out / "config.yaml"
    if resume and manifest.is_file() and recorded.is_file():
        try:  # a corrupt leftover is rebuilt, not a traceback
            same = recorded.read_text(encoding="utf-8") == dump_config(mcfg)
            spec = json.loads(manifest.read_text(encoding="utf-8"))["spec"] if same else None
        except (UnicodeDecodeError, ValueError, TypeError, KeyError):
            spec = None
        if isinstance(spec, str):
            return spec
    prepare_out_dir(out, kind="candidate", overwrite=True, resumable=False)
    return method.build(mcfg, out, runtime=runtime)


class WorkDirs:
    """The work directories of one invocation, so that a failed sweep removes what it created
    (and only that: directories a resumed run found are left as they were)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.existed = {name: (out / name).exists() for name in WORK_DIRS}
        cands = out / "candidates"
        self.old_candidates = {p.name for p in cands.iterdir()} if cands.is_dir() else set()

    def remove_created(self) -> list[str]:
        """Remove what this invocation created: each directory is renamed into the staging
        area in one step (it is gone from its place at once), then deleted."""
        from compatlm.paths import STAGING

        doomed = [
            self.out / n for n in WORK_DIRS if (self.out / n).exists() and not self.existed[n]
        ]
        cands = self.out / "candidates"
        if self.existed["candidates"] and cands.is_dir():
            doomed += [p for p in cands.iterdir() if p.name not in self.old_candidates]
        trash = self.out / STAGING
        removed = []
        for path in doomed:
            trash.mkdir(exist_ok=True)
            path.rename(trash / f"removed-{path.name}-{secrets.token_hex(4)}")
            removed.append(path.relative_to(self.out).as_posix())
        shutil.rmtree(trash, ignore_errors=True)
        return removed


def run_sweep(
    cfg: SweepConfig, out: str | Path, *, overwrite: bool = False, resume: bool = False
) -> SweepResult:
    """Run the sweep described by ``cfg`` into ``out`` (see the module docstring)."""
    plan = plan_sweep(cfg)
    inputs = [*plan.inputs, *input_paths(cfg)]  # + local models and adapters of the config
    out = prepare_out_dir(out, kind="sweep", overwrite=overwrite, resume=resume, inputs=inputs)
    work = WorkDirs(out)
    fixed = False  # True once the winner is on disk: later errors keep the work for --resume
    try:
        atomic_write_text(out / "config.yaml", dump_config(cfg))
        specs = _build_all(plan, cfg, out, resume)
        val = _eval(cfg, plan.old, plan.new, specs, plan.val_task, out / "validation",
                    overwrite, resume)  # fmt: skip
        selection = _choose(val, plan, cfg, specs)
        if selection.winner is None:
            removed = work.remove_created()
            log.info("sweep: no candidate selected; removed %s", ", ".join(removed) or "nothing")
            return _finish(out, cfg, plan, selection, None, "no_candidate", removed)
        # The winner is on disk before any test data is opened.
        _write_selection(out, cfg, plan, selection, None, "winner_fixed", [])
        fixed = True
        test = None
        if plan.test_task is not None:
            test = _test_look(cfg, plan, selection, specs, out, overwrite, resume)
        return _finish(out, cfg, plan, selection, test, "selected", [])
    except Exception:
        if not fixed:
            work.remove_created()
        raise


def _build_all(plan: Plan, cfg: SweepConfig, out: Path, resume: bool) -> dict[str, str]:
    specs: dict[str, str] = {}
    for name, _, _, mcfg in plan.grid:
        log.info("sweep: building %s", name)
        specs[name] = _build(plan.method, mcfg, out / "candidates" / name, cfg.runtime, resume)
    if plan.control is not None:
        name, method, ccfg, spec = plan.control
        if spec is None:
            assert method is not None
            log.info("sweep: building the control %s (%s)", name, method.name)
            spec = _build(method, ccfg, out / "candidates" / name, cfg.runtime, resume)
        specs[name] = spec
    return specs


def _choose(val: dict[str, Any], plan: Plan, cfg: SweepConfig, specs: dict[str, str]) -> Selection:
    """The selection step. It is given the selection split's metrics document and nothing else."""
    entries = [Entry(n, specs[n], "candidate", v, k) for n, k, v, _ in plan.grid]
    if plan.control_name is not None:
        entries.append(Entry(plan.control_name, specs[plan.control_name], "control"))
    rule = cfg.rule()
    return choose(
        val,
        plan.val_task.name,
        entries,
        plan.new,
        metric=_metric(cfg),
        split=plan.val_split,
        floor_points=rule.accuracy_floor if rule is not None else None,
        floor_absolute=None if rule is not None else cfg.accuracy_floor,
        floor_field="select.accuracy_floor" if rule is not None else "accuracy_floor",
        control_competes=rule.control_competes if rule is not None else True,
    )


def _test_look(cfg: SweepConfig, plan: Plan, selection: Selection, specs: dict[str, str],
               out: Path, overwrite: bool, resume: bool) -> dict[str, Any]:  # fmt: skip
    """Old, new, the winner and the control on the test split: the one look at it."""
    assert selection.winner is not None and plan.test_task is not None
    roles = {selection.winner.name: selection.winner.spec}
    if plan.control_name is not None:
        roles[plan.control_name] = specs[plan.control_name]
    doc = _eval(cfg, plan.old, plan.new, roles, plan.test_task, out / "test", overwrite, resume)
    models = {}
    for role, spec in {"new": plan.new, **roles}.items():
        kind = "new" if role == "new" else "control" if role == plan.control_name else "candidate"
        p = point_from_metrics(doc, plan.test_task.name, Entry(role, spec, kind), _metric(cfg))
        models[role] = asdict(p) | {"winner": role == selection.winner.name}
    old_acc = next(c["metrics"]["accuracy_old"] for c in doc["comparisons"])
    return {"split": plan.test_split, "old_accuracy": old_acc, "models": models}


def _write_selection(
    out: Path,
    cfg: SweepConfig,
    plan: Plan,
    sel: Selection,
    test: dict[str, Any] | None,
    status: str,
    removed: list[str],
) -> Path:
    doc = selection_document(
        cfg,
        sel,
        old=plan.old,
        control=plan.control_name,
        test=test,
        status=status,
        removed=removed,
        splits=(plan.val_split, plan.val_task, plan.test_split, plan.test_task),
    )
    return atomic_write_json(out / "selection.json", doc)


def _finish(out: Path, cfg: SweepConfig, plan: Plan, sel: Selection, test: dict[str, Any] | None,
            status: str, removed: list[str]) -> SweepResult:  # fmt: skip
    paths = [_write_selection(out, cfg, plan, sel, test, status, removed)]
    doc = json.loads(paths[0].read_text(encoding="utf-8"))
    paths.append(atomic_write_text(out / "sweep.md", sweep_markdown(doc)))
    paths.append(atomic_write_bytes(out / "plots" / "sweep_front.png", front_png(doc)))
    legacy_test = None
    if test is not None and sel.winner is not None:
        legacy_test = {r: test["models"][r] for r in ("new", sel.winner.name)}
    if cfg.rule() is None:
        paths.append(atomic_write_json(out / "sweep.json", legacy_document(cfg, sel, legacy_test)))
    return SweepResult(sel.points, sel.new, sel.floor, sel.winner, sel.reason, legacy_test,
                       paths, sel)  # fmt: skip
