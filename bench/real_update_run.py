"""Bookkeeping of ``bench/real_update.py``: the work directory, its stages, reading results.

Owns :class:`Study` (the work directory: YAML configs, compatlm runs called in-process through
``compatlm.cli.main``, and ``state.json``, which records each finished stage's wall seconds and
value so a rerun skips it), building a registry method from a config mapping, the per-candidate
costs of a sweep read from its files' times, and the summaries of a ``metrics.json``
(means over seeds). MUSCLE against its control: ``real_update_versus``.
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
