"""MUSCLE against its same-budget control ``continue_ce`` in ``bench/real_update.py``'s study.

Three views of one question, each over the seeds: seed by seed (each seed's Δ%NFR vs new, then
a paired test with the seed as the unit), pooled on test with the question as the cluster
(every seed answers the same questions, so a question's flips in different seeds are
correlated), and the validation counts the sweep selected from (what a user would have seen).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def versus_control(
    seeds: dict[str, Any], method: str = "muscle_every_seed", control: str = "continue_ce"
) -> dict[str, Any]:
    """``method`` against its same-budget ``control``, seed by seed: each one's Δ%NFR vs new
    (100 · (NFR − NFR_new) / NFR_new) per seed, and the per-seed differences method − control
    (mean, t-interval and paired t-test over the seeds both have; compatlm's seed level)."""
    from compatlm.eval.seeds import seed_difference_test

    def nfr(res: dict[str, Any], role: str) -> float | None:
        return ((res["methods"].get(role) or {}).get("negative_flip_rate") or {}).get("value")

    def change(res: dict[str, Any], role: str) -> float | None:
        value, base = nfr(res, role), nfr(res, "new")
        return None if value is None or not base else 100.0 * (value - base) / base

    per_seed = {s: (change(r, method), change(r, control)) for s, r in seeds.items()}
    both = {s: v for s, v in per_seed.items() if None not in v}
    out: dict[str, Any] = {
        "method": method,
        "control": control,
        "delta_nfr_percent_per_seed": {
            s: {method: m, control: c} for s, (m, c) in per_seed.items()
        },
        "seeds_compared": len(both),
    }
    if not both:
        return out | {"difference": None, "reason": "no seed has both methods with NFR_new > 0"}
    ctrl, meth = zip(*((c, m) for m, c in both.values()), strict=True)
    return out | {"difference": seed_difference_test(ctrl, meth)}  # method − control


def pooled_versus_control(
    work: Path, seeds: list[int], task: str, n_resamples: int, method: str = "muscle_every_seed"
) -> dict[str, Any]:
    """Test-split NFR of MUSCLE and of ``continue_ce`` vs new, pooled over seeds, with the
    question as the cluster: every seed answers the same questions, so a question's flips in
    different seeds are correlated and a bootstrap or test over instances would overstate.

    Per question q, summed over seeds: F_new, F_method, F_control (old right, that role wrong).
    Δ%NFR vs new = 100 · (ΣF_role − ΣF_new) / ΣF_new; method − control = 100 · (ΣF_method −
    ΣF_control) / ΣF_new. Percentile intervals from a bootstrap over questions (cell sums, O(B)
    memory: compatlm's own), and a sign-flip permutation test on d_q = F_method − F_control.
    ``muscle_every_seed`` is each seed's ``muscle.jsonl``, else its ``muscle_below_floor.jsonl``.
    """
    from compatlm.eval.records import load_predictions
    from compatlm.eval.stats import bootstrap_sums, cluster_permutation_p_value, percentile_ci

    ref: list[str] | None = None
    flips = {"new": 0, method: 0, "continue_ce": 0}  # role -> (N,) int flips summed over seeds
    for s in seeds:
        pred = work / f"seed{s}" / "test" / "predictions" / task
        muscle = pred / "muscle.jsonl"
        files = {"old": pred / "old.jsonl", "new": pred / "new.jsonl", "continue_ce": pred / "continue_ce.jsonl"}  # fmt: skip
        files[method] = muscle if muscle.is_file() else pred / "muscle_below_floor.jsonl"
        if not files[method].is_file():  # no MUSCLE point was scored on validation at all
            return {"reason": f"undefined: seed {s} has no MUSCLE test predictions"}
        correct = {}
        for role, path in files.items():
            ps = load_predictions(path)
            ids = np.asarray(ps.ids(), dtype=object)  # (N,)
            order = np.argsort(ids)  # rows in sorted-id order
            in_order = ids[order].tolist()
            ref = ref or in_order
            if in_order != ref:
                raise SystemExit(f"{path}: its questions differ from seed {seeds[0]}'s")
            correct[role] = np.asarray(ps.columns.correct, dtype=bool)[order]
        for role in flips:
            flips[role] = flips[role] + (correct["old"] & ~correct[role]).astype(np.int64)
    units = np.stack([flips["new"], flips[method], flips["continue_ce"]], axis=1)  # (N, 3)
    new_t, meth_t, ctrl_t = (int(x) for x in units.sum(axis=0))
    if new_t == 0:
        return {"reason": "undefined: new has no negative flips in any seed"}
    boot = bootstrap_sums(units, n_resamples, seed=0)  # (B, 3) per-resample sums
    den = np.where(boot[:, 0] > 0, boot[:, 0], np.nan)  # (B,)

    def pct(k: int, total: int) -> dict[str, Any]:
        return {
            "value": 100.0 * (total - new_t) / new_t,
            "ci": percentile_ci(100.0 * (boot[:, k] - boot[:, 0]) / den, 0.95),
        }

    p, _, _, why = cluster_permutation_p_value(units[:, 1] - units[:, 2], n_resamples, seed=0)
    diff = 100.0 * (boot[:, 1] - boot[:, 2]) / den
    return {
        "seeds": len(seeds),
        "questions": len(units),
        "flips": {"new": new_t, method: meth_t, "continue_ce": ctrl_t},
        "delta_nfr_percent": {method: pct(1, meth_t), "continue_ce": pct(2, ctrl_t)},
        "method_minus_control_points": {
            "value": 100.0 * (meth_t - ctrl_t) / new_t,
            "ci": percentile_ci(diff, 0.95),
            "permutation_p_value": p,
            "reason": why,
        },
        "bootstrap": n_resamples,
    }


def validation_flips(
    work: Path, seeds: dict[str, Any], method: str = "muscle_every_seed"
) -> dict[str, Any]:
    """Validation negative flips (vs old) of new, ``method`` and ``continue_ce``, per seed and
    summed: the numbers the sweep chose from. ``method``'s point is the seed's selected MUSCLE
    point, else its below-floor one (as on test). Counts from each ``selection.json`` only: a
    sweep with no point past the floor deletes its per-question files, so no clustered interval.
    """
    roles = ("new", method, "continue_ce")
    per_seed: dict[str, Any] = {}
    for s, res in seeds.items():
        sel = json.loads((work / f"seed{s}" / "sweep" / "selection.json").read_text())
        chosen = res["muscle_selected"]
        name = chosen["name"] or (chosen.get("below_floor") or {}).get("name")
        points = {p["name"]: p for p in sel["points"]}
        control = next((p for p in sel["points"] if p["kind"] == "control"), None)
        if name not in points or control is None:
            return {"reason": f"undefined: seed {s}'s sweep has no MUSCLE point or no control"}
        rows = dict(zip(roles, (sel["new"], points[name], control), strict=True))
        nfr = {role: p["negative_flip_rate"] for role, p in rows.items()}
        if any(v["numerator"] is None for v in nfr.values()):
            return {"reason": f"undefined: seed {s} has a validation NFR without counts"}
        if len({v["denominator"] for v in nfr.values()}) != 1:  # summed counts need one base
            dens = {r: v["denominator"] for r, v in nfr.items()}
            return {"reason": f"undefined: seed {s}'s validation NFRs count different questions {dens}"}  # fmt: skip
        per_seed[s] = {r: v["numerator"] for r, v in nfr.items()}
        per_seed[s] |= {"questions": nfr["new"]["denominator"], "muscle_point": name}
    totals = {r: sum(v[r] for v in per_seed.values()) for r in roles}
    new_t = totals["new"]

    def pct(k: int) -> float | None:
        return 100.0 * (k - new_t) / new_t if new_t else None

    return {
        "split": "validation",
        "per_seed": per_seed,
        "flips": totals,
        "questions": sum(v["questions"] for v in per_seed.values()),
        "delta_nfr_percent": {
            method: pct(totals[method]),
            "continue_ce": pct(totals["continue_ce"]),
        },
        "method_minus_control_points": (
            100.0 * (totals[method] - totals["continue_ce"]) / new_t if new_t else None
        ),
        "reason": None if new_t else "undefined: new has no validation flips in any seed",
    }


def versus_control_all(
    work: Path, seeds: dict[str, Any], task: str, n_resamples: int
) -> dict[str, Any]:
    """MUSCLE (every seed) against ``continue_ce``: seed-level and pooled on test, and the
    validation counts the selection read."""
    return {
        "muscle_vs_control": versus_control(seeds),
        "muscle_vs_control_pooled": pooled_versus_control(
            work, [int(s) for s in seeds], task, n_resamples
        ),
        "muscle_vs_control_validation": validation_flips(work, seeds),
    }
