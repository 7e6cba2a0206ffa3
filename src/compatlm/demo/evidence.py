"""The demo's evidence over seeds: ``evidence.json`` at the demo's root (data, not a page).

Whether MUSCLE (Echterhoff et al., arXiv 2407.09435) reduces negative flips on the demo family is
a claim about training seeds *and* test instances. This module gathers, from files alone (each
seed's test ``eval/metrics.json`` and predictions, ``selection/<task>.json``, and the training
runs' ``diagnostics.json``):

- per seed and task: accuracy of old and of every role, the task's NFR vs old (similarity flips
  for generative tasks, as in the demo summary) with the per-seed cluster-bootstrap CI,
  ``n_groups`` and ``clustered`` from metrics.json, the cluster-adjusted McNemar p of each role
  vs new, Δ%NFR = 100·(NFR_a − NFR_b)/NFR_b for every role vs new and for muscle vs
  continue_ce, what the validation selection chose, and the share of loss tokens that followed
  teacher_old (:mod:`compatlm.train.diagnostics`);
- per task and averaged over tasks: the same numbers across seeds as a level
  (:func:`~compatlm.eval.seeds.summarise_seeds`: mean, sd, t-interval over seeds) and per-seed
  paired differences (:func:`~compatlm.eval.seeds.seed_difference_test`);
- with two or more seeds, ``stability`` (:mod:`compatlm.demo.stability`): how often old adapters
  of different seeds flip against each other (retraining noise) beside the update's flips, and
  each role's flips split into instances every seed's old adapter knows and the rest;
- averaged over tasks and seeds: a cluster-bootstrap CI of Δ%NFR (muscle vs new, continue_ce vs
  new, and their difference) — test groups are resampled within each task, the same draw for
  every seed (the seeds share one test set), tasks independently (:mod:`compatlm.eval.stats`).

"Averaged over tasks" uses, for each number, the tasks where it is defined in every seed: the
roles it needs were evaluated (a task whose MUSCLE passed no accuracy floor in some seed has no
``muscle`` there) and, for Δ%NFR, the reference role has negative flips (else there is nothing to
cut). The tasks used, the tasks left out with the reason, and the missing cells are listed
beside it. Nothing is rendered here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from compatlm.demo.evidence_bootstrap import delta_percent_bootstrap
from compatlm.demo.evidence_cells import comparison as comparison
from compatlm.demo.evidence_cells import complete_tasks as complete_tasks
from compatlm.demo.evidence_cells import percent_change as percent_change
from compatlm.demo.evidence_cells import usable_tasks as usable_tasks
from compatlm.demo.selection import primary_nfr
from compatlm.demo.stability import build_stability
from compatlm.errors import CompatlmError
from compatlm.eval.seeds import seed_difference_test, summarise_defined
from compatlm.io import atomic_write_json

SCHEMA_VERSION = 1
EVIDENCE = "evidence.json"
# (a, b): Δ%NFR of role a relative to role b, the pairs every claim is made of.
KEY_PAIRS = (("muscle", "new"), ("continue_ce", "new"), ("muscle", "continue_ce"))


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompatlmError(f"{path}: missing (run the demo to the end first)") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CompatlmError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(doc, dict):
        raise CompatlmError(f"{path}: expected a JSON object, found {type(doc).__name__}")
    return doc


def _old_share(spec: str | None) -> dict[str, Any] | None:
    from compatlm.train.diagnostics import diagnostics_for_spec

    diag = diagnostics_for_spec(spec) if spec else None
    if diag is None:
        return None
    return {"old_share": diag["total"]["old_share"], "verdict": diag["verdict"]}


def seed_cell(doc: dict[str, Any], task: str, selection: dict[str, Any] | None) -> dict[str, Any]:
    """Everything one seed says about one task (see the module docstring)."""
    roles: dict[str, Any] = {}
    acc_old = None
    for comp in doc.get("comparisons", []):
        if comp["task"] != task or comp["reference"] != "old":
            continue
        role, m = comp["other"], comp["metrics"]
        name, nfr = primary_nfr(comp)
        acc_old = m["accuracy_old"]
        vs_new = comparison(doc, task, "new", role) or {"metrics": {}}
        roles[role] = {
            "accuracy": m["accuracy_new"],
            "nfr": nfr,
            "nfr_metric": name,
            "n": comp.get("n"),
            "n_groups": comp.get("n_groups"),
            "clustered": comp.get("clustered"),
            "vs_new": {
                k: vs_new["metrics"].get(k)
                for k in ("cluster_adjusted_mcnemar_p_value", "mcnemar_p_value")
            },
        }
    if "new" not in roles:
        raise CompatlmError(f"metrics.json has no comparison old vs new on task {task!r}")
    pairs = [(r, "new") for r in roles if r != "new"] + [("muscle", "continue_ce")]
    delta: dict[str, Any] = {}
    for a, b in pairs:
        if a in roles and b in roles:
            value, reason = percent_change(roles[a]["nfr"], roles[b]["nfr"])
            delta[f"{a}_vs_{b}"] = {"value": value, "reason": reason}
    winner = (selection or {}).get("winner")
    return {
        "accuracy_old": acc_old,
        "roles": roles,
        "delta_nfr_percent": delta,
        "selection": None
        if selection is None
        else {
            "status": selection["status"],
            "winner": None
            if winner is None
            else {"role": winner["role"], "knobs": winner["knobs"]},
            "reason": selection["reason"],
        },
        "diagnostics": {
            "muscle": _old_share(None if winner is None else winner["spec"]),
            "points": {
                p["name"]: _old_share(p["spec"])
                for p in (selection or {}).get("points", [])
                if p.get("kind") == "candidate"
            },
        },
    }


def _value(obj: dict[str, Any] | None) -> float | None:
    return None if not obj else obj.get("value")


def _level(values: list[float | None]) -> dict[str, Any]:
    return summarise_defined(values, reason="undefined")


def _paired(a: list[float | None], b: list[float | None]) -> dict[str, Any]:
    """seed_difference_test of b − a over the seeds where both are defined."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not pairs:
        return {"n_seeds": 0, "mean": None, "reason": "undefined: no seed has both"}
    return seed_difference_test([x for x, _ in pairs], [y for _, y in pairs])


