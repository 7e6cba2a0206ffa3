"""Bookkeeping of ``bench/real_update.py``: the work directory, its stages, reading results.

Owns :class:`Study` (the work directory: YAML configs, compatlm runs called in-process through
``compatlm.cli.main``, and ``state.json``, which records each finished stage's wall seconds and
value so a rerun skips it), building a registry method from a config mapping, the per-candidate
costs of a sweep read from its files' times, the summaries of a ``metrics.json``, and the
seed-level comparison of MUSCLE with its same-budget control.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml


class Study:
    """The work directory: configs, runs, and ``state.json`` (stage -> seconds, specs)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.work = Path(args.work).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.state_path = self.work / "state.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        )
        self.state.setdefault("stages", {})
        # Resuming with other sizes would mix two studies in one result: refuse, say why. The
        # seed count may change: seed k's stages depend on k alone, so more seeds extend it.
        settings = {k: v for k, v in vars(args).items() if k not in ("out", "work", "threads")}
        recorded = self.state.setdefault("settings", settings)
        recorded["seeds"] = settings["seeds"]
        if recorded != settings:
            changed = sorted(k for k in settings if recorded.get(k) != settings[k])
            raise SystemExit(
                f"{self.state_path}: made with other settings ({', '.join(changed)});"
                " rerun with the same flags, or give another --work"
            )
        self.runtime = {"device": "cpu", "dtype": "float32", "batch_size": args.eval_batch}

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.state_path)

    def stage(self, name: str, fn: Any) -> Any:
        """Run ``fn`` once: a stage recorded as done is skipped (its time and value kept)."""
        done = self.state["stages"].get(name)
        if done is not None:
            return done.get("value")
        start = time.monotonic()
        print(f"[real_update] {name} ...", file=sys.stderr, flush=True)
        value = fn()
        seconds = round(time.monotonic() - start, 1)
        self.state["stages"][name] = {"seconds": seconds, "value": value}
        self.save()
        print(f"[real_update] {name}: {seconds} s", file=sys.stderr, flush=True)
        return value

    def yaml(self, name: str, doc: dict[str, Any]) -> Path:
        path = self.work / "configs" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def cli(self, argv: list[str], out: Path, *, resumable: bool = True) -> tuple[int, str]:
        """``compatlm ARGV --out OUT`` in-process (``--resume`` when a run was cut short)."""
        from compatlm.cli import main

        extra = ["--resume"] if resumable and out.exists() else []
        if out.exists() and not resumable:
            extra = ["--overwrite"]
        err, log = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(log):
            code = main(["-q", *argv, "--out", str(out), *extra])
        # What compatlm printed (paths, tables, warnings) stays beside the run, not on screen.
        with (self.work / "compatlm.log").open("a", encoding="utf-8") as fh:
            fh.write(f"$ compatlm {' '.join(argv)} --out {out}\n{log.getvalue()}{err.getvalue()}")
        return code, err.getvalue()

    def run(self, argv: list[str], out: Path, ok: tuple[int, ...] = (0,), **kw: Any) -> int:
        code, err = self.cli(argv, out, **kw)
        if code not in ok:
            raise SystemExit(f"compatlm {' '.join(argv)} exited {code}: {err.strip()[-2000:]}")
        return code


def file_times(out: Path, start: float) -> dict[str, float]:
    """Seconds per candidate (built one after another) and for the validation evaluation,
    from the time each one's newest file was written."""
    cands = out / "candidates"
    ends = []
    for d in (p for p in cands.iterdir() if p.is_dir()) if cands.is_dir() else []:
        ends.append((max(f.stat().st_mtime for f in d.rglob("*") if f.is_file()), d.name))
    times, prev = {}, start
    for end, name in sorted(ends):
        times[name] = round(end - prev, 1)
        prev = end
    val = out / "validation" / "metrics.json"
    if val.is_file():
        times["validation_eval"] = round(val.stat().st_mtime - prev, 1)
    return times


