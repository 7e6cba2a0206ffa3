"""``compatlm build`` (candidate builders) and ``compatlm rerank`` (BCR predictions).

``build`` prints the candidate's ModelSpec as the only line on stdout (so
``SPEC=$(compatlm build ...)`` works); the paths it wrote go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Kept literal so `compatlm --help` does not import torch; a test checks it against the registry.
METHOD_NAMES = ("interpolate", "muscle", "port", "task_arithmetic")

BUILD_EPILOG = """\
methods:
  port             the old adapter on the new base, ΔW scaled by alpha (PortLLM)
  interpolate      alpha·ΔW_old + (1 − alpha)·ΔW_new on the new base, exact (BCWI)
  task_arithmetic  base + Σ ω·τ over adapters or full fine-tuned models (Merge-to-Learn)
  muscle           compatibility LoRA by masked distillation (same as `compatlm train compat`)

examples:
  compatlm build port configs/port.yaml --out runs/port
  compatlm build interpolate configs/interpolate.yaml alpha=0.3 --out runs/interp
  compatlm build task_arithmetic configs/task_arithmetic.yaml vectors.0.weight=0.5 --out runs/ta
  SPEC=$(compatlm build interpolate configs/interpolate.yaml --out runs/i --overwrite)

The last stdout line is the candidate ModelSpec; put it under `candidates:` of an eval config.
"""

RERANK_EPILOG = """\
examples:
  compatlm rerank configs/rerank.yaml --out runs/rerank
  compatlm rerank configs/rerank.yaml k=16 temperature=0.7 score=sum --out runs/rerank

Writes predictions/<task>/<role>.jsonl (compare it with the old model's predictions:
`compatlm compare runs/eval/predictions/<task>/old.jsonl runs/rerank/predictions/<task>/rerank.jsonl`)
and rerank_cost.json (forward tokens and wall time against greedy decoding).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build",
        help="build a candidate model (port, interpolate, task_arithmetic, muscle)",
        description="Build a candidate from a method config; prints its ModelSpec.",
        epilog=BUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", metavar="METHOD", help=" | ".join(METHOD_NAMES))
    p.add_argument("config", metavar="CONFIG", help="method config (YAML)")
    p.add_argument("--out", required=True, help="candidate directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=run_build)

    r = subparsers.add_parser(
        "rerank",
        help="BCR: sample from the new model, keep what the old model scores highest",
        description="Backward-compatible re-ranking (BCR) predictions for a generation task.",
        epilog=RERANK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("config", metavar="CONFIG", help="rerank config (YAML)")
    r.add_argument("--out", required=True, help="run directory to write")
    r.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    r.add_argument("--resume", action="store_true", help="continue a run in --out")
    r.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    r.set_defaults(func=run_rerank)


def run_build(args: argparse.Namespace) -> int:
    from compatlm.config import load_config
    from compatlm.io import prepare_out_dir
    from compatlm.methods.registry import get_method

    method = get_method(args.method)
    cfg = load_config(method.config_cls, args.config, args.overrides)
    out = Path(args.out)
    if args.overwrite:
        prepare_out_dir(out, overwrite=True)
    spec = method.build(cfg, out, runtime=cfg.runtime)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        print(f"wrote {path}", file=sys.stderr)
    print(spec)
    return 0


def run_rerank(args: argparse.Namespace) -> int:
    from compatlm.config import load_config
    from compatlm.methods.config import RerankConfig
    from compatlm.methods.rerank import run_rerank as run

    cfg = load_config(RerankConfig, args.config, args.overrides)
    written = run(cfg, Path(args.out), overwrite=args.overwrite, resume=args.resume)
    for path in written:
        print(f"wrote {path}")
    return 0
