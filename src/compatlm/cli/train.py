"""``compatlm train task|compat``: task adapters and MUSCLE compatibility adapters (or, with
``--control``, one of MUSCLE's same-budget controls)."""

from __future__ import annotations

import argparse
from pathlib import Path

from compatlm.cli.common import add_overrides, load_config, print_existing, require_out
from compatlm.errors import printable
from compatlm.methods.registry import control_names

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
  compatlm train compat configs/train_compat.yaml --out runs/continue_ce --control continue_ce
  compatlm train compat configs/train_compat.yaml --out runs/kd_new --control kd_new

The student is a LoRA on the NEW base initialised from the new task adapter; load the result as
NEW_BASE+OUT/adapter. With teacher_old=cache the old model's top-k is computed once into
OUT/teacher_cache (or cache_dir) and the old base is not kept in memory while training.
diagnostics.json says how many loss tokens followed the old model; budget.json records steps,
tokens and the learning-rate schedule. --control trains a same-budget control from the same
config: continue_ce (cross entropy only, kd_weight=0) or kd_new (the new task model as the only
teacher); compare its NFR with the compatibility adapter's before crediting the old model.
"""


def add_training_args(p: argparse.ArgumentParser, *, resume: bool = True) -> None:
    """CONFIG, --out, --overwrite (and --resume) and overrides: what every recipe takes."""
    p.add_argument("config", metavar="CONFIG", help="training config (YAML)")
    p.add_argument("--out", help="output directory (default: `out:` of the config)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    if resume:
        p.add_argument(
            "--resume", action="store_true", help="continue from --out/checkpoint (same config)"
        )
    add_overrides(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a task adapter or a MUSCLE compatibility adapter",
        description="Train LoRA adapters: `task` (plain fine-tuning) or `compat` (MUSCLE).",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    recipes = p.add_subparsers(dest="recipe", metavar="RECIPE")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    task = recipes.add_parser(
        "task",
        help="LoRA task adapter on a base model",
        description="Fine-tune a LoRA task adapter on a base (base weights frozen).",
        epilog=TASK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_args(task)
    task.set_defaults(func=run_train_task)

    compat = recipes.add_parser(
        "compat",
        help="MUSCLE compatibility adapter (arXiv 2407.09435)",
        description="Train a compatibility adapter on the new base by masked distillation from"
        " the old and new task models (fewer negative flips).",
        epilog=COMPAT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_args(compat)
    compat.add_argument(
        "--control",
        choices=control_names(),
        help="train this same-budget control of the config instead of the compatibility adapter",
    )
    compat.set_defaults(func=run_train_compat)


def training_out(args: argparse.Namespace, cfg_out: str | None) -> Path:
    """``--out`` (or the config's ``out:``); with ``--overwrite`` it must not hold the config."""
    out = require_out(args.out, cfg_out)
    if args.overwrite:
        from compatlm.rundir import check_inputs_outside

        # The recipe checks the paths its config names; the config file itself only we know.
        check_inputs_outside(out, [args.config])
    return out


def run_train_task(args: argparse.Namespace) -> int:
    from compatlm.train.config import TrainTaskConfig
    from compatlm.train.recipes.task import train_task

    cfg = load_config(TrainTaskConfig, args.config, args.overrides)
    out = training_out(args, cfg.out)
    adapter = train_task(cfg, out, overwrite=args.overwrite, resume=args.resume)
    if _is_main():
        print_existing(out, ("config.yaml", "env.json", "train_log.jsonl", "checkpoint"))
        print(printable(adapter))
    return 0


def run_train_compat(args: argparse.Namespace) -> int:
    from compatlm.train.config import TrainCompatConfig
    from compatlm.train.recipes.compat import train_compat

    cfg = load_config(TrainCompatConfig, args.config, args.overrides)
    out = training_out(args, cfg.out)
    if getattr(args, "control", None):
        from compatlm.methods.controls import control_config

        cfg = control_config(cfg, args.control)
    adapter = train_compat(cfg, out, overwrite=args.overwrite, resume=args.resume)
    if _is_main():
        names = (
            "config.yaml",
            "env.json",
            "train_log.jsonl",
            "diagnostics.json",
            "budget.json",
            "checkpoint",
            "teacher_cache",
        )
        print_existing(out, names)
        print(printable(adapter))
    return 0


def _is_main() -> bool:
    """Only one process of an `accelerate launch` prints."""
    from accelerate import PartialState

    return PartialState().is_main_process
