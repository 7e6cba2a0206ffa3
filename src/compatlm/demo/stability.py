"""Which of an update's negative flips a compatibility method could reach, over demo seeds.

A demo seed trains the old and the new task adapter with that seed on a fixed pair of bases, so
two *old* adapters of different seeds are one model version retrained: the negative flips
between them (old_t wrong where old_s is right) are what retraining alone does, with no base
update involved. From the test predictions every seed wrote (``seed<S>/eval/predictions``) this
module puts, per task and seed s:

- ``update``: negative flips of new_s vs old_s (the demo's NFR on correctness);
- ``retrain_old`` / ``retrain_new``: negative flips of old_t vs old_s (new_t vs new_s), summed
  over t ≠ s, out of N·(S−1) comparisons;
- per role (new and every candidate evaluated in all seeds): its negative flips vs old_s split
  into ``stable`` instances, which the old adapter of *every* seed answers correctly (a
  regression of the version: every retrained old model knows it), and ``unstable`` ones (some
  old seed already misses them, so retraining alone flips them both ways).

Every count is stored with its denominator (all N instances); seeds are the level (mean, sd,
t-interval of per-seed values over seeds). The retrain values of different seeds share
adapters, so their interval is somewhat optimistic; the document says so. Tasks judged by
similarity flips (generative tasks with scores) are left out with the reason: ``correct`` is
not the flip they are judged by. Needs at least two seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compatlm.demo.evidence_cells import percent_change
from compatlm.errors import CompatlmError
from compatlm.eval.seeds import summarise_defined
from compatlm.methods.selection import NFR

BASE_ROLES = ("old", "new")


def _rate(num: int, den: int) -> dict[str, Any]:
    return {"value": num / den if den else None, "numerator": int(num), "denominator": int(den)}


def _correct(path: Path) -> tuple[list[str], np.ndarray]:
    """(ids, (N,) bool correct) of one prediction file, validated by compatlm's reader."""
    from compatlm.eval.records import load_predictions

    ps = load_predictions(path)
    return ps.ids(), np.asarray(ps.columns.correct, dtype=bool)


def load_task(root: Path, seeds: list[int], task: str, run: str = "eval") -> dict[str, np.ndarray]:
    """``{role: (S, N) bool}`` of the roles every seed evaluated in ``seed<S>/<run>`` (``eval``:
    test, ``validation``), rows aligned on old's ids."""
    files: dict[str, dict[int, Path]] = {}
    for s in seeds:
        for f in sorted((root / f"seed{s}" / run / "predictions" / task).glob("*.jsonl")):
            files.setdefault(f.stem, {})[s] = f
    for role in BASE_ROLES:
        if len(files.get(role, {})) != len(seeds):
            raise CompatlmError(f"{root}: {task}: no {role}.jsonl predictions in every seed")
    first = files["old"][seeds[0]]
    reference = _correct(first)  # read once: its ids are the order every row is aligned to
    ids = reference[0]
    out: dict[str, np.ndarray] = {}
    for role, by_seed in files.items():
        if len(by_seed) != len(seeds):
            continue  # e.g. MUSCLE where no setting passed the accuracy floor in some seed
        rows = []
        for s in seeds:
            got, correct = reference if by_seed[s] == first else _correct(by_seed[s])
            index = dict(zip(got, range(len(got)), strict=True))
            missing = [i for i in ids if i not in index]
            if missing or len(got) != len(ids):
                raise CompatlmError(
                    f"{by_seed[s]}: example ids differ from {first}"
                    f" (e.g. {missing[0] if missing else 'an extra row'})"
                )
            rows.append(correct[[index[i] for i in ids]])
        out[role] = np.stack(rows)  # (S, N)
    return out


def task_stability(correct: dict[str, np.ndarray], seeds: list[int]) -> dict[str, Any]:
    """Per-seed counts and their seed-level summary for one task (see the module docstring)."""
    old, new = correct["old"], correct["new"]  # (S, N) each
    n_seeds, n = old.shape
    stable = old.all(axis=0)  # (N,) every seed's old adapter is right
    others = n * (n_seeds - 1)
    per_seed: dict[str, Any] = {}
    for i, s in enumerate(seeds):
        rest = [j for j in range(n_seeds) if j != i]
        cell: dict[str, Any] = {
            "update": _rate(np.sum(old[i] & ~new[i]), n),
            "retrain_old": _rate(sum(np.sum(old[i] & ~old[j]) for j in rest), others),
            "retrain_new": _rate(sum(np.sum(new[i] & ~new[j]) for j in rest), others),
            "roles": {},
        }
        for role, pred in correct.items():
            if role == "old":
                continue
            flips = old[i] & ~pred[i]  # (N,)
            cell["roles"][role] = {
                "stable": _rate(np.sum(flips & stable), n),
                "unstable": _rate(np.sum(flips & ~stable), n),
            }
        per_seed[str(s)] = cell
    return {
        "n": n,
        "old_stable": _rate(stable.sum(), n),
        "per_seed": per_seed,
        "seed_level": seed_level(list(per_seed.values()), [r for r in correct if r != "old"]),
    }


def seed_level(cells: list[dict[str, Any]], roles: list[str]) -> dict[str, Any]:
    """Percent of all instances (and ratios) per seed, summarised over seeds."""

    def pct(r: dict[str, Any]) -> float | None:
        return None if r["value"] is None else 100.0 * r["value"]

    def ratio(a: int | float | None, b: int | float | None) -> float | None:
        return a / b if a is not None and b else None

    keys = ("update", "retrain_old", "retrain_new")
    out: dict[str, Any] = {k: summarise_defined([pct(c[k]) for c in cells]) for k in keys}
    out["retrain_old_over_update"] = summarise_defined(
        [ratio(c["retrain_old"]["value"], c["update"]["value"]) for c in cells]
    )
    new = [c["roles"]["new"] for c in cells]
    out["stable_share_of_update_flips"] = summarise_defined(
        [
            ratio(r["stable"]["numerator"], r["stable"]["numerator"] + r["unstable"]["numerator"])
            for r in new
        ]
    )
    out["roles"] = {
        role: {
            part: {
                "nfr_percent": summarise_defined([pct(c["roles"][role][part]) for c in cells]),
                "delta_vs_new_percent": summarise_defined(
                    [
                        percent_change(c["roles"][role][part], c["roles"]["new"][part])[0]
                        for c in cells
                    ]
                ),
            }
            for part in ("stable", "unstable")
        }
        for role in roles
        if role != "new"
    }
    return out


def build_stability(
    root: str | Path, seeds: list[int], tasks: dict[str, str]
) -> dict[str, Any] | None:
    """The stability section of ``evidence.json``: ``tasks`` maps each task to the NFR metric
    it is judged by; None with fewer than two seeds (nothing to compare a seed with)."""
    if len(seeds) < 2:
        return None
    root = Path(root)
    out: dict[str, Any] = {
        "definitions": {
            "stable": "an instance the old adapter of every seed answers correctly",
            "retrain_old": "negative flips of old_t vs old_s over t != s: retraining alone",
            "interval": "t-interval over seeds; retrain values share adapters between seeds, so"
            " their interval is somewhat optimistic",
        },
        "tasks": {},
        "left_out": {},
    }
    for task, metric in tasks.items():
        if metric != NFR:
            out["left_out"][task] = f"judged by {metric}, not by correctness flips"
            continue
        out["tasks"][task] = task_stability(load_task(root, seeds, task), seeds)
    return out
