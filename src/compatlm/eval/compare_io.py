"""Comparing files and run directories: validate everything, then write atomically.

:func:`compare_files` (two prediction files, ours or lm-eval's) and :func:`compare_run` (a run
directory with ``predictions/<task>/<role>.jsonl``) validate every input first and only then
write ``flips/<task>/<reference>_vs_<other>.jsonl``, ``metrics.json`` and the reports. The
pure comparison lives in :mod:`compatlm.eval.compare`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from compatlm.config import CompareConfig
from compatlm.errors import CompatlmError
from compatlm.eval.compare import Comparison, compare_sets
from compatlm.eval.gate import parse_conditions
from compatlm.eval.metrics import metrics_document, relative_change
from compatlm.eval.records import is_lmeval_file, load_predictions
from compatlm.io import atomic_write_json, atomic_write_jsonl, prepare_out_dir


def _write(out_dir: Path, comparisons: list[Comparison], doc: dict[str, Any]) -> None:
    from compatlm.report import render_report

    for c in comparisons:
        atomic_write_jsonl(out_dir / c.flips_relpath, c.flips)
    atomic_write_json(out_dir / "metrics.json", doc)
    render_report(out_dir)


def compare_files(
    old_path: str | Path,
    new_path: str | Path,
    out_dir: str | Path,
    cfg: CompareConfig,
    *,
    overwrite: bool = False,
    noise_margin: float | None = None,
    filter: str | None = None,
    metric: str | None = None,
) -> dict[str, Any]:
    """Compare two prediction files into ``out_dir``; returns the metrics.json document.

    Everything is read and validated before ``out_dir`` is touched, so bad input leaves nothing.
    """
    parse_conditions(cfg.fail_if)  # a bad gate must fail before anything is written
    lmeval = [is_lmeval_file(p) for p in (old_path, new_path)]
    if (filter is not None or metric is not None) and not any(lmeval):
        raise CompatlmError(
            "--filter/--metric apply to lm-eval samples files; neither input is one"
        )
    # The lm-eval options apply to whichever input is an lm-eval file (either may be ours).
    old, new = (
        load_predictions(p, **({"filter": filter, "metric": metric} if is_lm else {}))
        for p, is_lm in zip((old_path, new_path), lmeval, strict=True)
    )
    ref, other = old.role or "old", new.role or "new"
    if ref == other:
        ref, other = "old", "new"
    comp = compare_sets(old, new, cfg, noise_margin=noise_margin, reference=ref, other=other)
    out = Path(out_dir)
    for p in (old.path, new.path):
        if overwrite and out.exists() and p.resolve().is_relative_to(out.resolve()):
            raise CompatlmError(f"--out {out}: contains the input {p}; --overwrite would delete it")
    comp.files = {"reference": str(old.path.resolve()), "other": str(new.path.resolve())}
    settings = {
        "noise_margin": noise_margin,
        "reference": ref,
        "lmeval_filter": filter,
        "lmeval_metric": metric,
    }
    doc = metrics_document([comp.to_json()], cfg, settings)
    out = prepare_out_dir(out, overwrite=overwrite)
    _write(out, [comp], doc)
    return doc


def compare_run(
    run_dir: str | Path,
    cfg: CompareConfig,
    *,
    reference: str = "old",
    baseline: str = "new",
    noise_margin: float | dict[str, float] | None = None,
) -> dict[str, Any]:
    """Compare every role of ``run_dir/predictions/<task>/<role>.jsonl`` against ``reference``
    and every candidate against ``baseline`` (candidate vs vanilla new model); write flips,
    metrics.json and the reports into ``run_dir``. Returns the metrics.json document.
    ``noise_margin`` is one floor for every task or ``{task: floor}`` (decision scores of
    acc and acc_norm tasks live on different scales); a task missing from the dict has none."""
    parse_conditions(cfg.fail_if)
    run = Path(run_dir)
    pred_root = run / "predictions"
    task_dirs = sorted(p for p in pred_root.iterdir() if p.is_dir()) if pred_root.is_dir() else []
    if not task_dirs:
        raise CompatlmError(f"{run}: no predictions/<task>/<role>.jsonl files found")
    comparisons: list[Comparison] = []
    for tdir in task_dirs:
        files = {p.stem: p for p in sorted(tdir.glob("*.jsonl"))}
        if reference not in files:
            raise CompatlmError(
                f"{tdir}: no {reference}.jsonl (reference role); roles here: "
                f"{', '.join(files) or '(none)'}"
            )
        sets = {role: load_predictions(p, role=role) for role, p in files.items()}
        floor = noise_margin.get(tdir.name) if isinstance(noise_margin, dict) else noise_margin
        for ps in sets.values():
            ps.task = ps.task or tdir.name
        ordered = [reference] + [r for r in (baseline,) if r in sets and r != reference]
        ordered += [r for r in sets if r not in ordered]
        vs_ref = {}
        for role in ordered[1:]:
            vs_ref[role] = compare_sets(sets[reference], sets[role], cfg, noise_margin=floor)
            comparisons.append(vs_ref[role])
        if baseline in sets and baseline != reference:
            for role in ordered[2:]:
                c = vs_ref[role]
                base = vs_ref[baseline]
                c.relative_to_baseline = relative_change(c.to_json(), base.to_json(), baseline)
                comparisons.append(
                    compare_sets(sets[baseline], sets[role], cfg, noise_margin=floor)
                )
    if not comparisons:
        raise CompatlmError(
            f"{run}: only the {reference!r} role has predictions; nothing to compare"
        )
    for c in comparisons:
        c.files = {k: str(Path(v).relative_to(run)) for k, v in c.files.items()}
    settings = {"noise_margin": noise_margin, "reference": reference, "baseline": baseline}
    doc = metrics_document([c.to_json() for c in comparisons], cfg, settings)
    # The flips directory belongs to compare: stale files from an earlier comparison would be
    # mistaken for current ones, so it is rebuilt.
    shutil.rmtree(run / "flips", ignore_errors=True)
    _write(run, comparisons, doc)
    return doc
