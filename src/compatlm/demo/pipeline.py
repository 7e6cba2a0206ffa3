"""``compatlm demo``: the whole story on the embedded tiny family, in one resumable command.

Per seed and task: train a task adapter on the old base and on the new base (the "vanilla
update"); train one MUSCLE compatibility adapter (Echterhoff et al., arXiv 2407.09435) per point
of the knob grid ``select.grid`` and the same-budget control ``continue_ce`` (the new adapter
trained further with cross entropy for the same steps: without it a lower NFR cannot be credited
to the old model); evaluate old, new, every point and the control on the **validation** split
and pick MUSCLE's setting there (:mod:`compatlm.demo.selection`). Only then is the test split
touched: one evaluation of old, new, the selected MUSCLE (role ``muscle``), ``continue_ce`` and
the alternatives of :mod:`compatlm.demo.alternatives` per seed (re-ranking joins it afterwards,
on the generation tasks); the unselected points never reach it. :mod:`compatlm.demo.summary`
aggregates the seeds into the paper's Tables 4–6 shape and :mod:`compatlm.demo.evidence` writes
the seed-level evidence.

Layout of ``--out``::

    family.json                         which cached family was used (paths, recipe hash)
    seed<S>/adapters/<task>/<role>/     train runs (PEFT adapter in adapter/) and candidates
    seed<S>/adapters/<task>/muscle/<point>/   one MUSCLE run per grid point
    seed<S>/validation/                 eval run on the validation split (old, new, points, control)
    seed<S>/selection/<task>.json       the rule, every point's validation numbers, the winner
    seed<S>/eval/                       an ordinary eval run dir on the test split
    summary.json, evidence.json, report.md, report.html

Every finished step writes ``done.json`` beside its output; a rerun skips finished steps and
resumes unfinished ones from their checkpoints, so an interrupted demo costs only the step it
was in.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compatlm.config import RuntimeConfig, StrictModel
from compatlm.demo.alternatives import (
    ALTERNATIVES,
    DEFAULT_ALTERNATIVES,
    WEIGHT_SPACE,
    shape_mismatch,
)
from compatlm.demo.selection import DemoSelect, check_grid

# Re-exported: the benches and tests build the demo's training configs through these.
from compatlm.demo.steps import (
    SeedClock,
    compat_mask_prompt,
    compat_settings,
    muscle_config,
    read_json,
    task_cfg,
    train_muscle,
    train_task_adapter,
)
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_json
from compatlm.rundir import check_out_dir, prepare_out_dir

_task_cfg = task_cfg  # the name the benches import
__all__ = [
    "DemoConfig",
    "DemoRuntime",
    "DemoTraining",
    "compat_mask_prompt",
    "muscle_config",
    "quick_defaults",
    "run_demo",
    "train_muscle",
    "train_task_adapter",
]

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
    # Measured on validation (bench/muscle_masks_task_prompt.json vs muscle_masks.json, 3 seeds):
    # answer-only task adapters are 5.7-6.0 points more accurate for new and have lower NFR vs
    # old (14.5 vs 17.0 % hellaswag, 9.6 vs 11.9 % piqa) than loss on context + answer.
    mask_prompt: bool = Field(
        True,
        description="task adapters: loss on the answer tokens only (false = paper A.1, context"
        " and answer; measured less accurate on the demo's validation split)",
    )
    # Measured on validation (bench/muscle_masks.py, default family, hellaswag + piqa, 3 seeds):
    # with the loss on context and answer every mask raised NFR vs new (+2.7 % to +13.9 %) and
    # lost 0.7-2.7 accuracy points, and so did the same-budget continue_ce; answer-only was
    # 4.3 points of Δ%NFR better [0.3, 8.3]. Hence null (= mask_prompt: true) by default.
    compat_mask_prompt: bool | None = Field(
        None,
        description="compatibility adapters, controls and PCT (null = same as mask_prompt;"
        " false = the paper's A.1, loss on context and answer; measured worse on the demo's"
        " validation split, see bench/README.md)",
    )
    compat_init: Literal["new_adapter", "fresh"] = Field(
        "new_adapter",
        description="where compatibility adapters, controls and PCT start: a copy of the new"
        " task adapter (the paper's A.1) or a fresh LoRA (an ablation; measured on validation"
        " with the task adapters' budget: more NFR than its control, bench/results/"
        "muscle_init.json)",
    )
    limit_train: int | None = Field(None, ge=1, description="use only the first N train examples")


class DemoRuntime(RuntimeConfig):
    """Tiny models score fast in big batches. A subclass, not ``RuntimeConfig(batch_size=32)``
    as the field default: an override like ``runtime.progress=false`` replaces the whole
    section, and only a class default survives that."""

    batch_size: int = Field(32, ge=1)


class DemoConfig(StrictModel):
    family: Literal["default", "continued", "legacy"] = Field(
        "default",
        description="default: skill tasks, new base larger, pre-trained from scratch; continued:"
        " same shape, pre-training continued from the old base (where port/interpolate/merge"
        " apply); legacy: the earlier world-facts family",
    )
    seeds: list[int] = Field(default_factory=lambda: [0])
    tasks: list[str] | None = Field(None, description="default: every demo task")
    quick: bool = False
    alternatives: list[str] = Field(default_factory=lambda: list(DEFAULT_ALTERNATIVES))
    # MUSCLE's settings where select.grid does not vary them.
    mask: str = "student_wrong"
    # Measured on validation (bench/results/muscle_temperature.json, default family, hellaswag +
    # piqa, 5 seeds, student_wrong, λ 1): T 1 gave Δ%NFR vs new −4.5 % [−8.1, −0.9] and beat
    # its same-budget control by 6.9 points [2.6, 11.3]; T 2 +7.4 %, T 4 +4.8 %. Hence 1.
    temperature: float = Field(
        1.0,
        gt=0,
        description="distillation temperature of the compat adapters (1 by measurement on"
        " validation: lower NFR than 2 or 4, bench/results/muscle_temperature.json)",
    )
    # PCT's own: the temperature study (bench/results/muscle_temperature.json) measured MUSCLE
    # only, so PCT keeps the 2 it always had rather than following MUSCLE's new default.
    pct_temperature: float = Field(
        2.0, gt=0, description="distillation temperature of PCT (focal distillation)"
    )
    kd_weight: float = 1.0
    t_squared: bool = Field(
        False,
        description="scale the KL term by T² (compat adapters, PCT); false by measurement: no"
        " validation difference at λ 1 or 0.5 (bench/results/muscle_t_squared.json)",
    )
    teacher_old: str = "cache"
    training: DemoTraining = DemoTraining()
    limit_test: int | None = Field(None, ge=1, description="evaluate only the first N test rows")
    select: DemoSelect = DemoSelect()
    runtime: DemoRuntime = DemoRuntime()


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
    recorded = out / "demo.json"
    if overwrite or not recorded.is_file():
        return
    before = read_json(recorded)
    if not isinstance(before, dict):
        raise CompatlmError(
            f"{recorded}: not a readable demo record (JSON object); pass --overwrite to start over"
        )
    now = _run_identity(cfg, family_key)
    if before != now:
        what = "family" if before.get("family_key") != family_key else "settings"
        raise CompatlmError(
            f"--out {out}: made by a demo with other {what} ({recorded}); rerun with the same"
            " options to resume, or pass --overwrite to start over"
        )


def run_demo(cfg: DemoConfig, out: str | Path, *, overwrite: bool = False) -> Path:
    """Build or load the family, run every seed, aggregate; returns the summary report path."""
    from compatlm.demo.evidence import write_evidence
    from compatlm.demo.family import FamilyRecipe, build_or_load_family
    from compatlm.demo.seed_run import run_seed
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
    points = check_grid(cfg, compat_settings)  # every MUSCLE setting valid before any training
    recipe = FamilyRecipe.named(cfg.family, quick=cfg.quick)
    # Not a compatlm run, or a directory --overwrite must not delete: refused before anything.
    check_out_dir(out, kind="demo", overwrite=overwrite, resume=not overwrite)
    _check_same_run(Path(out), cfg, recipe.key(), overwrite)
    out = prepare_out_dir(out, kind="demo", overwrite=overwrite, resume=not overwrite)
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
            "build": family.build,
        },
    )
    alternatives = [a for a in cfg.alternatives if not (skipped and a in WEIGHT_SPACE)]
    seeds = {}
    clock = SeedClock(len(cfg.seeds))
    for seed in cfg.seeds:
        clock.start(seed)
        resumed = (out / f"seed{seed}" / "eval" / "metrics.json").is_file()  # finished earlier
        seeds[seed] = run_seed(cfg, family, tasks, alternatives, seed, out / f"seed{seed}", points)
        clock.finish(seed, resumed=resumed)
    notes = ([skipped] if skipped else []) + [n for r in seeds.values() for n in r.notes]
    if family.build.get("status") == "differs":
        notes.insert(0, family.build["message"])
    # Evidence first: the summary page shows its stability section (two or more seeds).
    evidence = json.loads(write_evidence(out, list(seeds), tasks).read_text(encoding="utf-8"))
    runs = {s: r.run for s, r in seeds.items()}
    return write_summary(out, runs, tasks, notes=notes, stability=evidence["stability"])


def quick_defaults() -> dict[str, Any]:
    """``--quick``: small data and one short epoch each, for a minutes-scale end-to-end run."""
    return {
        "training": {"epochs": 1, "compat_epochs": 1, "limit_train": 96, "r": 4, "alpha": 8.0},
        "limit_test": 48,
    }
