"""``compatlm demo``: the whole story on the embedded tiny family, in one resumable command.

Per seed and task: train a task adapter on the old base and on the new base (the "vanilla
update"), train the MUSCLE compatibility adapter (Echterhoff et al., arXiv 2407.09435) on the new
base and the alternatives of :mod:`compatlm.demo.alternatives`, then evaluate every role on the
task's test split in one run directory per seed (re-ranking joins it afterwards, on the
generation tasks). :mod:`compatlm.demo.summary` aggregates the seeds into the paper's Tables 4–6
shape.

Layout of ``--out``::

    family.json                         which cached family was used (paths, recipe hash)
    seed<S>/adapters/<task>/<role>/     train runs (PEFT adapter in adapter/) and candidates
    seed<S>/eval/                       an ordinary eval run dir (predictions, flips, reports)
    summary.json, report.md, report.html

Every finished step writes ``done.json`` beside its output; a rerun skips finished steps and
resumes unfinished ones from their checkpoints, so an interrupted demo costs only the step it
was in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compatlm.config import EvalConfig, RuntimeConfig, StrictModel, TaskConfig
from compatlm.demo.alternatives import (
    ALTERNATIVES,
    WEIGHT_SPACE,
    add_rerank,
    build_alternative,
    shape_mismatch,
    train_pct,
)
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_json, prepare_out_dir

log = logging.getLogger(__name__)


class DemoTraining(StrictModel):
    """Hyper-parameters of the demo's adapters (small LoRAs, a few epochs: CPU minutes)."""

    # Measured on the default family (lr 3e-3, 3 epochs, r=8 on all linear layers): every task
    # adapter beats chance and the update shows >= 3% negative flips on every task.
    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    lr: float = Field(3e-3, gt=0)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    compat_lr: float = Field(1e-3, gt=0)
    compat_epochs: int = Field(2, ge=1)
    limit_train: int | None = Field(None, ge=1, description="use only the first N train examples")


class DemoRuntime(RuntimeConfig):
    """Tiny models score fast in big batches. A subclass, not ``RuntimeConfig(batch_size=32)``
    as the field default: an override like ``runtime.progress=false`` replaces the whole
    section, and only a class default survives that."""

    batch_size: int = Field(32, ge=1)


class DemoConfig(StrictModel):
    family: Literal["default", "continued"] = Field(
        "default",
        description="default: new base larger, pre-trained from scratch; continued: same shape,"
        " pre-training continued from the old base (where port/interpolate/merge apply)",
    )
    seeds: list[int] = Field(default_factory=lambda: [0])
    tasks: list[str] | None = Field(None, description="default: every demo task")
    quick: bool = False
    alternatives: list[str] = Field(default_factory=lambda: list(ALTERNATIVES))
    mask: str = "student_wrong"
    temperature: float = 2.0
    kd_weight: float = 1.0
    teacher_old: str = "cache"
    training: DemoTraining = DemoTraining()
    limit_test: int | None = Field(None, ge=1, description="evaluate only the first N test rows")
    runtime: DemoRuntime = DemoRuntime()


