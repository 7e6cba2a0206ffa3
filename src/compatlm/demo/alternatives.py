"""The demo's alternatives to MUSCLE: what each candidate is and how it is built or trained.

- ``continue_ce`` (default) and ``kd_new`` (opt-in): the same-budget controls of
  :mod:`compatlm.methods.controls`, trained from the demo's MUSCLE config with one setting
  changed (cross entropy only; teacher_new as the only teacher);
- ``pct``: PCT focal distillation (Yan et al., CVPR 2021), trained like a compatibility adapter;
- ``rerank``: BCR (Cai et al., 2022) on the generation tasks — the new task model samples, the
  old one picks; predictions rather than a model, added to a seed's eval run as role ``rerank``;
- ``port`` (PortLLM), ``interpolate`` (BCWI) and ``merge`` (task arithmetic, Merge-to-Learn):
  training-free, they put the old adapter's weight deltas on the new base, so they need bases
  of identical shapes (:func:`shape_mismatch` says why they are skipped otherwise).

Every alternative is a method of :mod:`compatlm.methods.registry`, looked up by name
(:func:`method_of`); the demo keeps its own short names where they differ (its ``merge`` is the
registry's ``task_arithmetic``), since they appear in every table and page the demo writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compatlm.config import RuntimeConfig, TaskConfig
from compatlm.demo.steps import compat_mask_prompt
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_json
from compatlm.methods.registry import Method, get_method
from compatlm.paths import RunLayout
from compatlm.rundir import prepare_out_dir

if TYPE_CHECKING:
    from compatlm.demo.pipeline import DemoConfig

# Demo name -> registered method, in the order the demo runs and shows them.
REGISTRY_NAMES: dict[str, str] = {
    "continue_ce": "continue_ce",
    "kd_new": "kd_new",
    "port": "port",
    "interpolate": "interpolate",
    "merge": "task_arithmetic",
    "pct": "pct",
    "rerank": "rerank",
}
ALTERNATIVES = tuple(REGISTRY_NAMES)
# Same-budget controls of the MUSCLE adapter (registry methods of the same names).
CONTROLS = ("continue_ce", "kd_new")
# kd_new is opt-in: one more training run per task, and continue_ce is the control that matters
# most (it cut NFR more than any MUSCLE setting on the demo family).
DEFAULT_ALTERNATIVES = tuple(a for a in ALTERNATIVES if a != "kd_new")

# The demo's settings of the training-free alternatives, as (old spec, new spec) -> the keys of
# the method's config (runtime aside). They combine the old adapter's weights with the new
# base: identical shapes only.


def _port(old: str, new: str) -> dict[str, Any]:
    return {"old": old, "new": new}


def _interpolate(old: str, new: str) -> dict[str, Any]:
    return {"old": old, "new": new, "alpha": 0.5}


def _merge(old: str, new: str) -> dict[str, Any]:
    # Merge-to-Learn style: new base + τ_new + ½·τ_old (the old skill added, not averaged).
    from compatlm.methods.config import TaskVector
    from compatlm.spec import ModelSpec

    o, n = ModelSpec.parse(old), ModelSpec.parse(new)
    vectors = [TaskVector(adapter=n.adapter, weight=1.0), TaskVector(adapter=o.adapter, weight=0.5)]
    return {"base": n.base, "vectors": vectors}


WEIGHT_SPACE_SETTINGS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "port": _port,
    "interpolate": _interpolate,
    "merge": _merge,
}
WEIGHT_SPACE = tuple(WEIGHT_SPACE_SETTINGS)
# The pipeline's resumable step runner: (step dir, description, work) -> the work's result.
StepFn = Callable[[Path, str, Callable[[], Any]], Any]


def method_of(name: str) -> Method:
    """The registered method behind the demo's alternative ``name``."""
    if name not in REGISTRY_NAMES:
        raise CompatlmError(f"demo: unknown alternative {name!r}; valid: {', '.join(ALTERNATIVES)}")
    return get_method(REGISTRY_NAMES[name])


def train_control(name: str, muscle_cfg: Any, out: Path) -> str:
    """The ``name`` control of the demo's MUSCLE config, as a candidate ModelSpec (resumable)."""
    if name not in CONTROLS:
        raise CompatlmError(f"demo: {name!r} is not a control; controls: {', '.join(CONTROLS)}")
    return method_of(name).build(muscle_cfg, out, resume=True)


