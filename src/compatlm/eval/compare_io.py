"""Comparing files and run directories: validate everything, then write atomically as a set.

:func:`compare_files` (two prediction files, ours or lm-eval's) and :func:`compare_run` (a run
directory with ``predictions/<task>/<role>.jsonl``) validate every input first and only then
write ``flips/<task>/<reference>_vs_<other>.jsonl`` and ``metrics.json`` (validated against
:mod:`compatlm.eval.result_schema` first). The pure comparison lives in
:mod:`compatlm.eval.compare`.

Evaluation never renders: the reports belong to :mod:`compatlm.report`, which eval does not
import (metrics.json must not need matplotlib). A caller that wants them in the set passes a
``render`` function (the CLI passes ``compatlm.report.render_report``); it runs on the staged
files, so the reports are part of the set.

The outputs are one set: flips, metrics.json and the reports must describe the same comparison.
They are written into a staging directory inside the run and swapped in only when all of them
exist, so a comparison that fails half-way (a report that cannot be rendered) leaves the
previous set untouched; while the swap itself runs, ``.compatlm-incomplete`` marks the run so
``compatlm report`` refuses a set that may be mixed. Without ``render`` the set has no reports,
and earlier ones are removed with the set they described.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from compatlm.config import CompareConfig
from compatlm.errors import CompatlmError
from compatlm.eval.columns import trim_heap
from compatlm.eval.compare import Comparison, compare_sets, lookup
from compatlm.eval.examples import attach_texts, load_texts
from compatlm.eval.gate import gate_record, parse_conditions
from compatlm.eval.metrics import metrics_document, relative_change
from compatlm.eval.records import is_lmeval_file, load_predictions
from compatlm.eval.result_schema import check_document
from compatlm.io import (
    atomic_write_json,
    atomic_write_jsonl,
    git_hash,
    is_finite_number,
    parse_json,
)
from compatlm.paths import RunLayout, unique_flips_paths
from compatlm.rundir import check_out_dir, lock, prepare_out_dir
from compatlm.train.diagnostics import collect_diagnostics

# What one comparison writes, as a set: directories, then files.
_SET_DIRS = ("flips", "plots")
_SET_FILES = ("metrics.json", "report.md", "report.html")


class Renderer(Protocol):
    """Writes the reports of the staged set in ``run_dir`` (``compatlm.report.render_report``);
    ``env_dir`` is where the run's env.json is (the staging directory has none)."""

    def __call__(self, run_dir: Path, *, env_dir: Path) -> object: ...


def _assign_flips_paths(comparisons: list[Comparison]) -> None:
    """Give every comparison its own flips file even when names collide after sanitising."""
    keys = [(c.task, c.reference, c.other) for c in comparisons]
    sources = [f"{c.files.get('reference')}\x00{c.files.get('other')}" for c in comparisons]
    paths, notes = unique_flips_paths(keys, sources)
    for c, p, note in zip(comparisons, paths, notes, strict=True):
        c.flips_file = p
        if note is not None:
            c.warnings.append(note)


def _write(
    out_dir: Path, comparisons: list[Comparison], doc: dict[str, Any], render: Renderer | None
) -> None:
    """Write flips, metrics.json and (with ``render``) the reports into a staging directory,
    then swap them in."""
    layout = RunLayout(out_dir)
    stage = layout.staging
    shutil.rmtree(stage, ignore_errors=True)
    try:
        for c in comparisons:
            atomic_write_jsonl(stage / c.flips_relpath, c.flips)
            # The reports render from the files: the columns of both sets can go first.
            c.flips.release()
        trim_heap()
        atomic_write_json(stage / "metrics.json", doc)
        if render is not None:
            render(stage, env_dir=out_dir)  # the header reads the run's env.json
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # the previous set stays as it was
        raise
    # Everything exists: swap in. The marker tells `compatlm report` (and a reader) that a
    # kill between these renames left a set that may be mixed.
    atomic_write_json(layout.incomplete, {"staging": stage.name})
    for name in _SET_DIRS:
        if (out_dir / name).exists():
            (out_dir / name).rename(stage / f"{name}.previous")
        if (stage / name).exists():
            (stage / name).rename(out_dir / name)
    for name in _SET_FILES:
        if (stage / name).exists():
            os.replace(stage / name, out_dir / name)
        else:  # a report not rendered with this set: an earlier one describes another set
            (out_dir / name).unlink(missing_ok=True)
    layout.incomplete.unlink()
    shutil.rmtree(stage, ignore_errors=True)


