"""The numerical noise floor of multiple-choice scoring: how much the decision scores of ONE
model move when only the batch size (or the dtype) changes.

A flip between two model versions whose decision margins are smaller than what the same model
does to itself under another batch size is not evidence of a regression; it is labelled
``within_noise`` in ``flips/`` (see :func:`compatlm.eval.compare.compare_sets`). Batch size
changes the padding width and the BLAS blocking of every matmul, and bf16/fp16 round
differently from fp32, so the measured floor is machine- and dtype-specific: it is measured on
the run's own model and hardware, never assumed.

Owns :func:`measure_noise` (one model, one task, two settings), :func:`score_changes` (the
comparison of two sets of decision scores) and :func:`measure_run_noise`, the step of
``compatlm eval`` behind ``compare.noise_batch_size`` that re-scores the NEW model and writes
``noise.json``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from compatlm.config import EvalConfig, RuntimeConfig, TaskConfig
from compatlm.errors import CompatlmError
from compatlm.eval.records import load_predictions
from compatlm.eval.roles import model_groups
from compatlm.eval.runner import argmax_first, decision_scores, score_multiple_choice
from compatlm.io import atomic_write_json
from compatlm.models import load_model
from compatlm.paths import RunLayout
from compatlm.prompts import model_max_length
from compatlm.spec import ModelSpec
from compatlm.tasks import ResolvedTask, resolve_task

log = logging.getLogger(__name__)

NOISE_FILE = "noise.json"  # RunLayout.noise
_FIRST_IDS = 10  # changed ids named in the output

# example id -> the per-choice decision scores (acc: log-likelihoods; acc_norm: per character)
Scores = Mapping[str, Sequence[float]]


def _margin(scores: Sequence[float], choice: int) -> float:
    """Decision score of ``choice`` minus the best other choice (negative = not the argmax)."""
    others = [s for i, s in enumerate(scores) if i != choice]
    return float(scores[choice]) - max(others) if others else 0.0


def score_changes(reference: Scores, other: Scores) -> dict[str, Any]:
    """How ``other`` differs from ``reference`` on the examples both scored.

    ``choice_changes`` counts examples whose argmax differs; ``max_abs_margin_change`` is the
    largest change of the margin of the reference's chosen choice (a continuous quantity even
    when the choice flips); ``noise_margin`` is the largest |Δ decision score| of any choice.
    """
    ids = [i for i in reference if i in other]
    if not ids:
        raise CompatlmError("noise: the two scorings share no example id")
    changed: list[str] = []
    max_delta = 0.0
    max_margin = 0.0
    for i in ids:
        a, b = list(reference[i]), list(other[i])
        if len(a) != len(b):
            raise CompatlmError(f"noise: example {i!r} has {len(a)} vs {len(b)} choices")
        deltas = [abs(x - y) for x, y in zip(a, b, strict=True)]
        if not all(math.isfinite(d) for d in deltas):
            raise CompatlmError(f"noise: example {i!r} has a non-finite decision score")
        max_delta = max(max_delta, *deltas)
        pick = argmax_first(a)
        if argmax_first(b) != pick:
            changed.append(i)
        max_margin = max(max_margin, abs(_margin(b, pick) - _margin(a, pick)))
    return {
        "instances": len(ids),
        "choice_changes": {"count": len(changed), "ids": changed[:_FIRST_IDS]},
        "max_abs_margin_change": max_margin,
        "noise_margin": max_delta,
    }


def _mc_task(task: ResolvedTask | TaskConfig) -> ResolvedTask:
    resolved = resolve_task(task) if isinstance(task, TaskConfig) else task
    if resolved.kind != "multiple_choice":
        raise CompatlmError(
            f"noise: task {resolved.name!r} is {resolved.kind}; the noise floor is measured on"
            " multiple-choice decision scores"
        )
    return resolved


def _decision_scores(
    loaded: Any, task: ResolvedTask, batch_size: int, scoring: str = "cached"
) -> dict[str, list[float]]:
    model, tok = loaded.model, loaded.tokenizer
    results = score_multiple_choice(
        model,
        tok,
        task.examples,
        metric=task.metric,
        batch_size=batch_size,
        max_length=model_max_length(model, tok),
        scoring=scoring,
    )
    return {r.example.id: list(r.decision_scores) for r in results}


def measure_noise(
    spec: ModelSpec,
    task: ResolvedTask | TaskConfig,
    runtime: RuntimeConfig,
    batch_sizes: tuple[int, int] = (1, 8),
    dtype: str | None = None,
) -> dict[str, Any]:
    """Score ``spec`` on the MC ``task`` with ``batch_sizes[0]`` (runtime dtype) and again with
    ``batch_sizes[1]`` (and ``dtype`` if given); return :func:`score_changes` plus settings."""
    task = _mc_task(task)
    first = load_model(spec, runtime=runtime)
    reference = _decision_scores(first, task, batch_sizes[0], runtime.scoring)
    second = first
    if dtype is not None and dtype != runtime.dtype:
        first.model = None  # one model in memory at a time
        second = load_model(spec, runtime=runtime.model_copy(update={"dtype": dtype}))
    other = _decision_scores(second, task, batch_sizes[1], runtime.scoring)
    return {
        "model": spec.format(),
        "task": task.name,
        "metric": task.metric,
        "batch_sizes": list(batch_sizes),
        "dtypes": [runtime.dtype, dtype or runtime.dtype],
        **score_changes(reference, other),
    }


def _scores_on_disk(path: Path) -> dict[str, list[float]]:
    """Decision scores of a prediction file, recomputed from its log-likelihoods."""
    out = {}
    for eid, row in load_predictions(path).rows.items():
        if row.loglikelihoods is None or row.choice_lengths is None or row.metric is None:
            raise CompatlmError(f"{path}: example {eid!r} has no log-likelihoods to compare with")
        out[eid] = decision_scores(row.loglikelihoods, row.choice_lengths, row.metric)
    return out


def measure_run_noise(
    out: Path, cfg: EvalConfig, tasks: Sequence[ResolvedTask], role: str = "new"
) -> dict[str, float] | None:
    """Re-score ``role``'s multiple-choice tasks with ``cfg.compare.noise_batch_size`` and
    compare with its predictions on disk (scored with ``runtime.batch_size``); write
    ``noise.json`` and return ``{task: noise_margin}`` (None when the option is off)."""
    batch = cfg.compare.noise_batch_size
    if batch is None:
        return None
    rt = cfg.runtime
    if batch == rt.batch_size:
        log.warning(
            "compare.noise_batch_size equals runtime.batch_size (%d): the noise floor measured"
            " this way is 0 by construction; pick another batch size",
            batch,
        )
    default = cfg.new if role == "new" else cfg.candidates.get(role)
    groups = model_groups(cfg, role, default, tasks, kind="multiple_choice")
    doc: dict[str, Any] = {
        "schema_version": 1,
        "role": role,
        "batch_sizes": [rt.batch_size, batch],
        "dtype": rt.dtype,
        "tasks": {},
        "noise_margin": None,
    }
    if not groups:
        doc["reason"] = f"no multiple-choice task is evaluated with the {role} model"
        atomic_write_json(RunLayout(out).noise, doc)
        return None
    margins: dict[str, float] = {}
    for spec, group in groups.items():
        loaded = load_model(spec, runtime=rt)
        for task in group:
            on_disk = _scores_on_disk(RunLayout(out).predictions(task.name, role))
            entry = score_changes(on_disk, _decision_scores(loaded, task, batch, rt.scoring))
            doc["tasks"][task.name] = {"model": spec.format(), "metric": task.metric, **entry}
            margins[task.name] = entry["noise_margin"]
        loaded.model = None
    doc["noise_margin"] = max(margins.values())
    atomic_write_json(RunLayout(out).noise, doc)
    return margins