def build(method: str, cfg: dict[str, Any], out: Path) -> str:
    """Build a registry method's candidate from a config mapping; returns its ModelSpec."""
    from compatlm.methods.registry import get_candidate_method

    m = get_candidate_method(method)
    return m.build(m.config_cls.model_validate(cfg), out)


def summarize(path: Path) -> dict[str, Any]:
    """Per comparison vs old: accuracy, NFR, PFR (value, counts, CI) and the cluster tests."""
    doc = json.loads(path.read_text())
    keep = ("accuracy_old", "accuracy_new", "negative_flip_rate", "positive_flip_rate")
    keep += ("mcnemar_p_value", "cluster_adjusted_mcnemar_p_value", "cluster_permutation_p_value")
    out = {}
    for c in doc["comparisons"]:
        if c["reference"] != "old":
            continue
        m = {k: c["metrics"].get(k) for k in keep}
        out[c["other"]] = {"n": c["n"], "n_groups": c["n_groups"], "warnings": c["warnings"], **m}
    return out


def means(seeds: dict[str, Any]) -> dict[str, Any]:
    """Per method, the mean over seeds of accuracy, NFR and PFR vs old, the build seconds, how
    many seeds have it, and Δ%NFR vs new over *those* seeds (a MUSCLE with no setting past the
    floor in a seed is absent there; comparing its mean with new's over all seeds would mix
    seeds): 100 · (NFR − NFR_new) / NFR_new of the means; null when NFR_new is 0."""
    rows: dict[str, dict[str, list[float]]] = {}
    names = {"accuracy_new": "accuracy", "negative_flip_rate": "nfr", "positive_flip_rate": "pfr"}
    for res in seeds.values():
        old = rows.setdefault("old", {})
        new_nfr = (res["methods"].get("new") or {}).get("negative_flip_rate") or {}
        for role, m in res["methods"].items():
            r = rows.setdefault(role, {})
            for key, short in names.items():
                if m.get(key) and m[key]["value"] is not None:
                    r.setdefault(short, []).append(m[key]["value"])
            if m.get("negative_flip_rate") and new_nfr.get("value") is not None:
                r.setdefault("new_nfr_same_seeds", []).append(new_nfr["value"])
            if role == "new" and m["accuracy_old"]["value"] is not None:
                old.setdefault("accuracy", []).append(m["accuracy_old"]["value"])
        for role, secs in res["build_seconds"].items():
            if secs is not None:
                rows.setdefault(role, {}).setdefault("build_seconds", []).append(secs)
    out: dict[str, dict[str, Any]] = {}
    for role, r in rows.items():
        out[role] = {k: round(sum(v) / len(v), 4) for k, v in r.items()}
        out[role]["seeds"] = len(r.get("accuracy", []))
    for role, r in out.items():
        base = r.pop("new_nfr_same_seeds", None)
        if role not in ("old", "new") and "nfr" in r:
            r["nfr_change_vs_new_percent"] = (
                round(100 * (r["nfr"] - base) / base, 1) if base else None
            )
    return out


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
            ids, right = ps.ids(), np.asarray(ps.columns.correct, dtype=bool)
            ref = ref or sorted(ids)
            if sorted(ids) != ref:
                raise SystemExit(f"{path}: its questions differ from seed {seeds[0]}'s")
            order = np.argsort(np.asarray(ids, dtype=object))  # rows in sorted-id order
            correct[role] = right[order]
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


def versus_control_all(
    work: Path, seeds: dict[str, Any], task: str, n_resamples: int
) -> dict[str, Any]:
    """MUSCLE (every seed) against ``continue_ce``: seed-level and pooled over questions."""
    return {
        "muscle_vs_control": versus_control(seeds),
        "muscle_vs_control_pooled": pooled_versus_control(
            work, [int(s) for s in seeds], task, n_resamples
        ),
    }
