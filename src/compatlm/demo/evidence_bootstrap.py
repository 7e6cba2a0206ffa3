"""Cluster-bootstrap CI of the demo's Δ%NFR averaged over tasks and seeds.

The statistic is the one ``evidence.json`` reports as the headline: for a pair of roles (a, b),
Δ%NFR = 100·(NF_a − NF_b)/NF_b per seed and task (NF = negative flips vs old, similarity flips on
generative tasks), averaged over seeds, then over tasks. Its sampling noise comes from the test
instances, which are correlated within a group (a source shared by several rows), so a resample
draws groups with replacement within each task. All seeds were evaluated on the same test set,
so one draw of groups serves every seed of a task; tasks are drawn independently. The per-group
flip counts come from the predictions files, checked against the numerators in metrics.json.

Sums per resample use :func:`compatlm.eval.stats.bootstrap_sums` (O(B·U) memory, identical group
rows merged); an undefined resample (no flips of b drawn) is left out of the percentile interval
and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compatlm.demo.evidence_cells import comparison, complete_tasks, usable_tasks
from compatlm.demo.selection import primary_nfr
from compatlm.errors import CompatlmError
from compatlm.eval.metrics import classification_columns, group_codes, similarity_columns
from compatlm.eval.records import load_predictions
from compatlm.eval.stats import bootstrap_sums, group_sums, percentile_ci
from compatlm.paths import RunLayout

DIFFERENCE = "muscle_minus_continue_ce"  # Δ%NFR(muscle vs new) − Δ%NFR(continue_ce vs new)


def _flips(run: Path, task: str, role: str, doc: dict[str, Any], old: Any) -> np.ndarray:
    """(N,) negative flips of ``role`` vs old in old's id order, as metrics.json counts them."""
    comp = comparison(doc, task, "old", role)
    if comp is None:
        raise CompatlmError(f"{run}/metrics.json: no comparison old vs {role} on task {task!r}")
    name, nfr = primary_nfr(comp)
    path = RunLayout(run).predictions(task, role)
    other = load_predictions(path)
    ids = list(old.rows)
    if set(other.rows) != set(ids):
        raise CompatlmError(f"{path}: its example ids differ from old's on task {task!r}")
    if name == "negative_flip_rate":
        oc = np.array([old.rows[i].correct for i in ids], dtype=bool)  # (N,)
        rc = np.array([other.rows[i].correct for i in ids], dtype=bool)  # (N,)
        flips = classification_columns(oc, rc, None)["negative_flip"]
    else:
        so = np.array([old.rows[i].score for i in ids], dtype=np.float64)  # (N,)
        sr = np.array([other.rows[i].score for i in ids], dtype=np.float64)  # (N,)
        tol = comp["similarity"]["tolerance"]
        flips = similarity_columns(so, sr, tol)["similarity_negative_flip"]
    if int(flips.sum()) != nfr["numerator"]:
        raise CompatlmError(
            f"{path}: {int(flips.sum())} negative flips vs old, but metrics.json counts"
            f" {nfr['numerator']} ({name}); rerun the comparison"
        )
    return flips.astype(np.float64)


def task_sums(
    runs: dict[int, Path],
    docs: dict[int, dict[str, Any]],
    task: str,
    roles: list[str],
    *,
    bootstrap: int,
    rng_seed: int,
) -> np.ndarray:
    """(1 + B, S, R) flip counts: row 0 the observed sums, then one row per group resample."""
    from compatlm.eval.records import load_predictions

    seeds = list(runs)
    cols, ids0, groups = [], None, None
    for s in seeds:
        old = load_predictions(RunLayout(runs[s]).predictions(task, "old"))
        if ids0 is None:
            ids0 = list(old.rows)
            if old.has_groups:
                groups = np.array([old.rows[i].group for i in ids0], dtype=object)  # (N,)
        elif set(old.rows) != set(ids0):
            raise CompatlmError(
                f"task {task!r}: seed {s} was evaluated on other test examples than seed"
                f" {seeds[0]}; evidence needs one test set"
            )
        by_id = {i: k for k, i in enumerate(old.rows)}
        order = np.array([by_id[i] for i in ids0])  # seed s's rows in seed 0's id order
        for role in roles:
            cols.append(_flips(runs[s], task, role, docs[s], old)[order])
    units = np.stack(cols, axis=1)  # (N, S·R)
    codes, n_groups = group_codes(groups)
    if codes is None:
        codes, n_groups = np.arange(units.shape[0]), units.shape[0]
    per_group = group_sums(units, codes, n_groups)  # (G, S·R)
    draws = bootstrap_sums(per_group, bootstrap, rng_seed)  # (B, S·R)
    sums = np.concatenate([per_group.sum(axis=0)[None, :], draws])  # (1 + B, S·R)
    return sums.reshape(1 + bootstrap, len(seeds), len(roles))