def train_pct(cfg: DemoConfig, task: TaskConfig, old: str, new: str, seed: int, out: Path) -> str:
    """PCT (Yan et al., CVPR 2021) in its LLM form: cross entropy plus focal distillation from
    the old model (weight α + β·1[old correct]), starting from the new task adapter; returns
    the adapter directory. The registry's ``pct`` settings; trained by the compat recipe
    directly, since the demo keeps the adapter directory (no candidate manifest)."""
    from compatlm.methods.pct import PCT_FOCAL, PCT_KD_WEIGHT, PCT_MASK
    from compatlm.train.config import OptimSettings, TrainCompatConfig
    from compatlm.train.recipes.compat import train_compat

    t = cfg.training
    ccfg = TrainCompatConfig(
        old=old,
        new=new,
        task=task,
        mask_prompt=compat_mask_prompt(cfg),
        mask=PCT_MASK,
        temperature=cfg.pct_temperature,
        t_squared=cfg.t_squared,
        kd_weight=PCT_KD_WEIGHT,
        focal=PCT_FOCAL,
        student_init=t.compat_init,
        teacher_old=cfg.teacher_old,  # type: ignore[arg-type]
        optim=OptimSettings(
            lr=t.compat_lr, epochs=t.compat_epochs, batch_size=t.batch_size, seed=seed
        ),
        runtime=cfg.runtime.model_copy(update={"seed": seed}),
    )
    return str(train_compat(ccfg, out, resume=True))


def build_alternative(name: str, old: str, new: str, out: Path, runtime: RuntimeConfig) -> str:
    """A training-free candidate (port, interpolate, merge) as a ModelSpec: the registered
    method's config with the demo's settings, built by that method."""
    if name not in WEIGHT_SPACE_SETTINGS:
        raise CompatlmError(f"demo: unknown alternative {name!r}; valid: {', '.join(WEIGHT_SPACE)}")
    method = method_of(name)
    mcfg = method.config_cls(**WEIGHT_SPACE_SETTINGS[name](old, new), runtime=runtime)
    out = prepare_out_dir(out, kind="candidate", overwrite=True, resumable=False)
    return method.build(mcfg, out, runtime=runtime)


def add_rerank(
    task_cfgs: list[TaskConfig], seed_dir: Path, runtime: RuntimeConfig, step_fn: StepFn
) -> bool:
    """BCR (Cai et al. 2022) on the generation tasks: the new task model samples, the old one
    picks. Its predictions join the eval run as role ``rerank``; returns whether any were added
    (the run's comparisons must then be redone). Samples are appended as drawn, so an
    interrupted step resumes without redrawing them."""
    from compatlm.io import atomic_write_jsonl
    from compatlm.methods.config import RerankConfig
    from compatlm.methods.rerank import rerank_predictions
    from compatlm.tasks import resolve_task

    added = False
    for t in task_cfgs:
        target = RunLayout(seed_dir / "eval").predictions(t.name, "rerank")
        if t.kind != "generation" or target.is_file():
            continue
        step = seed_dir / "adapters" / t.name / "rerank"
        # k = 4 samples at T = 0.7 plus the greedy output: 5 candidates for the old model.
        rcfg = RerankConfig(
            old=t.models["old"],
            new=t.models["new"],
            task=t.model_copy(update={"models": {}}),
            k=4,
            temperature=0.7,
            include_greedy=True,
            runtime=runtime,
        )

        def run(rcfg: RerankConfig = rcfg, step: Path = step, target: Path = target) -> str:
            task = resolve_task(rcfg.task, "task")
            result = rerank_predictions(
                rcfg.new, rcfg.old, task, rcfg, runtime, samples_path=step / "samples.jsonl"
            )
            atomic_write_json(step / "cost.json", result.cost)
            return str(atomic_write_jsonl(target, result.predictions))

        # The predictions are missing, so a done marker is stale (the eval dir was removed).
        (step / "done.json").unlink(missing_ok=True)
        step_fn(step, f"{seed_dir.name} · {t.name}: rerank (BCR)", run)
        added = True
    return added


def shape_mismatch(old_base: str, new_base: str) -> str | None:
    """Why weight-space alternatives cannot apply (bases of different shapes), or None."""
    from compatlm.models import meta_base
    from compatlm.spec import ModelSpec

    shapes = [
        {n: tuple(p.shape) for n, p in meta_base(ModelSpec.parse(b)).named_parameters()}
        for b in (old_base, new_base)
    ]
    if shapes[0] == shapes[1]:
        return None
    diff = next(
        n
        for n in sorted(shapes[0].keys() | shapes[1].keys())
        if shapes[0].get(n) != shapes[1].get(n)
    )
    return (
        f"the old and new bases differ in shape ({diff}: {shapes[0].get(diff)} vs"
        f" {shapes[1].get(diff)}); port, interpolate and merge need identical shapes, so they"
        " are skipped"
    )