def task_level(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """One task across seeds (cells in seed order)."""
    roles = sorted({r for c in cells for r in c["roles"]}, key=_role_order)

    def per_seed(role: str, key: str) -> list[float | None]:
        return [_value(c["roles"].get(role, {}).get(key)) for c in cells]

    deltas = sorted({k for c in cells for k in c["delta_nfr_percent"]})
    shares = [_value((c["diagnostics"]["muscle"] or {}).get("old_share")) for c in cells]
    return {
        "accuracy_old": _level([_value(c["accuracy_old"]) for c in cells]),
        "roles": {
            r: {"accuracy": _level(per_seed(r, "accuracy")), "nfr": _level(per_seed(r, "nfr"))}
            for r in roles
        },
        "delta_nfr_percent": {
            k: _level([c["delta_nfr_percent"].get(k, {}).get("value") for c in cells])
            for k in deltas
        },
        "nfr_tests": {
            f"{a}_vs_{b}": _paired(per_seed(b, "nfr"), per_seed(a, "nfr")) for a, b in KEY_PAIRS
        },
        "muscle_old_share": _level(shares),
    }


def _role_order(role: str) -> tuple[int, str]:
    return ({"new": 0, "muscle": 1, "continue_ce": 2}.get(role, 3), role)


def averaged(cells: dict[str, list[dict[str, Any]]], n_seeds: int) -> dict[str, Any]:
    """Task means per seed, then across seeds as a level (see the module docstring)."""
    roles = sorted({r for cs in cells.values() for c in cs for r in c["roles"]}, key=_role_order)
    out: dict[str, Any] = {"tasks": {}, "excluded_tasks": {}, "per_seed": []}
    per_seed: list[dict[str, Any]] = [
        {"accuracy": {}, "nfr": {}, "accuracy_change_points": {}, "delta_nfr_percent": {}}
        for _ in range(n_seeds)
    ]
    for role in roles:
        tasks = complete_tasks(cells, ("new", role))
        out["tasks"][role] = tasks
        for s in range(n_seeds):
            row = per_seed[s]
            acc = [cells[t][s]["roles"][role]["accuracy"]["value"] for t in tasks]
            new_acc = [cells[t][s]["roles"]["new"]["accuracy"]["value"] for t in tasks]
            nfr = [cells[t][s]["roles"][role]["nfr"]["value"] for t in tasks]
            row["accuracy"][role] = _mean(acc)
            row["nfr"][role] = _mean(nfr)
            gaps = [
                100.0 * (a - b) for a, b in zip(acc, new_acc, strict=True) if None not in (a, b)
            ]
            row["accuracy_change_points"][role] = _mean(gaps) if len(gaps) == len(tasks) else None
    for a, b in [(r, "new") for r in roles if r != "new"] + [("muscle", "continue_ce")]:
        key = f"{a}_vs_{b}"
        tasks, out["excluded_tasks"][key] = usable_tasks(cells, (key,))
        out["tasks"][key] = tasks
        for s in range(n_seeds):
            vals = [cells[t][s]["delta_nfr_percent"][key]["value"] for t in tasks]
            per_seed[s]["delta_nfr_percent"][key] = _mean(vals)
    for s, row in enumerate(per_seed):  # old's accuracy, over every task
        row["accuracy_old"] = _mean([_value(cs[s]["accuracy_old"]) for cs in cells.values()])
    out["per_seed"] = per_seed
    out["accuracy_old"] = _level([row["accuracy_old"] for row in per_seed])
    for field in ("accuracy", "nfr", "accuracy_change_points"):
        out[field] = {r: _level([row[field].get(r) for row in per_seed]) for r in roles}
    keys = sorted({k for row in per_seed for k in row["delta_nfr_percent"]})
    out["delta_nfr_percent"] = {
        k: _level([row["delta_nfr_percent"].get(k) for row in per_seed]) for k in keys
    }
    # Does MUSCLE's Δ%NFR vs new beat the control's, seed by seed? On the tasks that have both.
    common, out["excluded_tasks"]["muscle_minus_continue_ce"] = usable_tasks(
        cells, ("muscle_vs_new", "continue_ce_vs_new")
    )
    out["tasks"]["muscle_minus_continue_ce"] = common
    d = {
        key: [
            _mean([cells[t][s]["delta_nfr_percent"][key]["value"] for t in common])
            for s in range(n_seeds)
        ]
        for key in ("muscle_vs_new", "continue_ce_vs_new")
    }
    out["delta_nfr_percent_muscle_minus_continue_ce"] = _paired(
        d["continue_ce_vs_new"], d["muscle_vs_new"]
    )
    return out


def _mean(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def missing_cells(cells: dict[str, list[dict[str, Any]]], seeds: list[int]) -> list[dict]:
    out = []
    for task, cs in cells.items():
        for seed, c in zip(seeds, cs, strict=True):
            for role in ("muscle", "continue_ce"):
                if role not in c["roles"]:
                    sel = c["selection"] or {}
                    why = (
                        f"no point passed the floor: {sel.get('reason')}"
                        if role == "muscle" and sel.get("status") == "no_point_passed_the_floor"
                        else "not evaluated"
                    )
                    out.append({"seed": seed, "task": task, "role": role, "reason": why})
    return out


def pooled_old_share(cells: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Share of loss tokens that followed teacher_old, summed over every selected MUSCLE run."""
    num = den = 0
    for cs in cells.values():
        for c in cs:
            share = (c["diagnostics"]["muscle"] or {}).get("old_share")
            if share and share.get("denominator"):
                num, den = num + share["numerator"], den + share["denominator"]
    if not den:
        return {"value": None, "numerator": num, "denominator": den, "reason": "no diagnostics"}
    return {"value": num / den, "numerator": num, "denominator": den, "reason": None}


def build_evidence(
    root: str | Path,
    seeds: list[int],
    tasks: list[str],
    *,
    bootstrap: int = 2000,
    confidence: float = 0.95,
    rng_seed: int = 0,
) -> dict[str, Any]:
    """The evidence document of the demo in ``root`` (see the module docstring)."""
    root = Path(root)
    if not seeds or not tasks:
        raise CompatlmError("evidence: give at least one seed and one task")
    docs = {s: _load(root / f"seed{s}" / "eval" / "metrics.json") for s in seeds}
    cells: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        cells[task] = []
        for s in seeds:
            sel_path = root / f"seed{s}" / "selection" / f"{task}.json"
            selection = _load(sel_path) if sel_path.is_file() else None
            cells[task].append(seed_cell(docs[s], task, selection) | {"seed": s})
    runs = {s: root / f"seed{s}" / "eval" for s in seeds}
    boot = delta_percent_bootstrap(
        runs, docs, cells, KEY_PAIRS, bootstrap=bootstrap, confidence=confidence, rng_seed=rng_seed
    )
    # Each task's NFR metric, from the first seed's old-vs-new comparison (the same in all).
    metrics = {
        t: primary_nfr(c)[0] if (c := comparison(docs[seeds[0]], t, "old", "new")) else "none"
        for t in tasks
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "seeds": seeds,
        "tasks": tasks,
        "definitions": {
            "nfr": "negative flip rate vs old on the test split (similarity flips on generative"
            " tasks with scores)",
            "delta_nfr_percent": "100·(NFR_a − NFR_b)/NFR_b, key a_vs_b; negative = fewer flips",
            "seed_level": "mean, sd and 95% t-interval over seeds; tests are one-sample t-tests"
            " of per-seed differences",
            "cluster_bootstrap": "test groups resampled within each task (one draw shared by"
            " all seeds), tasks independently; percentile interval of the seed- and task-mean",
        },
        "per_seed": {str(s): {t: cells[t][i] for t in tasks} for i, s in enumerate(seeds)},
        "per_task": {t: task_level(cells[t]) for t in tasks},
        "averaged_over_tasks": averaged(cells, len(seeds)) | {"cluster_bootstrap": boot},
        "diagnostics": {"muscle_old_share_pooled": pooled_old_share(cells)},
        # retraining noise and the stable part of each role's flips; null with one seed
        "stability": build_stability(root, seeds, metrics),
        "missing": missing_cells(cells, seeds),
    }


def write_evidence(root: str | Path, seeds: list[int], tasks: list[str], **kw: Any) -> Path:
    """Write ``root/evidence.json`` atomically; returns its path."""
    return atomic_write_json(Path(root) / EVIDENCE, build_evidence(root, seeds, tasks, **kw))