def _finish(doc: dict[str, Any], cfg: CompareConfig) -> dict[str, Any]:
    """Add what the report header states: the code version and the gate's outcome (checked
    here, before anything is written, so metrics.json records the gate the exit code reflects
    and a condition matching no comparison fails with nothing written)."""
    doc["git_hash"] = git_hash()
    doc["gate"] = gate_record(doc, list(cfg.fail_if))
    check_document(doc)  # a document that drifted from the schema is a bug: fail, write nothing
    return doc


def recorded_tokenizers(run: Path) -> dict[str, str]:
    """``{role: tokenizer fingerprint}`` eval recorded in ``env.json`` ({} when absent): roles
    whose tokenizers differ are compared on example hashes, not prompt hashes."""
    try:
        doc = parse_json(RunLayout(run).env.read_text(encoding="utf-8"), RunLayout(run).env)
    except (OSError, UnicodeDecodeError, CompatlmError):
        return {}  # no record (a run not made by eval): prompt hashes are compared as always
    fps = doc.get("tokenizers") if isinstance(doc, dict) else None
    if not isinstance(fps, dict):
        return {}
    return {k: v for k, v in fps.items() if isinstance(v, str)}


def recorded_noise(run: Path) -> dict[str, float] | None:
    """``{task: noise_margin}`` from the run's ``noise.json`` (None when it has none)."""
    path = RunLayout(run).noise
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CompatlmError(f"{path}: cannot be read ({err})") from None
    doc = parse_json(text, path)
    tasks = doc.get("tasks") if isinstance(doc, dict) else None
    if not isinstance(tasks, dict):
        raise CompatlmError(f"{path}: field 'tasks': expected an object of task -> entry")
    out = {}
    for task, entry in tasks.items():
        margin = entry.get("noise_margin") if isinstance(entry, dict) else None
        if not is_finite_number(margin) or margin < 0:
            raise CompatlmError(
                f"{path}: field 'tasks.{task}.noise_margin': expected a number >= 0,"
                f" found {margin!r}"
            )
        out[task] = float(margin)
    return out or None


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
    inputs: Sequence[str | Path] = (),
    render: Renderer | None = None,
) -> dict[str, Any]:
    """Compare two prediction files into ``out_dir``; returns the metrics.json document.

    Everything is read and validated before ``out_dir`` is touched, so bad input leaves nothing.
    ``inputs`` are further files the command read (a ``--config``): ``--overwrite`` refuses to
    delete a directory holding them, as it does for the two prediction files. ``render``
    writes the reports into the set (none without it).
    """
    parse_conditions(cfg.fail_if)  # a bad gate must fail before anything is written
    lmeval = [is_lmeval_file(p) for p in (old_path, new_path)]
    given = (filter, metric, cfg.join_key)
    if any(x is not None for x in given) and not any(lmeval):
        raise CompatlmError(
            "--filter/--metric/--join-key apply to lm-eval samples files; neither input is one"
        )
    # The lm-eval options apply to whichever input is an lm-eval file (either may be ours):
    # with a join key, its doc field meets the task row ids of a compatlm file.
    lm_opts = {"filter": filter, "metric": metric, "join_key": cfg.join_key}
    old, new = (
        load_predictions(p, **(lm_opts if is_lm else {}))
        for p, is_lm in zip((old_path, new_path), lmeval, strict=True)
    )
    ref, other = old.role or "old", new.role or "new"
    if ref == other:
        ref, other = "old", "new"
    comp = compare_sets(old, new, cfg, noise_margin=noise_margin, reference=ref, other=other)
    out = Path(out_dir)
    every_input = [old.path, new.path, *inputs]
    # Refusals (not a run directory, an input inside it, ...) before anything is written.
    check_out_dir(out, kind="compare", overwrite=overwrite, inputs=every_input, resumable=False)
    comp.files = {"reference": str(old.path.resolve()), "other": str(new.path.resolve())}
    del old, new  # only the flips hold the sets now, and release them once written
    _assign_flips_paths([comp])
    settings = {
        "noise_margin": noise_margin,
        "reference": ref,
        "lmeval_filter": filter,
        "lmeval_metric": metric,
        **({"join_key": cfg.join_key} if cfg.join_key is not None else {}),
    }
    doc = _finish(metrics_document([comp.to_json()], cfg, settings), cfg)
    out = prepare_out_dir(
        out, kind="compare", overwrite=overwrite, inputs=every_input, resumable=False
    )
    _write(out, [comp], doc, render)
    return doc


