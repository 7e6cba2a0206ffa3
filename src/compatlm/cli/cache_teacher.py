"""``compatlm cache-teacher``: precompute a teacher's top-k log-probs for ``train compat``
(the old task model by default, so training need not hold the old base in memory)."""

from __future__ import annotations

import argparse

from compatlm.cli.common import load_config
from compatlm.cli.train import add_training_args, training_out
from compatlm.errors import printable

EPILOG = """\
examples:
  compatlm cache-teacher configs/train_compat.yaml --out runs/cache_piqa
  compatlm train compat configs/train_compat.yaml --out runs/compat teacher_old=cache \\
      cache_dir=runs/cache_piqa
  compatlm cache-teacher configs/train_compat.yaml --teacher new --out runs/cache_piqa_new

Uses the same config as `train compat` (old, new, task, data, mask_prompt, topk, temperature).
--out defaults to cache_dir (--teacher old) or new_cache_dir (--teacher new) of the config.
The cache refuses to serve another teacher, tokenizer, k, temperature or other token ids.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    cache = subparsers.add_parser(
        "cache-teacher",
        help="precompute the old task model's top-k for `train compat`",
        description="Run the old task model once over the training data; store its top-k.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_args(cache, resume=False)
    cache.add_argument(
        "--teacher",
        choices=("old", "new"),
        default="old",
        help="which task model to cache (default: old; new is for teacher_new=cache)",
    )
    cache.set_defaults(func=run_cache_teacher)


def run_cache_teacher(args: argparse.Namespace) -> int:
    from compatlm.train.config import TrainCompatConfig
    from compatlm.train.recipes.compat import cache_teacher

    cfg = load_config(TrainCompatConfig, args.config, args.overrides)
    default = cfg.cache_dir if args.teacher == "old" else cfg.new_cache_dir
    out = training_out(args, default)
    print(printable(cache_teacher(cfg, out, overwrite=args.overwrite, teacher=args.teacher)))
    return 0
