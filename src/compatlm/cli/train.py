"""``compatlm train task|compat`` (task adapters, MUSCLE compatibility adapters) and
``compatlm cache-teacher`` (precompute teacher_old's top-k for ``train compat``)."""

from __future__ import annotations

import argparse
from pathlib import Path

TRAIN_EPILOG = """\
examples:
  compatlm train task configs/train_task.yaml --out runs/task_new
  compatlm train compat configs/train_compat.yaml --out runs/compat
  compatlm train compat configs/train_compat.yaml --out runs/compat --resume
  accelerate launch --multi_gpu --num_processes 2 -m compatlm train compat configs/train_compat.yaml \\
      --out runs/compat        # data-parallel; see docs/multi_gpu.md

Run `compatlm train RECIPE --help` for each recipe's options.
"""

TASK_EPILOG = """\
examples:
  compatlm train task configs/train_task.yaml --out runs/task_new
  compatlm train task configs/train_task.yaml --out runs/task_new --overwrite optim.epochs=1 lora.r=16
  compatlm train task configs/train_task.yaml --out runs/task_new --resume   # after an interruption
  compatlm train task configs/train_task.yaml --out runs/task_new preset=paper   # arXiv 2407.09435 A.1

Overrides are `section.key=value` (value parsed as YAML). Writes config.yaml, env.json,
adapter/ (PEFT; load it as BASE+OUT/adapter), train_log.jsonl and checkpoint/ into --out.
"""

COMPAT_EPILOG = """\
examples:
  compatlm train compat configs/train_compat.yaml --out runs/compat
  compatlm train compat configs/train_compat.yaml --out runs/compat teacher_old=cache topk=64
  compatlm train compat configs/train_compat.yaml --out runs/compat mask=old_correct kd_weight=0.5
  compatlm train compat configs/train_compat.yaml --out runs/compat focal.alpha=1 focal.beta=5
  compatlm train compat configs/train_compat.yaml --out runs/compat teacher_old=cache \\
      teacher_new=cache          # both teachers precomputed: the fastest steps

The student is a LoRA on the NEW base initialised from the new task adapter; load the result as
NEW_BASE+OUT/adapter. With teacher_old=cache the old model's top-k is computed once into
OUT/teacher_cache (or cache_dir) and the old base is not kept in memory while training.
"""

CACHE_EPILOG = """\
examples:
  compatlm cache-teacher configs/train_compat.yaml --out runs/cache_piqa
  compatlm train compat configs/train_compat.yaml --out runs/compat teacher_old=cache \\
      cache_dir=runs/cache_piqa
  compatlm cache-teacher configs/train_compat.yaml --teacher new --out runs/cache_piqa_new

Uses the same config as `train compat` (old, new, task, data, mask_prompt, topk, temperature).
--out defaults to cache_dir (--teacher old) or new_cache_dir (--teacher new) of the config.
The cache refuses to serve another teacher, tokenizer, k, temperature or other token ids.
"""


class _OverridesParser(argparse.ArgumentParser):
    """Collects ``KEY=VALUE`` overrides wherever they appear (``CONFIG --out DIR a.b=1``).

    Plain argparse stops filling the ``overrides`` positional once an option follows it; the
    leftovers that look like ``key=value`` are overrides, anything else stays an error.
    """

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        ns, extra = super().parse_known_args(args, namespace)
        rest = []
        for arg in extra:
            if not arg.startswith("-") and "=" in arg:
                ns.overrides = [*(getattr(ns, "overrides", None) or []), arg]
            else:
                rest.append(arg)
        return ns, rest


def _common(p: argparse.ArgumentParser, *, resume: bool = True) -> None:
    p.add_argument("config", metavar="CONFIG", help="training config (YAML)")
    p.add_argument("--out", help="output directory (default: `out:` of the config)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    if resume:
        p.add_argument(
            "--resume", action="store_true", help="continue from --out/checkpoint (same config)"
        )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a task adapter or a MUSCLE compatibility adapter",
        description="Train LoRA adapters: `task` (plain fine-tuning) or `compat` (MUSCLE).",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    recipes = p.add_subparsers(dest="recipe", metavar="RECIPE", parser_class=_OverridesParser)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    task = recipes.add_parser(
        "task",
        help="LoRA task adapter on a base model",
        description="Fine-tune a LoRA task adapter on a base (base weights frozen).",
        epilog=TASK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(task)
    task.set_defaults(func=run_train_task)

    compat = recipes.add_parser(
        "compat",
        help="MUSCLE compatibility adapter (arXiv 2407.09435)",
        description="Train a compatibility adapter on the new base by masked distillation from"
        " the old and new task models (fewer negative flips).",
        epilog=COMPAT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(compat)
    compat.set_defaults(func=run_train_compat)

    cache = subparsers.add_parser(
        "cache-teacher",
        help="precompute the old task model's top-k for `train compat`",
        description="Run the old task model once over the training data; store its top-k.",
        epilog=CACHE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(cache, resume=False)
    cache.add_argument(
        "--teacher",
        choices=("old", "new"),
        default="old",
        help="which task model to cache (default: old; new is for teacher_new=cache)",
    )
    cache.set_defaults(func=run_cache_teacher)
    cache.__class__ = _OverridesParser  # the lead's subparsers action creates plain parsers


def _out(args: argparse.Namespace, cfg_out: str | None) -> Path:
    from compatlm.errors import CompatlmError

    out = args.out or cfg_out
    if not out:
        raise CompatlmError("no output directory: pass --out DIR or set `out:` in the config")
    return Path(out)


def _print_written(run: Path, names: tuple[str, ...]) -> None:
    for name in names:
        if (run / name).exists():
            print(run / name)


def run_train_task(args: argparse.Namespace) -> int:
    from compatlm.config import load_config
    from compatlm.train.config import TrainTaskConfig
    from compatlm.train.task import train_task

    cfg = load_config(TrainTaskConfig, args.config, args.overrides)
    out = _out(args, cfg.out)
    adapter = train_task(cfg, out, overwrite=args.overwrite, resume=args.resume)
    if _is_main():
        _print_written(out, ("config.yaml", "env.json", "train_log.jsonl", "checkpoint"))
        print(adapter)
    return 0


def run_train_compat(args: argparse.Namespace) -> int:
    from compatlm.config import load_config
    from compatlm.train.compat import train_compat
    from compatlm.train.config import TrainCompatConfig

    cfg = load_config(TrainCompatConfig, args.config, args.overrides)
    out = _out(args, cfg.out)
    adapter = train_compat(cfg, out, overwrite=args.overwrite, resume=args.resume)
    if _is_main():
        names = ("config.yaml", "env.json", "train_log.jsonl", "checkpoint", "teacher_cache")
        _print_written(out, names)
        print(adapter)
    return 0


def run_cache_teacher(args: argparse.Namespace) -> int:
    from compatlm.config import load_config
    from compatlm.train.compat import cache_teacher
    from compatlm.train.config import TrainCompatConfig

    cfg = load_config(TrainCompatConfig, args.config, args.overrides)
    default = cfg.cache_dir if args.teacher == "old" else cfg.new_cache_dir
    out = Path(args.out) if args.out else _out(args, default)
    print(cache_teacher(cfg, out, overwrite=args.overwrite, teacher=args.teacher))
    return 0


def _is_main() -> bool:
    """Only one process of an `accelerate launch` prints."""
    from accelerate import PartialState

    return PartialState().is_main_process
