"""The demo's resumable steps and the training runs they wrap.

A step (:func:`step`) is a directory with a ``done.json`` that records its result (a path or a
ModelSpec) and how long it took; a rerun returns the recorded result instead of redoing the
work, and an unfinished step resumes from its checkpoints. The training functions here turn the
demo config into the configs of ``compatlm train task`` / ``train compat`` runs: task adapters
on the old and new bases, and MUSCLE (Echterhoff et al., arXiv 2407.09435) on the new base, the
config its same-budget controls derive from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compatlm.config import TaskConfig
from compatlm.io import atomic_write_json

if TYPE_CHECKING:
    from compatlm.demo.pipeline import DemoConfig
    from compatlm.train.config import TrainCompatConfig

log = logging.getLogger(__name__)


def step(path: Path, what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` unless ``path/done.json`` says it finished; record its result there."""
    marker = path / "done.json"
    done = read_json(marker) if marker.is_file() else None
    if isinstance(done, dict) and "result" in done:
        log.info("%s: done earlier, reusing %s", what, path)
        return done["result"]
    if marker.is_file():  # unreadable (a damaged disk, an edit): redo the step, it resumes
        log.warning("%s: %s is unreadable; running the step again", what, marker)
    t0 = time.perf_counter()
    log.info("%s ...", what)
    result = fn()
    seconds = time.perf_counter() - t0
    atomic_write_json(marker, {"result": result, "seconds": round(seconds, 2)})
    log.info("%s: done in %s", what, clock_text(seconds))
    return result


def clock_text(seconds: float) -> str:
    """``42 s`` / ``3 min 05 s``: durations in the demo's log lines."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class SeedClock:
    """Where a multi-seed demo is and how long the rest should take.

    The estimate is the mean wall time of the seeds run in this process times the seeds left:
    every seed does the same work. A seed that had finished before (a rerun reads it from disk)
    is not counted, so a resumed run does not promise too little.
    """

    def __init__(self, n_seeds: int) -> None:
        self.n, self.done, self.times = n_seeds, 0, []  # times: seconds of seeds run here
        self._t0 = 0.0

    def start(self, seed: int) -> None:
        self._t0 = time.perf_counter()
        log.info("seed %d (%d of %d) ...", seed, self.done + 1, self.n)

    def finish(self, seed: int, *, resumed: bool = False) -> str:
        seconds = time.perf_counter() - self._t0
        self.done += 1
        if not resumed:
            self.times.append(seconds)
        left = self.n - self.done
        eta = ""
        if left and self.times:
            eta = f"; about {clock_text(left * sum(self.times) / len(self.times))} left"
        line = f"seed {seed} ({self.done} of {self.n}) done in {clock_text(seconds)}{eta}"
        log.info("%s", line)
        return line


def read_json(path: Path) -> Any:
    """The JSON document in ``path``, or None when it cannot be read or parsed."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def step_seconds(step_dir: Path) -> float | None:
    """Seconds a finished step took (its ``done.json``), or None."""
    done = read_json(step_dir / "done.json")
    return done.get("seconds") if isinstance(done, dict) else None


def task_cfg(family: Any, task: str, split: str, limit: int | None = None) -> TaskConfig:
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
    from compatlm.train.recipes.task import train_task

    t = cfg.training
    tcfg = TrainTaskConfig(
        base=base,
        task=task_cfg(family, task, "train", t.limit_train),
        lora=LoraSettings(r=t.r, alpha=t.alpha),
        mask_prompt=t.mask_prompt,
        optim=OptimSettings(lr=t.lr, epochs=t.epochs, batch_size=t.batch_size, seed=seed),
        runtime=cfg.runtime.model_copy(update={"seed": seed}),
    )
    return str(train_task(tcfg, out, resume=True))


def compat_settings(cfg: DemoConfig, seed: int = 0) -> dict[str, Any]:
    """The TrainCompatConfig settings a demo config fixes (everything but models and data)."""
    from compatlm.train.config import OptimSettings

    t = cfg.training
    return {
        "mask_prompt": compat_mask_prompt(cfg),
        "mask": cfg.mask,
        "temperature": cfg.temperature,
        "kd_weight": cfg.kd_weight,
        "t_squared": cfg.t_squared,
        "student_init": t.compat_init,
        "teacher_old": cfg.teacher_old,
        "optim": OptimSettings(
            lr=t.compat_lr, epochs=t.compat_epochs, batch_size=t.batch_size, seed=seed
        ),
    }


def muscle_config(
    cfg: DemoConfig, family: Any, old: str, new: str, task: str, seed: int
) -> TrainCompatConfig:
    """The TrainCompatConfig of the demo's MUSCLE adapter (its controls derive from it)."""
    from compatlm.train.config import TrainCompatConfig

    return TrainCompatConfig(
        old=old,
        new=new,
        task=task_cfg(family, task, "train", cfg.training.limit_train),
        runtime=cfg.runtime.model_copy(update={"seed": seed}),
        **compat_settings(cfg, seed),
    )


def compat_mask_prompt(cfg: DemoConfig) -> bool:
    t = cfg.training
    return t.mask_prompt if t.compat_mask_prompt is None else t.compat_mask_prompt


def train_muscle(
    cfg: DemoConfig, family: Any, old: str, new: str, task: str, seed: int, out: Path
) -> str:
    from compatlm.train.recipes.compat import train_compat

    ccfg = muscle_config(cfg, family, old, new, task, seed)
    return str(train_compat(ccfg, out, resume=True))
