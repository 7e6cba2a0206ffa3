"""Mechanism diagnostics and the training budget of a compatibility run.

MUSCLE (Echterhoff et al., arXiv 2407.09435, §4) distils the student from teacher_old where its
mask is set and from teacher_new elsewhere. The student starts as a copy of the new task
adapter (``student_init: new_adapter``, the paper's), i.e. *as* teacher_new, so on the
teacher_new tokens the distillation gradient starts at zero: the candidate can move away from
new only through the tokens the mask sends to teacher_old. When that share is small, MUSCLE ≈
new by construction, and a lower negative-flip rate may come from the extra training alone;
hence the same-budget controls
(:mod:`compatlm.methods.controls`) and these two files in the run directory:

- ``diagnostics.json`` — per epoch and in total: loss tokens, the share sent to teacher_old,
  the share where the student is wrong (and teacher_old / teacher_new right), mean KD and CE
  losses, and a one-line verdict. Shares are ``{value, numerator, denominator, ci, reason}``
  like every metric (undefined = null with the reason, never 0).
- ``budget.json`` — optimiser steps, training tokens, the learning rate of every step (with a
  fingerprint) and a fingerprint of the batch order, so a control can be checked to have had
  exactly the budget of the run it controls.

Counting happens per micro-batch in the step function (:func:`token_counts`); the loop sums the
counts over the epoch and over processes; rates are formed here from those sums (sum, then
divide — never a mean of per-batch ratios). "Student wrong" is the student's argmax at the
training forward pass of that step (before the optimiser update; with dropout if any).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from compatlm.errors import CompatlmError
from compatlm.eval.metrics import metric_obj
from compatlm.io import atomic_write_json
from compatlm.spec import ModelSpec

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import Tensor

    from compatlm.train.config import OptimSettings, TrainCompatConfig

DIAGNOSTICS = "diagnostics.json"
BUDGET = "budget.json"
SCHEMA_VERSION = 1
# Below this share of loss tokens following teacher_old, MUSCLE can barely differ from new.
LOW_OLD_SHARE = 0.05

# Per-micro-batch counts a step function reports (LossOutput.counts); the loop sums them.
# *_observed = loss tokens at which that teacher's prediction was seen (0 when it never ran).
COUNT_KEYS = (
    "student_wrong",
    "student_wrong_old_right",
    "student_wrong_new_right",
    "old_observed",
    "new_observed",
)
_NO_TEACHER = {
    "old": "teacher_old was not run (kd_weight=0 or mask new_only)",
    "new": "teacher_new was not run (kd_weight=0)",
}


def token_counts(
    student_logits: Tensor,
    labels: Tensor,
    *,
    old_argmax: Tensor | None = None,
    new_argmax: Tensor | None = None,
    ignore_index: int = -100,
) -> dict[str, int]:
    """Counts over the valid tokens of one batch (see :data:`COUNT_KEYS`).

    student_logits: (B, T, V); labels, old_argmax, new_argmax: (B, T). A teacher given as None
    was not run: its counts are 0, and so is its ``*_observed`` count.
    """
    import torch

    with torch.no_grad():
        valid = labels != ignore_index  # (B, T)
        wrong = (student_logits.argmax(dim=-1) != labels) & valid  # (B, T)
        n_valid = int(valid.sum())
        counts = dict.fromkeys(COUNT_KEYS, 0)
        counts["student_wrong"] = int(wrong.sum())
        if old_argmax is not None:
            counts["student_wrong_old_right"] = int((wrong & (old_argmax == labels)).sum())
            counts["old_observed"] = n_valid
        if new_argmax is not None:
            counts["student_wrong_new_right"] = int((wrong & (new_argmax == labels)).sum())
            counts["new_observed"] = n_valid
    return counts


# --------------------------------------------------------------------------- diagnostics.json


def objective_of(cfg: TrainCompatConfig) -> str:
    """What a compat config trains: ``continue_ce`` (λ = 0), ``kd_new`` (mask new_only) or
    ``muscle`` (masked distillation, including PCT-style focal weights)."""
    if cfg.kd_weight == 0:
        return "continue_ce"
    if cfg.mask == "new_only":
        return "kd_new"
    return "muscle"


def _rate(num: float, den: float, reason: str) -> dict[str, Any]:
    if den == 0:
        return metric_obj(numerator=int(num), denominator=0, reason=reason)
    return metric_obj(value=num / den, numerator=int(num), denominator=int(den))


def _summary(counts: dict[str, float], kd_sum: float, ce_sum: float) -> dict[str, Any]:
    n = counts.get("loss_tokens", 0)
    no_tokens = "no loss tokens were trained"
    return {
        "loss_tokens": int(n),
        "old_share": _rate(counts.get("old_tokens", 0), n, no_tokens),
        "student_wrong": _rate(counts.get("student_wrong", 0), n, no_tokens),
        "student_wrong_old_right": _rate(
            counts.get("student_wrong_old_right", 0),
            counts.get("old_observed", 0),
            _NO_TEACHER["old"] if n else no_tokens,
        ),
        "student_wrong_new_right": _rate(
            counts.get("student_wrong_new_right", 0),
            counts.get("new_observed", 0),
            _NO_TEACHER["new"] if n else no_tokens,
        ),
        "mean_kd": kd_sum / n if n else None,
        "mean_ce": ce_sum / n if n else None,
    }


def _percent(share: float) -> str:
    pct = 100 * share
    return f"{pct:.2f}" if pct < 1 else f"{pct:.1f}"


def verdict(objective: str, old_share: dict[str, Any], mask: str, init: str = "new_adapter") -> str:
    """One line on what the run could change relative to the new task model."""
    start = (
        "the new task adapter trained further"
        if init == "new_adapter"
        else "a fresh LoRA on the new base trained"
    )
    if objective == "continue_ce":
        return (
            f"control: cross entropy only (kd_weight=0), no teacher used: {start}"
            " with the budget of the compatibility adapter"
        )
    if objective == "kd_new":
        return "control: every loss token follows teacher_new (mask new_only); teacher_old unused"
    share = old_share["value"]
    if share is None:
        return f"undefined: {old_share['reason']}"
    # "Barely differ" holds only when the student starts AT teacher_new (zero gradient on the
    # tokens that follow it); a fresh student is pulled towards teacher_new, not held there.
    if share < LOW_OLD_SHARE and init == "new_adapter":
        return (
            f"MUSCLE can barely differ from new here: only {_percent(share)}% of loss tokens"
            " follow teacher_old"
        )
    return f"{_percent(share)}% of loss tokens follow teacher_old (mask {mask})"


def build_diagnostics(history: Sequence[dict[str, Any]], cfg: TrainCompatConfig) -> dict[str, Any]:
    """``diagnostics.json`` of a compat run from its training log rows (the loop's history)."""
    epochs, total = [], dict.fromkeys(("loss_tokens", "old_tokens", *COUNT_KEYS), 0.0)
    kd_total = ce_total = 0.0
    for row in history:
        counts = row.get("counts", {})
        n = counts.get("loss_tokens", 0)
        kd_sum, ce_sum = row["train_kd"] * n, row["train_ce"] * n
        epochs.append(
            {"epoch": row["epoch"], "step": row["step"], **_summary(counts, kd_sum, ce_sum)}
        )
        for key in total:
            total[key] += counts.get(key, 0)
        kd_total += kd_sum
        ce_total += ce_sum
    overall = _summary(total, kd_total, ce_total)
    objective = objective_of(cfg)
    return {
        "schema_version": SCHEMA_VERSION,
        "objective": objective,
        "settings": {
            "mask": cfg.mask,
            "kd_weight": cfg.kd_weight,
            "temperature": cfg.temperature,
            "t_squared": cfg.t_squared,
            "mask_prompt": cfg.mask_prompt,
            "student_init": cfg.student_init,
            "focal": None if cfg.focal is None else cfg.focal.model_dump(),
        },
        "verdict": verdict(objective, overall["old_share"], cfg.mask, cfg.student_init),
        "low_old_share_threshold": LOW_OLD_SHARE,
        "total": overall,
        "epochs": epochs,
    }


def load_diagnostics(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``diagnostics.json`` of a training run or candidate directory; None if it has none."""
    path = Path(run_dir) / DIAGNOSTICS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CompatlmError(f"{path}: malformed JSON ({err})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        found = data.get("schema_version") if isinstance(data, dict) else type(data).__name__
        raise CompatlmError(
            f"{path}: schema_version {found!r}, expected {SCHEMA_VERSION} (written by another"
            " compatlm version)"
        )
    return data


def _training_run(spec: str) -> Path | None:
    """The run directory that trained ``spec``'s adapter (``BASE+RUN/adapter`` → ``RUN``)."""
    adapter = ModelSpec.parse(spec).adapter
    return None if adapter is None else Path(adapter).parent


def diagnostics_for_spec(spec: str) -> dict[str, Any] | None:
    """The diagnostics of the run that trained a candidate's adapter (``BASE+RUN/adapter`` →
    ``RUN/diagnostics.json``); None for a spec without an adapter or an untrained one."""
    run = _training_run(spec)
    return None if run is None else load_diagnostics(run)


def _metrics_summary(diag: dict[str, Any], source: Path) -> dict[str, Any]:
    total = diag.get("total") if isinstance(diag.get("total"), dict) else {}
    return {
        "objective": diag.get("objective"),
        "verdict": diag.get("verdict"),
        "old_share": total.get("old_share"),
        "loss_tokens": total.get("loss_tokens"),
        "mask": (diag.get("settings") or {}).get("mask"),
        "source": str(source),
        "reason": None,
    }


def diagnostics_of(spec: str | None) -> dict[str, Any] | None:
    """The summary of the diagnostics of the run that trained ``spec``'s adapter; None when
    the spec has no adapter or its run wrote none; an unreadable file gives a reason."""
    if not spec:
        return None
    try:
        run = _training_run(spec)
    except CompatlmError:
        return None
    if run is None:
        return None
    try:
        diag = load_diagnostics(run)
    except CompatlmError as err:
        return {"objective": None, "verdict": None, "source": str(run / DIAGNOSTICS),
                "reason": str(err)}  # fmt: skip
    except OSError as err:
        return {"objective": None, "verdict": None, "source": str(run / DIAGNOSTICS),
                "reason": f"cannot be read ({err.strerror})"}  # fmt: skip
    return None if diag is None else _metrics_summary(diag, run / DIAGNOSTICS)


def collect_diagnostics(
    comparisons: list[dict[str, Any]], reference: str
) -> dict[str, dict[str, Any]]:
    """``{task: {role: summary}}`` for every model compared with ``reference`` whose adapter
    was trained by a compat run (MUSCLE, PCT, a control)."""
    out: dict[str, dict[str, Any]] = {}
    for comp in comparisons:
        if comp["reference"] != reference:
            continue
        spec = ((comp.get("scoring") or {}).get("other") or {}).get("model")
        found = diagnostics_of(spec)
        if found is not None:
            out.setdefault(comp["task"], {})[comp["other"]] = found
    return out


# --------------------------------------------------------------------------- budget.json


def chain_hash(previous: str, indices: Sequence[int]) -> str:
    """Fingerprint of a sequence of batches, extended by one batch of example indices."""
    text = previous + "|" + ",".join(str(i) for i in indices)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lr_fingerprint(lrs: Sequence[float]) -> str:
    return hashlib.sha256(json.dumps([float(x) for x in lrs]).encode()).hexdigest()[:16]


class RunResult(Protocol):
    """What the run records read of a finished run: a :class:`~compatlm.train.loop.LoopResult`
    (a Protocol, because the loop imports this module and the import graph stays acyclic)."""

    history: list[dict[str, Any]]
    global_step: int
    planned_steps: int
    lrs: list[float]
    order_hash: str


def build_budget(
    result: RunResult,
    optim: OptimSettings,
    *,
    n_train: int,
    num_processes: int,
    student_init: str = "new_adapter",
) -> dict[str, Any]:
    """``budget.json`` from a finished :class:`~compatlm.train.loop.LoopResult`."""
    tokens = sum(int(r.get("counts", {}).get("loss_tokens", 0)) for r in result.history)
    return {
        "schema_version": SCHEMA_VERSION,
        # Where the trained weights started: a control matches its run only from the same start.
        "student_init": student_init,
        "optimizer_steps": result.global_step,
        "planned_optimizer_steps": result.planned_steps,
        "epochs": len(result.history),
        "train_tokens": tokens,
        "train_examples": n_train,
        "batch_size": optim.batch_size,
        "grad_accum": optim.grad_accum,
        "num_processes": num_processes,
        "seed": optim.seed,
        "lr_schedule": {
            "kind": "linear warm-up, then linear decay",
            "lr": optim.lr,
            "warmup_steps": optim.warmup_steps,
            "fingerprint": lr_fingerprint(result.lrs),
            "per_step": result.lrs,
        },
        # The main process's batches (each process sees its own shard of every batch).
        "batch_order_fingerprint": result.order_hash,
    }


def warmup_warnings(optim: OptimSettings, total_steps: int) -> list[str]:
    """A warm-up as long as the run (the paper preset's 500 steps on a small data set) means the
    learning rate never reaches ``optim.lr``: the run silently trains at a fraction of it."""
    if optim.warmup_steps == 0 or optim.warmup_steps < total_steps:
        return []
    # Step s uses lr·s/warmup (HF's linear warm-up starts at 0): the last step is the peak.
    peak = (total_steps - 1) / optim.warmup_steps
    return [
        f"optim.warmup_steps={optim.warmup_steps} >= the run's {total_steps} optimiser steps:"
        f" the learning rate never leaves warm-up (it peaks at {100 * peak:.1f}% of"
        f" optim.lr={optim.lr:g}); lower optim.warmup_steps"
    ]


def write_run_records(
    acc: Accelerator, out: Path, cfg: TrainCompatConfig, result: RunResult, n_train: int
) -> dict[str, Any]:
    """Write ``diagnostics.json`` and ``budget.json`` (main process); return the diagnostics."""
    diag = build_diagnostics(result.history, cfg)
    if acc.is_main_process:
        atomic_write_json(out / DIAGNOSTICS, diag)
        budget = build_budget(
            result,
            cfg.optim,
            n_train=n_train,
            num_processes=acc.num_processes,
            student_init=cfg.student_init,
        )
        atomic_write_json(out / BUDGET, budget)
    acc.wait_for_everyone()
    return diag