def compare_run(
    run_dir: str | Path,
    cfg: CompareConfig,
    *,
    reference: str = "old",
    baseline: str = "new",
    noise_margin: float | dict[str, float] | None = None,
    render: Renderer | None = None,
) -> dict[str, Any]:
    """Compare every role of ``run_dir/predictions/<task>/<role>.jsonl`` against ``reference``
    and every candidate against ``baseline`` (candidate vs vanilla new model); write flips,
    metrics.json and (with ``render``) the reports into ``run_dir``. Returns the metrics.json
    document.
    ``noise_margin`` is one floor for every task or ``{task: floor}`` (decision scores of
    acc and acc_norm tasks live on different scales); a task missing from the dict has none."""
    parse_conditions(cfg.fail_if)
    if cfg.join_key is not None:
        raise CompatlmError(
            "join key: applies to lm-eval samples files (compare OLD NEW); a run directory's"
            " predictions join on example_id"
        )
    run = Path(run_dir)
    noise_source = "given" if noise_margin is not None else None
    if noise_margin is None:
        # The floor eval measured (compare.noise_batch_size): a recompare must keep it, or
        # every within_noise label would silently disappear.
        noise_margin = recorded_noise(run)
        noise_source = RunLayout(run).noise.name if noise_margin is not None else None
    fps = recorded_tokenizers(run)

    def tokenizers(a: str, b: str) -> tuple[str, str] | None:
        return (fps[a], fps[b]) if a in fps and b in fps else None

    pred_root = RunLayout(run).predictions_dir
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
        first = len(comparisons)
        floor = noise_margin.get(tdir.name) if isinstance(noise_margin, dict) else noise_margin
        for ps in sets.values():
            ps.task = ps.task or tdir.name
        ordered = [reference] + [r for r in (baseline,) if r in sets and r != reference]
        ordered += [r for r in sets if r not in ordered]
        vs_ref = {}
        for role in ordered[1:]:
            vs_ref[role] = compare_sets(
                sets[reference],
                sets[role],
                cfg,
                noise_margin=floor,
                tokenizers=tokenizers(reference, role),
            )
            comparisons.append(vs_ref[role])
        if baseline in sets and baseline != reference:
            for role in ordered[2:]:
                c = vs_ref[role]
                base = vs_ref[baseline]
                c.relative_to_baseline = relative_change(c.to_json(), base.to_json(), baseline)
                comparisons.append(
                    compare_sets(
                        sets[baseline],
                        sets[role],
                        cfg,
                        noise_margin=floor,
                        tokenizers=tokenizers(baseline, role),
                    )
                )
        texts = load_texts(run, tdir.name)
        ref = sets[reference].columns
        for c in comparisons[first:]:
            # The reference's example hash of each flipped id decides whether the recorded
            # texts belong to it; flip rows are built (and texts attached) while written.
            flipped = c.flips.example_ids()
            rows = lookup(ref, flipped).tolist()
            pairs = zip(flipped, rows, strict=True)
            hashes = {i: ref.example_hash.get(k) for i, k in pairs if k >= 0}
            c.flips.set_decorate(lambda fl, t=texts, h=hashes: attach_texts(fl, t, h))
    ps = sets = ref = None  # the flips hold what they need until they are written
    if not comparisons:
        raise CompatlmError(
            f"{run}: only the {reference!r} role has predictions; nothing to compare"
        )
    for c in comparisons:
        c.files = {k: str(Path(v).relative_to(run)) for k, v in c.files.items()}
    _assign_flips_paths(comparisons)
    settings = {
        "noise_margin": noise_margin,
        "noise_margin_source": noise_source,
        "reference": reference,
        "baseline": baseline,
    }
    doc = metrics_document([c.to_json() for c in comparisons], cfg, settings)
    doc["diagnostics"] = collect_diagnostics(doc["comparisons"], reference)
    doc = _finish(doc, cfg)
    # flips/ and plots/ belong to compare: they are replaced as a whole (stale files from an
    # earlier comparison would be mistaken for current ones). One writer at a time.
    lock(run)
    _write(run, comparisons, doc, render)
    return doc
