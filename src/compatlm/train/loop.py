"""The one training loop behind ``train task`` and ``train compat``.

Built on :class:`accelerate.Accelerator`, so the same code runs on one CPU, one GPU, or several
processes under ``accelerate launch`` (data parallel, gradients averaged across processes; only
the main process writes files). A recipe supplies the model (trainable parameters = the LoRA
being trained), the tokenised data, a ``step_fn(model, batch) -> LossOutput`` and a function
that saves the adapter in PEFT format; the loop owns everything else:

- AdamW over the trainable parameters, linear warm-up then linear decay, gradient accumulation,
  gradient clipping, a seeded per-epoch shuffle (a pure function of seed and epoch, so a resumed
  run sees the same order);
- validation cross entropy after every epoch; the best epoch's adapter is kept as ``adapter/``;
- a resumable ``checkpoint/`` (trainable tensors, optimiser and scheduler state, RNG states of
  every process, counters) after every epoch and every ``checkpoint_every`` steps, replaced
  atomically (written to a temporary directory, then renamed);
- guard rails: refuse zero trainable parameters, stop on a non-finite loss or gradient with a
  clear error (the last good checkpoint stays), verify the frozen weights are bit-identical at
  the end, warn (and record in ``env.json``) when warm-up outlasts the run;
- the per-epoch sums (:class:`~compatlm.train.state.EpochSums`: token-weighted losses and the
  token counts of :mod:`compatlm.train.diagnostics`, summed over the epoch and over processes)
  and the run's budget: the learning rate of every optimiser step and a fingerprint of the
  batch order, both resumable (:class:`~compatlm.train.state.LoopState`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_jsonl
from compatlm.train.checkpoint import (
    CHECKPOINT,
    SaveFn,
    frozen_checksum,
    load_checkpoint,
    record_warnings,
    save_adapter_atomic,
    save_checkpoint,
    surviving_dir,
    trainable_named,
)
from compatlm.train.config import OptimSettings
from compatlm.train.data import Collator, EpochShuffle, FeatureDataset, Features
from compatlm.train.diagnostics import chain_hash, warmup_warnings
from compatlm.train.distributed import zero
from compatlm.train.distributed.sharding import is_sharded, local, reshard
from compatlm.train.losses import LossOutput
from compatlm.train.progress import Progress
from compatlm.train.state import EpochSums, LoopState

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)

# (model, batch): the prepared (maybe wrapped) model in training, the unwrapped one in evaluation.
StepFn = Callable[[torch.nn.Module, dict[str, Tensor]], LossOutput]

ADAPTER = "adapter"
TRAIN_LOG = "train_log.jsonl"


@dataclass
class LoopResult:
    adapter_dir: Path
    best_epoch: int | None  # 1-based; None if no epoch finished
    best_metric: float | None
    global_step: int
    n_trainable: int
    history: list[dict[str, Any]] = field(default_factory=list)
    planned_steps: int = 0
    lrs: list[float] = field(default_factory=list)  # learning rate of each optimiser step
    order_hash: str = ""  # fingerprint of the main process's batch order
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- evaluation


def evaluate(
    acc: Accelerator,
    model: torch.nn.Module,
    feats: Sequence[Features],
    collate: Collator,
    step_fn: StepFn,
    bs: int,
) -> dict[str, float] | None:
    """Token-weighted validation ``val_ce`` and ``val_loss`` over all processes.

    Each process scores a disjoint slice (no padding duplicates), using the unwrapped model so
    no DDP collective runs inside forward (slices may differ in batch count). A sharded
    model's forward *is* collective, so there every process runs the same number of batches:
    a process whose slice is shorter repeats its first batch and does not count it.
    """
    if not feats:
        return None
    feats = list(feats)
    part = feats[acc.process_index :: acc.num_processes]
    n_batches = math.ceil(len(part) / bs)
    if is_sharded(acc):
        n_batches = math.ceil(math.ceil(len(feats) / acc.num_processes) / bs)
    filler = (part or feats)[:bs]
    sums = torch.zeros(3, dtype=torch.float64, device=acc.device)  # ce·n, loss·n, n
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for b in range(n_batches):
            chunk = part[b * bs : (b + 1) * bs]
            batch = {k: v.to(acc.device) for k, v in collate(chunk or filler).items()}
            out = step_fn(model, batch)
            n = out.n_tokens if chunk else 0
            sums += torch.tensor(
                [float(out.ce) * n, float(out.loss) * n, n], dtype=torch.float64, device=acc.device
            )
    model.train(was_training)
    reshard(model)
    if acc.num_processes > 1:
        sums = acc.reduce(sums, reduction="sum")
    if sums[2] == 0:
        return None
    return {"val_ce": float(sums[0] / sums[2]), "val_loss": float(sums[1] / sums[2])}


# --------------------------------------------------------------------------- the loop


def _on_step_end(global_step: int) -> None:
    """Called after every optimiser step (a seam for tests that simulate an interruption)."""


@dataclass
class _Run:
    acc: Any
    model: Any  # prepared (maybe DDP-wrapped)
    unwrapped: Any
    optimizer: Any
    scheduler: Any
    loader: Any
    sampler: EpochShuffle
    step_fn: StepFn
    optim: OptimSettings
    out: Path
    total_steps: int
    s: LoopState
    deepspeed: bool = False

    def checkpoint(self) -> None:
        save_checkpoint(
            self.acc, self.out, self.unwrapped, self.optimizer, self.scheduler, self.s.to_dict()
        )

    def check_finite(self, value: Tensor, what: str) -> None:
        bad = torch.tensor(
            [0.0 if bool(torch.isfinite(value).all()) else 1.0], device=self.acc.device
        )
        if self.acc.num_processes > 1:  # every process must stop together, or the others hang
            bad = self.acc.reduce(bad, reduction="sum")
        if float(bad) == 0:
            return
        ckpt = self.out / CHECKPOINT
        kept = (
            f"the last good checkpoint is kept in {ckpt} (continue with --resume)"
            if (ckpt / "state.json").exists()
            else "no checkpoint had been saved yet"
        )
        raise CompatlmError(
            f"non-finite {what} ({float(value.float().sum())}) at epoch {self.s.epoch + 1},"
            f" optimiser step {self.s.global_step + 1}; training stopped and {kept};"
            " lower optim.lr or check the data"
        )

    def train_epoch(self, bar: Progress) -> None:
        s, ga = self.s, self.optim.grad_accum
        # accelerate's prepared loader sets its sampler's epoch from its own pass counter at
        # every pass (0 after a restart): set that counter too, or a resumed multi-process run
        # replays the first epoch's order.
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(s.epoch)
        self.sampler.set_epoch(s.epoch)
        n_batches = len(self.loader)
        for i, batch in enumerate(self.loader):
            if i < s.batches_done:  # trained before the interruption
                continue
            if "index" in batch:
                s.order_hash = chain_hash(s.order_hash, batch["index"].tolist())
            start = (i // ga) * ga
            window = min(ga, n_batches - start)  # a short last window averages over itself
            sync = i + 1 == start + window
            # DeepSpeed is told where a window ends instead (it has no no_sync for ZeRO-2/3).
            quiet = sync or self.deepspeed
            with nullcontext() if quiet else self.acc.no_sync(self.model):
                res = self.step_fn(self.model, batch)
                loss = res.loss.detach()
                self.check_finite(loss, "loss")
                if self.deepspeed:
                    zero.backward(self.acc, res.loss / window, boundary=sync)
                else:
                    self.acc.backward(res.loss / window)
            s.sums.add(res, float(loss))
            if not sync:
                continue
            if self.optim.max_grad_norm is not None:
                norm = self.acc.clip_grad_norm_(self.model.parameters(), self.optim.max_grad_norm)
                if norm is not None:  # DeepSpeed ZeRO-0 reports none (the loss check remains)
                    self.check_finite(torch.as_tensor(norm).detach(), "gradient norm")
            s.lrs.append(float(self.scheduler.get_last_lr()[0]))  # the rate this step uses
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            s.global_step += 1
            s.batches_done = i + 1
            bar.update(s.global_step, float(loss), s.epoch)
            _on_step_end(s.global_step)
            if s.global_step >= self.total_steps:
                s.finished = True
                return
            every = self.optim.checkpoint_every
            if every and s.global_step % every == 0:
                self.checkpoint()

    def end_epoch(self, metrics: dict[str, float] | None, select_by: str, save: SaveFn) -> None:
        s, acc = self.s, self.acc
        sums = torch.tensor(s.sums.to_list(), dtype=torch.float64, device=acc.device)
        if acc.num_processes > 1:
            sums = acc.reduce(sums, reduction="sum")
        total = EpochSums.from_list(sums.tolist())
        lr = self.scheduler.get_last_lr()[0]
        row = {**total.history_row(epoch=s.epoch + 1, step=s.global_step, lr=lr), **(metrics or {})}
        value = None if metrics is None else metrics[select_by]
        # Strictly lower wins (ties keep the earlier epoch); without validation, the latest.
        improved = value is None or s.best_metric is None or value < s.best_metric
        if improved:
            s.best_metric, s.best_epoch = value, s.epoch + 1
            save_adapter_atomic(acc, save, self.unwrapped, self.out / ADAPTER)
        row["best"] = improved
        s.history.append(row)
        if acc.is_main_process:
            log.info(
                "epoch %d: train loss %.4f%s",
                row["epoch"],
                row["train_loss"],
                "" if metrics is None else f", val ce {metrics['val_ce']:.4f}",
            )
            atomic_write_jsonl(self.out / TRAIN_LOG, s.history)
        s.epoch, s.batches_done, s.sums = s.epoch + 1, 0, EpochSums()
        self.checkpoint()


def run_training(
    *,
    accelerator: Accelerator,
    model: torch.nn.Module,
    train_feats: Sequence[Features],
    val_feats: Sequence[Features],
    collate: Collator,
    step_fn: StepFn,
    save_adapter: SaveFn,
    optim: OptimSettings,
    out: Path,
    select_by: str = "val_ce",
    resume: bool = False,
    progress: bool = True,
) -> LoopResult:
    """Train ``model``'s trainable parameters; the best epoch's adapter ends in ``out/adapter``."""
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    acc = accelerator
    if not train_feats:
        raise CompatlmError("the training split is empty; add examples or lower val_fraction")
    if sum(f.n_labels for f in train_feats) == 0:
        raise CompatlmError("every label of the training split is masked; nothing to learn from")
    params = trainable_named(model)
    n_trainable = sum(zero.full_numel(p) for p in params.values())
    if n_trainable == 0:
        raise CompatlmError("the model has no trainable parameters; nothing would be learned")
    n_total = sum(zero.full_numel(p) for p in model.parameters())
    if acc.is_main_process:
        share = 100 * n_trainable / n_total
        log.info("trainable parameters: %d of %d (%.3f%%)", n_trainable, n_total, share)

    sampler = EpochShuffle(len(train_feats), optim.seed)
    # An own generator: DataLoader would otherwise draw its base seed from the global RNG at
    # every epoch, and a resumed run (which skips that draw) would get other dropout masks.
    loader = torch.utils.data.DataLoader(
        FeatureDataset(train_feats),
        batch_size=optim.batch_size,
        sampler=sampler,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(optim.seed),
    )
    optimizer = torch.optim.AdamW(
        list(params.values()), lr=optim.lr, weight_decay=optim.weight_decay
    )
    if zero.is_deepspeed(acc):
        zero.configure(acc, optim.max_grad_norm)
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    # After prepare: under FSDP2 the parameters are now shards, and the checksum reads shards.
    frozen_before = frozen_checksum(model)
    if acc.is_main_process and acc.num_processes > 1:
        held = sum(local(p).numel() * p.element_size() for p in model.parameters())
        log.info("parameters held by each process: %.1f MB", held / 2**20)
    total_steps = math.ceil(len(loader) / optim.grad_accum) * optim.epochs
    if optim.max_steps is not None:
        total_steps = min(total_steps, optim.max_steps)
    # Stepped by hand once per optimiser step (not prepared: accelerate would step it once per
    # process, so the schedule would change with the number of processes).
    scheduler = get_linear_schedule_with_warmup(optimizer, optim.warmup_steps, total_steps)
    warnings = warmup_warnings(optim, total_steps)
    if warnings:
        if acc.is_main_process:
            log.warning("%s", warnings[0])
        record_warnings(acc, out, warnings)
    run = _Run(
        acc,
        model,
        zero.unwrap_model(acc, model),
        optimizer,
        scheduler,
        loader,
        sampler,
        step_fn,
        optim,
        out,
        total_steps,
        LoopState(),
        deepspeed=zero.is_deepspeed(acc),
    )
    # Same random stream at the start of training whatever the recipe did before (e.g. loading
    # teachers); one stream per process so dropout masks differ across processes.
    set_seed(optim.seed, device_specific=True)
    ckpt = surviving_dir(out / CHECKPOINT)
    if resume and (ckpt / "state.json").exists():
        state = load_checkpoint(acc, ckpt, run.unwrapped, optimizer, scheduler)
        run.s = LoopState.from_dict(state)
        log.info("resuming at epoch %d, optimiser step %d", run.s.epoch + 1, run.s.global_step)
    elif resume:
        log.info("no checkpoint in %s; starting from the beginning", out)

    bar = Progress(total_steps, enabled=progress and acc.is_main_process)
    model.train()
    try:
        while not run.s.finished and run.s.epoch < optim.epochs:
            run.train_epoch(bar)
            metrics = evaluate(acc, run.unwrapped, val_feats, collate, step_fn, optim.batch_size)
            run.end_epoch(metrics, select_by, save_adapter)
    finally:
        bar.close()

    if not torch.equal(frozen_before, frozen_checksum(run.unwrapped)):
        raise RuntimeError("frozen weights changed during training (a bug in compatlm)")
    return LoopResult(
        out / ADAPTER,
        run.s.best_epoch,
        run.s.best_metric,
        run.s.global_step,
        n_trainable,
        run.s.history,
        planned_steps=total_steps,
        lrs=list(run.s.lrs),
        order_hash=run.s.order_hash,
        warnings=warnings,
    )
