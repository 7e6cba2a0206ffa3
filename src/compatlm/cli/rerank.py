"""``compatlm rerank``: BCR predictions (the registry's ``rerank``, which produces predictions,
not a model, so it has its own command with ``--resume`` instead of going through ``build``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from compatlm.cli.common import add_overrides, load_config
from compatlm.errors import printable

EPILOG = """\
examples:
  compatlm rerank configs/rerank.yaml --out runs/rerank
  compatlm rerank configs/rerank.yaml k=16 temperature=0.7 score=sum --out runs/rerank

Writes predictions/<task>/<role>.jsonl (compare it with the old model's predictions:
`compatlm compare runs/eval/predictions/<task>/old.jsonl runs/rerank/predictions/<task>/rerank.jsonl`)
and rerank_cost.json (forward tokens and wall time against greedy decoding).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser(
        "rerank",
        help="BCR: sample from the new model, keep what the old model scores highest",
        description="Backward-compatible re-ranking (BCR) predictions for a generation task.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("config", metavar="CONFIG", help="rerank config (YAML)")
    r.add_argument("--out", required=True, help="run directory to write")
    r.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    r.add_argument("--resume", action="store_true", help="continue a run in --out")
    add_overrides(r)
    r.set_defaults(func=run_rerank_command)


def run_rerank_command(args: argparse.Namespace) -> int:
    from compatlm.methods.registry import get_method
    from compatlm.methods.rerank import run_rerank

    cfg = load_config(get_method("rerank").config_cls, args.config, args.overrides)
    written = run_rerank(
        cfg, Path(args.out), overwrite=args.overwrite, resume=args.resume, inputs=[args.config]
    )
    for path in written:
        print(printable(f"wrote {path}"))
    return 0
