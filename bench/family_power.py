"""Statistical power of a demo family: groups, saturation, accuracy gap and error overlap.

Builds (or loads) a demo family, trains the old and new task adapters of one seed with the
demo's settings, optionally the MUSCLE compatibility adapter, and evaluates them on the
**validation** split (the family is tuned on it; the test split stays untouched) and on the
first rows of the training split. Per task it records: rows and independent groups of the
validation and test splits, train accuracy of each adapter, acc_old, acc_new, NFR and PFR
(Wilson 95% intervals, exact McNemar p of old vs new), how much the two models' errors overlap,
the same per slice (skill), and for MUSCLE its accuracy, NFR and the share of training tokens
its mask sent to the old teacher. Result: ``bench/results/family_power.json`` with machine facts.

    .venv/bin/python bench/family_power.py                         # default family
    .venv/bin/python bench/family_power.py --families default legacy --muscle
    .venv/bin/python bench/family_power.py --quick --no-write      # smoke check (< 2 min)
    .venv/bin/python bench/family_power.py --tasks demo_piqa --cache /tmp/fp-cache
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, machine_info, setup_logging, wait_for_quiet, write_result

log = logging.getLogger("bench")


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _rate(k: int, n: int) -> dict[str, Any]:
    """A rate with its numerator, denominator and Wilson 95% interval (null when n = 0)."""
    from scipy.stats import binomtest

    if n == 0:
        return {"value": None, "numerator": k, "denominator": n, "ci": None, "reason": "n = 0"}
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return {"value": k / n, "numerator": k, "denominator": n, "ci": [ci.low, ci.high]}


def _mcnemar(b: int, c: int) -> float | None:
    from scipy.stats import binomtest

    return None if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def _pair(old: dict[str, dict], new: dict[str, dict], ids: list[str]) -> dict[str, Any]:
    """Accuracies, flips and error overlap of two prediction sets over ``ids``."""
    n = len(ids)
    o = [bool(old[i]["correct"]) for i in ids]
    w = [bool(new[i]["correct"]) for i in ids]
    neg = sum(a and not b for a, b in zip(o, w, strict=True))
    pos = sum(b and not a for a, b in zip(o, w, strict=True))
    both_wrong = sum(not a and not b for a, b in zip(o, w, strict=True))
    wrong_any = both_wrong + neg + pos
    out = {
        "n": n,
        "acc_old": _rate(sum(o), n),
        "acc_new": _rate(sum(w), n),
        "acc_gap_points": None if n == 0 else round(100 * (sum(w) - sum(o)) / n, 2),
        "nfr": _rate(neg, n),
        "pfr": _rate(pos, n),
        "mcnemar_p_old_vs_new": _mcnemar(neg, pos),
        "errors": {
            "both_wrong": both_wrong,
            "only_old_wrong": pos,
            "only_new_wrong": neg,
            # 1 = the two models fail on exactly the same instances, 0 = on disjoint ones
            "jaccard": None if wrong_any == 0 else round(both_wrong / wrong_any, 4),
        },
    }
    scores = [(old[i].get("score"), new[i].get("score")) for i in ids]
    if old[ids[0]].get("kind") == "generation" and all(a is not None for a, _ in scores):
        out["mean_score_old"] = sum(a for a, _ in scores) / n
        out["mean_score_new"] = sum(b for _, b in scores) / n
    return out


def _task_result(
    task: str, fam: Any, val_run: Path, train_run: Path, roles: list[str]
) -> dict[str, Any]:
    splits = {s: _rows(fam.task_dir(task) / f"{s}.jsonl") for s in ("validation", "test")}
    sizes = {
        s: {"n": len(r), "n_groups": len({x.get("group", x["id"]) for x in r})}
        for s, r in splits.items()
    }
    preds = {
        role: {p["example_id"]: p for p in _rows(val_run / "predictions" / task / f"{role}.jsonl")}
        for role in roles
    }
    ids = list(preds["old"])
    res: dict[str, Any] = {"splits": sizes, **_pair(preds["old"], preds["new"], ids)}
    train = {
        role: _rows(train_run / "predictions" / task / f"{role}.jsonl") for role in ("old", "new")
    }
    res["train_accuracy"] = {
        role: _rate(sum(bool(p["correct"]) for p in rows), len(rows))
        for role, rows in train.items()
    }
    if all(p.get("kind") == "generation" for p in train["old"]):
        res["train_mean_score"] = {
            role: sum(p.get("score") or 0.0 for p in rows) / len(rows)
            for role, rows in train.items()
        }
    by_slice: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        by_slice[preds["old"][i].get("slice") or "-"].append(i)
    res["slices"] = {}
    for name, sids in sorted(by_slice.items()):
        s = _pair(preds["old"], preds["new"], sids)
        res["slices"][name] = {
            "n": s["n"],
            "acc_old": s["acc_old"]["value"],
            "acc_new": s["acc_new"]["value"],
            "nfr": s["nfr"]["value"],
            "pfr": s["pfr"]["value"],
        }
    if "muscle" in roles:
        m = _pair(preds["new"], preds["muscle"], ids)
        vs_old = _pair(preds["old"], preds["muscle"], ids)
        res["muscle"] = {
            "acc": vs_old["acc_new"],
            "nfr_vs_old": vs_old["nfr"],
            "nfr_vs_old_minus_new_points": round(
                100 * (vs_old["nfr"]["value"] - res["nfr"]["value"]), 2
            ),
            "mcnemar_p_vs_new_on_old_correct": _mcnemar(*_flip_counts_on_old_correct(preds, ids)),
            "changed_vs_new": m["nfr"]["numerator"] + m["pfr"]["numerator"],
        }
    return res


def _flip_counts_on_old_correct(preds: dict[str, dict], ids: list[str]) -> tuple[int, int]:
    # Among instances the old model gets right: new wrong & muscle right vs the reverse.
    old, new, mus = preds["old"], preds["new"], preds["muscle"]
    keep = [i for i in ids if old[i]["correct"]]
    fixed = sum(not new[i]["correct"] and mus[i]["correct"] for i in keep)
    broke = sum(new[i]["correct"] and not mus[i]["correct"] for i in keep)
    return fixed, broke


def run_family(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from compatlm.config import EvalConfig
    from compatlm.demo.family import FamilyRecipe, build_or_load_family
    from compatlm.demo.pipeline import (
        DemoConfig,
        _task_cfg,
        quick_defaults,
        train_muscle,
        train_task_adapter,
    )
    from compatlm.demo.tasks import TASKS
    from compatlm.eval.pipeline import run_eval

    recipe = FamilyRecipe.named(name, quick=args.quick)
    t0 = time.perf_counter()
    fam = build_or_load_family(recipe, progress=False)
    build_s = time.perf_counter() - t0
    data = quick_defaults() if args.quick else {}
    cfg = DemoConfig.model_validate({**data, "runtime": {"progress": False}})
    tasks = args.tasks or list(TASKS)
    old_base, new_base = str(fam.old_dir), str(fam.new_dir)
    seconds: dict[str, float] = {}
    val_cfgs, train_cfgs = [], []
    roles = ["old", "new", *(["muscle"] if args.muscle else [])]
    diagnostics: dict[str, Any] = {}
    for task in tasks:
        d = work / name / "adapters" / task
        specs = {}
        for role, base in (("old", old_base), ("new", new_base)):
            t = time.perf_counter()
            ad = train_task_adapter(cfg, fam, base, task, args.seed, d / role)
            seconds[f"{task}/{role}_adapter"] = round(time.perf_counter() - t, 1)
            specs[role] = f"{base}+{ad}"
        models = dict(specs)
        if args.muscle:
            t = time.perf_counter()
            ad = train_muscle(cfg, fam, specs["old"], specs["new"], task, args.seed, d / "muscle")
            seconds[f"{task}/muscle"] = round(time.perf_counter() - t, 1)
            models["muscle"] = f"{new_base}+{ad}"
            diag = d / "muscle" / "diagnostics.json"
            if diag.is_file():
                diagnostics[task] = json.loads(diag.read_text(encoding="utf-8")).get("total")
        val = _task_cfg(fam, task, "validation").with_models(models)
        train = _task_cfg(fam, task, "train", args.train_rows).with_models(specs)
        val_cfgs.append(val)
        train_cfgs.append(train)
    runtime = cfg.runtime.model_copy(update={"seed": args.seed})
    t = time.perf_counter()
    runs = {}
    for split, cfgs in (("validation", val_cfgs), ("train", train_cfgs)):
        out = work / name / f"eval_{split}"
        try:
            run_eval(EvalConfig(old=old_base, new=new_base, tasks=cfgs, runtime=runtime), out,
                     overwrite=True)  # fmt: skip
        except Exception as err:  # only the predictions are read here, not metrics or reports
            missing = [
                c.name for c in cfgs if not (out / "predictions" / c.name / "new.jsonl").is_file()
            ]
            if missing:
                raise
            log.warning("eval %s: %s after every prediction was written; using them", split, err)
        runs[split] = out
    val_run, train_run = runs["validation"], runs["train"]
    seconds["eval"] = round(time.perf_counter() - t, 1)
    results = {task: _task_result(task, fam, val_run, train_run, roles) for task in tasks}
    for task, diag in diagnostics.items():
        results[task].setdefault("muscle", {})["diagnostics"] = diag
    return {
        "recipe_key": recipe.key(),
        "family_build_seconds": round(build_s, 1),
        "family_build_info": {k: fam.info.get(k) for k in ("seconds", "pretraining", "workers")},
        "seconds": seconds,
        "tasks": results,
    }


def _table(doc: dict[str, Any]) -> str:
    """A compact text view of the result (printed; the JSON is the record)."""

    def pct(r: dict | float | None) -> str:
        v = r.get("value") if isinstance(r, dict) else r
        return "  -  " if v is None else f"{100 * v:5.1f}"

    lines = []
    for fam, res in doc["families"].items():
        lines.append(f"== {fam} (build {res['family_build_seconds']} s)")
        for task, r in res["tasks"].items():
            sp = r["splits"]
            tr = r["train_accuracy"]
            line = (
                f"{task:15s} groups val/test {sp['validation']['n_groups']}/{sp['test']['n_groups']}"
                f" | train {pct(tr['old'])} {pct(tr['new'])} | old {pct(r['acc_old'])}"
                f" new {pct(r['acc_new'])} | NFR {pct(r['nfr'])} PFR {pct(r['pfr'])}"
                f" | err jaccard {r['errors']['jaccard']}"
            )
            if "mean_score_old" in r:
                line += f" | score {r['mean_score_old']:.3f} {r['mean_score_new']:.3f}"
            if "muscle" in r and "acc" in r["muscle"]:
                m = r["muscle"]
                line += f" | muscle {pct(m['acc'])} NFR {pct(m['nfr_vs_old'])}"
            lines.append(line)
            for name, s in r["slices"].items():
                lines.append(
                    f"    {name:10s} n {s['n']:4d}  old {pct(s['acc_old'])}  new {pct(s['acc_new'])}"
                    f"  NFR {pct(s['nfr'])}  PFR {pct(s['pfr'])}"
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["default"], help="default, legacy, ...")
    ap.add_argument("--tasks", nargs="+", help="subset of the demo tasks (default: all four)")
    ap.add_argument("--quick", action="store_true", help="miniature family: a smoke check")
    ap.add_argument("--muscle", action="store_true", help="also train and evaluate MUSCLE")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-rows", type=int, default=300, help="train rows scored per adapter")
    ap.add_argument("--cache", help="family cache root (default: a fresh temp dir = cold build)")
    ap.add_argument("--work", help="adapters and eval runs (default: a temp dir)")
    ap.add_argument("--name", default="family_power", help="result file name in bench/results")
    ap.add_argument("--no-write", action="store_true", help="print the result, write nothing")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = ap.parse_args()
    setup_logging()
    os.environ["COMPATLM_CACHE"] = args.cache or tempfile.mkdtemp(prefix="compatlm_fp_cache_")
    work = Path(args.work or tempfile.mkdtemp(prefix="compatlm_fp_"))
    load = wait_for_quiet(skip=args.quick or args.no_wait)
    machine = machine_info(threads=int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    t0 = time.perf_counter()
    doc: dict[str, Any] = {
        "command": " ".join(["python", "bench/family_power.py", *sys.argv[1:]]),
        "split_evaluated": "validation (test untouched); train accuracy on the first"
        f" {args.train_rows} train rows",
        "seed": args.seed,
        "quick": args.quick,
        "load": load,
        "families": {name: run_family(name, args, work) for name in args.families},
    }
    doc["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(_table(doc))
    if args.no_write:
        return
    path = write_result(RESULTS_DIR / f"{args.name}.json", doc, machine)
    print(f"wrote {path} ({doc['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
