"""BCR re-ranking on the demo's generation tasks: regression, accuracy and inference cost.

Reads a finished ``compatlm demo`` directory (any family, any number of seeds). For every seed
and generation task (``demo_gsm8k``, ``demo_samsum``), the new task model samples k outputs per
test prompt, the old task model picks the one it scores highest (Cai et al. 2022;
:mod:`compatlm.methods.rerank`), and the picks are compared against the old model's predictions
from that seed's eval run — the same comparison the demo makes for every other candidate.
Writes ``bench/results/rerank_demo.json``: per task, mean over seeds of the score (accuracy, or
mean ROUGE-1 for samsum), NFR, PFR for vanilla new and rerank, Δ%NFR, and the inference cost ratio
(forward tokens and wall time vs greedy decoding).

    .venv/bin/python -m compatlm demo --family continued --seeds 3 --out runs/demo-continued
    .venv/bin/python bench/rerank_demo.py runs/demo-continued
    .venv/bin/python bench/rerank_demo.py runs/demo-continued --k 8 --temperature 0.7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, demo_seeds, machine_info, write_result

GEN_TASKS = ("demo_gsm8k", "demo_samsum")


def _primary(comp: dict) -> dict[str, float | None]:
    """Score / NFR / PFR the demo reports: exact match for gsm8k; for samsum the mean ROUGE-1
    and the similarity flips (a drop in ROUGE-1 against the old output's)."""
    m, sim = comp["metrics"], (comp.get("similarity") or {}).get("metrics") or {}
    if comp["task"] == "demo_samsum" and sim:
        return {
            "score": _value_or(sim, "mean_score_new"),
            "nfr": _value_or(sim, "similarity_negative_flip_rate"),
            "pfr": _value_or(sim, "similarity_positive_flip_rate"),
        }
    return {
        "score": _value_or(m, "accuracy_new"),
        "nfr": _value_or(m, "negative_flip_rate"),
        "pfr": _value_or(m, "positive_flip_rate"),
    }


def _value_or(metrics: dict, name: str) -> float | None:
    x = metrics.get(name)
    return x.get("value") if isinstance(x, dict) else x


def run_seed(demo: Path, seed: int, task: str, args, work: Path) -> dict:
    from compatlm.config import CompareConfig, TaskConfig
    from compatlm.eval.compare_io import compare_files
    from compatlm.methods.config import RerankConfig
    from compatlm.methods.rerank import run_rerank
    from compatlm.report import render_report

    fam = json.loads((demo / "family.json").read_text(encoding="utf-8"))
    ads = demo / f"seed{seed}" / "adapters" / task
    eval_dir = demo / f"seed{seed}" / "eval"
    test = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    vanilla = next(
        c
        for c in test["comparisons"]
        if c["task"] == task and c["reference"] == "old" and c["other"] == "new"
    )
    cfg = RerankConfig(
        old=f"{fam['old']}+{ads / 'old' / 'adapter'}",
        new=f"{fam['new']}+{ads / 'new' / 'adapter'}",
        task=TaskConfig(
            name=task,
            kind="generation",
            path=str(Path(fam["root"]) / "tasks" / task / "test.jsonl"),
            split="test",
        ),
        k=args.k,
        temperature=args.temperature,
        top_p=args.top_p,
        include_greedy=args.include_greedy,
        runtime={"seed": seed, "batch_size": 32, "progress": False},
    )
    out = work / f"seed{seed}" / task
    run_rerank(cfg, out, resume=True)
    doc = compare_files(
        eval_dir / "predictions" / task / "old.jsonl",
        out / "predictions" / task / "rerank.jsonl",
        out / "compare",
        CompareConfig(),
        overwrite=True,
        render=render_report,
    )
    cost = json.loads((out / "rerank_cost.json").read_text(encoding="utf-8"))
    return {
        "new": _primary(vanilla),
        "rerank": _primary(doc["comparisons"][0]),
        "forward_token_ratio": cost["forward_token_ratio"]["value"],
        "time_ratio": cost["time_ratio"]["value"],
    }


def _mean(rows: list[dict], *keys: str) -> float | None:
    vals = [r for r in (_dig(x, keys) for x in rows) if r is not None]
    return statistics.fmean(vals) if vals else None


def _dig(x: dict, keys: tuple[str, ...]):
    for k in keys:
        x = x.get(k) if isinstance(x, dict) else None
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path, help="a finished compatlm demo --out directory")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--include-greedy", action="store_true", default=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/compatlm_rerank_demo"))
    ap.add_argument("--name", default="rerank_demo")
    args = ap.parse_args()

    demo_cfg = json.loads((args.demo / "demo.json").read_text(encoding="utf-8"))
    seeds = demo_seeds(args.demo)
    fam = json.loads((args.demo / "family.json").read_text(encoding="utf-8"))
    tasks = [t for t in GEN_TASKS if t in fam["tasks"]]
    machine = machine_info(threads=int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    t0 = time.perf_counter()
    per_task = {}
    for task in tasks:
        rows = [run_seed(args.demo, s, task, args, args.work) for s in seeds]
        new_nfr, rr_nfr = _mean(rows, "new", "nfr"), _mean(rows, "rerank", "nfr")
        per_task[task] = {
            "seeds": rows,
            "mean": {
                side: {m: _mean(rows, side, m) for m in ("score", "nfr", "pfr")}
                for side in ("new", "rerank")
            },
            "delta_nfr_percent": None
            if not new_nfr or rr_nfr is None
            else 100.0 * (rr_nfr - new_nfr) / new_nfr,
            "forward_token_ratio": _mean(rows, "forward_token_ratio"),
            "time_ratio": _mean(rows, "time_ratio"),
        }
        print(f"{task}: {json.dumps(per_task[task]['mean'])}", file=sys.stderr)
    doc = {
        "command": f".venv/bin/python bench/rerank_demo.py {' '.join(sys.argv[1:])}",
        "family_key": demo_cfg["family_key"],
        "family": demo_cfg["config"].get("family", "default"),
        "seeds": seeds,
        "settings": {
            "k": args.k,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "include_greedy": args.include_greedy,
            "score": "mean",
        },
        "metric": "gsm8k: exact match of the final number; samsum: mean ROUGE-1 and similarity"
        " flips (ROUGE-1 lower / higher than the old model's output)",
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "tasks": per_task,
    }
    print(f"wrote {write_result(RESULTS_DIR / f'{args.name}.json', doc, machine)}")


if __name__ == "__main__":
    main()