def _delta(sums: np.ndarray, a: int, b: int) -> np.ndarray:
    """(1 + B,) seed-mean of 100·(NF_a − NF_b)/NF_b; NaN where some seed drew no flips of b."""
    num, den = sums[:, :, a] - sums[:, :, b], sums[:, :, b]  # (1 + B, S)
    pct = np.full(num.shape, np.nan)
    np.divide(100.0 * num, den, out=pct, where=den != 0)
    return pct.mean(axis=1)  # NaN propagates: a replicate is defined when every seed is


def _summary(stat: np.ndarray | None, tasks: list[str], confidence: float) -> dict[str, Any]:
    if stat is None:
        why = "undefined: no task has it defined in every seed"
        return {
            "value": None,
            "ci": None,
            "confidence": confidence,
            "resamples": 0,
            "undefined_resamples": 0,
            "tasks": [],
            "reason": why,
        }
    observed, draws = stat[0], stat[1:]
    undefined = int(np.count_nonzero(~np.isfinite(draws)))
    return {
        "value": None if not np.isfinite(observed) else float(observed),
        "ci": percentile_ci(draws, confidence),
        "confidence": confidence,
        "resamples": int(draws.size),
        "undefined_resamples": undefined,
        "tasks": tasks,
        "reason": None,
    }


def delta_percent_bootstrap(
    runs: dict[int, Path],
    docs: dict[int, dict[str, Any]],
    cells: dict[str, list[dict[str, Any]]],
    pairs: tuple[tuple[str, str], ...],
    *,
    bootstrap: int,
    confidence: float,
    rng_seed: int,
) -> dict[str, Any]:
    """``{a_vs_b: {value, ci, ...}, muscle_minus_continue_ce: {...}}`` (module docstring).
    ``runs``/``docs``: seed -> its test eval run directory / metrics.json; ``cells``: task ->
    the per-seed cells of :func:`compatlm.demo.evidence.seed_cell`, in the order of ``runs``."""
    wanted = sorted({r for pair in pairs for r in pair})
    keys = [f"{a}_vs_{b}" for a, b in pairs]
    sets = {key: usable_tasks(cells, (key,))[0] for key in keys}
    sets[DIFFERENCE] = usable_tasks(cells, ("muscle_vs_new", "continue_ce_vs_new"))[0]
    per_task: dict[str, dict[str, np.ndarray]] = {}
    for k, task in enumerate(cells):
        if not any(task in tasks for tasks in sets.values()):
            continue
        roles = [r for r in wanted if complete_tasks({task: cells[task]}, (r,))]
        sums = task_sums(runs, docs, task, roles, bootstrap=bootstrap, rng_seed=rng_seed + k)
        idx = {r: i for i, r in enumerate(roles)}
        per_task[task] = {
            f"{a}_vs_{b}": _delta(sums, idx[a], idx[b]) for a, b in pairs if a in idx and b in idx
        }
    out: dict[str, Any] = {}
    for key in keys:
        stats = [per_task[t][key] for t in sets[key]]
        out[key] = _summary(np.mean(stats, axis=0) if stats else None, sets[key], confidence)
    diff = [
        per_task[t]["muscle_vs_new"] - per_task[t]["continue_ce_vs_new"] for t in sets[DIFFERENCE]
    ]
    out[DIFFERENCE] = _summary(
        np.mean(diff, axis=0) if diff else None, sets[DIFFERENCE], confidence
    )
    return out