def _step(path: Path, what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` unless ``path/done.json`` says it finished; record its result there."""
    import json

    marker = path / "done.json"
    if marker.is_file():
        log.info("%s: done earlier, reusing %s", what, path)
        return json.loads(marker.read_text(encoding="utf-8"))["result"]
    t0 = time.perf_counter()
    log.info("%s ...", what)
    result = fn()
    atomic_write_json(marker, {"result": result, "seconds": round(time.perf_counter() - t0, 2)})
    return result


def _task_cfg(family: Any, task: str, split: str, limit: int | None = None) -> TaskConfig:
    return TaskConfig(
        name=task,
        kind=family.task_kind(task),
        path=str(family.task_dir(task) / f"{split}.jsonl"),
        split=split,
        limit=limit,
    )


def train_task_adapter(
    cfg: DemoConfig, family: Any, base: str, task: str, seed: int, out: Path
) -> str:
    from compatlm.train.config import LoraSettings, OptimSettings, TrainTaskConfig
    from compatlm.train.task import train_task

    t = cfg.training
    tcfg = TrainTaskConfig(
        base=base,
        task=_task_cfg(family, task, "train", t.limit_train),
        lora=LoraSettings(r=t.r, alpha=t.alpha),
        optim=OptimSettings(lr=t.lr, epochs=t.epochs, batch_size=t.batch_size, seed=seed),
        runtime=cfg.runtime.model_copy(update={"seed": seed}),
    )
    return str(train_task(tcfg, out, resume=True))


def train_muscle(
    cfg: DemoConfig, family: Any, old: str, new: str, task: str, seed: int, out: Path
) -> str:
    from compatlm.train.compat import train_compat
    from compatlm.train.config import OptimSettings, TrainCompatConfig

    t = cfg.training
    ccfg = TrainCompatConfig(
        old=old,
        new=new,
        task=_task_cfg(family, task, "train", t.limit_train),
        mask=cfg.mask,  # type: ignore[arg-type]
        temperature=cfg.temperature,
        kd_weight=cfg.kd_weight,
        teacher_old=cfg.teacher_old,  # type: ignore[arg-type]
        optim=OptimSettings(
            lr=t.compat_lr, epochs=t.compat_epochs, batch_size=t.batch_size, seed=seed
        ),
        runtime=cfg.runtime.model_copy(update={"seed": seed}),
    )
    return str(train_compat(ccfg, out, resume=True))


def run_seed(
    cfg: DemoConfig, family: Any, tasks: list[str], alternatives: list[str], seed: int, out: Path
) -> Path:
    """Train every adapter of one seed, then evaluate all roles on every task's test split."""
    from compatlm.eval.pipeline import run_eval

    old_base, new_base = str(family.old_dir), str(family.new_dir)
    task_cfgs = []
    for task in tasks:
        d = out / "adapters" / task
        old_ad = _step(
            d / "old",
            f"seed {seed} · {task}: task adapter on the old base",
            lambda d=d, task=task: train_task_adapter(cfg, family, old_base, task, seed, d / "old"),
        )
        new_ad = _step(
            d / "new",
            f"seed {seed} · {task}: task adapter on the new base",
            lambda d=d, task=task: train_task_adapter(cfg, family, new_base, task, seed, d / "new"),
        )
        old, new = f"{old_base}+{old_ad}", f"{new_base}+{new_ad}"
        models = {"old": old, "new": new}
        models["muscle"] = f"{new_base}+" + _step(
            d / "muscle",
            f"seed {seed} · {task}: MUSCLE compatibility adapter",
            lambda d=d, task=task, old=old, new=new: train_muscle(
                cfg, family, old, new, task, seed, d / "muscle"
            ),
        )
        for alt in alternatives:
            if alt == "rerank":  # not a model: predictions, added after the eval below
                continue
            if alt == "pct":
                models[alt] = f"{new_base}+" + _step(
                    d / alt,
                    f"seed {seed} · {task}: PCT focal distillation adapter",
                    lambda d=d, task=task, old=old, new=new: train_pct(
                        cfg,
                        _task_cfg(family, task, "train", cfg.training.limit_train),
                        old,
                        new,
                        seed,
                        d / "pct",
                    ),
                )
                continue
            models[alt] = _step(
                d / alt,
                f"seed {seed} · {task}: {alt}",
                lambda d=d, alt=alt, old=old, new=new: build_alternative(
                    alt, old, new, d / alt / "candidate", cfg.runtime
                ),
            )
        task_cfgs.append(
            _task_cfg(family, task, "test", cfg.limit_test).model_copy(update={"models": models})
        )
    runtime = cfg.runtime.model_copy(update={"seed": seed})
    ecfg = EvalConfig(old=old_base, new=new_base, tasks=task_cfgs, runtime=runtime)
    run = run_eval(ecfg, out / "eval", resume=True)
    if "rerank" in alternatives and add_rerank(task_cfgs, out, runtime, _step):
        from compatlm.eval.compare_io import compare_run

        compare_run(run, ecfg.compare)  # every role, now with rerank; reports redone
    return run


def _link_family(link: Path, root: Path) -> None:
    """``OUT/family`` points at the cached family so the example configs can name stable paths
    (``runs/demo/family/old``); a stale link from an earlier family is replaced."""
    if link.is_symlink() or link.exists():
        if link.is_symlink() and link.resolve() == root.resolve():
            return
        link.unlink()
    link.symlink_to(root.resolve(), target_is_directory=True)


def _run_identity(cfg: DemoConfig, family_key: str) -> dict[str, Any]:
    # Progress and seeds may change between runs in one directory (adding seeds is a resume);
    # everything else changes what finished steps mean.
    data = cfg.model_dump(mode="json", exclude={"seeds"})
    data["runtime"].pop("progress", None)
    return {"family_key": family_key, "config": data}


def _check_same_run(out: Path, cfg: DemoConfig, family_key: str, overwrite: bool) -> None:
    """A rerun reuses finished steps, so it must be the same demo: refuse a directory made by
    another family or other settings instead of mixing their adapters."""
    import json

    recorded = out / "demo.json"
    if overwrite or not recorded.is_file():
        return
    before = json.loads(recorded.read_text(encoding="utf-8"))
    now = _run_identity(cfg, family_key)
    if before != now:
        what = "family" if before.get("family_key") != family_key else "settings"
        raise CompatlmError(
            f"--out {out}: made by a demo with other {what} ({recorded}); rerun with the same"
            " options to resume, or pass --overwrite to start over"
        )


def run_demo(cfg: DemoConfig, out: str | Path, *, overwrite: bool = False) -> Path:
    """Build or load the family, run every seed, aggregate; returns the summary report path."""
    from compatlm.demo.family import FamilyRecipe, build_or_load_family
    from compatlm.demo.summary import write_summary
    from compatlm.demo.tasks import TASKS

    # Bad input fails before anything is built or written.
    tasks = cfg.tasks or list(TASKS)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise CompatlmError(f"demo --tasks: unknown task {unknown[0]!r}; valid: {', '.join(TASKS)}")
    bad_alt = [a for a in cfg.alternatives if a not in ALTERNATIVES]
    if bad_alt:
        raise CompatlmError(
            f"demo alternatives: unknown {bad_alt[0]!r}; valid: {', '.join(ALTERNATIVES)}"
        )
    recipe = FamilyRecipe.named(cfg.family, quick=cfg.quick)
    _check_same_run(Path(out), cfg, recipe.key(), overwrite)
    out = prepare_out_dir(out, overwrite=overwrite, resume=not overwrite)
    family = build_or_load_family(recipe, progress=cfg.runtime.progress)
    weight_space = any(a in WEIGHT_SPACE for a in cfg.alternatives)
    skipped = shape_mismatch(str(family.old_dir), str(family.new_dir)) if weight_space else None
    if skipped:
        log.warning("demo: %s", skipped)
    atomic_write_json(out / "demo.json", _run_identity(cfg, recipe.key()))
    _link_family(out / "family", family.root)
    atomic_write_json(
        out / "family.json",
        {
            "root": str(family.root),
            "old": str(family.old_dir),
            "new": str(family.new_dir),
            "tasks": tasks,
            "alternatives_skipped": skipped,
            "recipe": recipe.model_dump(mode="json"),
        },
    )
    alternatives = [a for a in cfg.alternatives if not (skipped and a in WEIGHT_SPACE)]
    runs = {
        seed: run_seed(cfg, family, tasks, alternatives, seed, out / f"seed{seed}")
        for seed in cfg.seeds
    }
    return write_summary(out, runs, tasks, notes=[skipped] if skipped else [])


def quick_defaults() -> dict[str, Any]:
    """``--quick``: small data and one short epoch each, for a minutes-scale end-to-end run."""
    return {
        "training": {"epochs": 1, "compat_epochs": 1, "limit_train": 96, "r": 4, "alpha": 8.0},
        "limit_test": 48,
    }
