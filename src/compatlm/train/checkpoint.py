"""Resumable training checkpoints and the adapter directory, both replaced atomically.

``checkpoint/`` holds what a stopped run needs to continue as if it had never stopped: the
trainable tensors (safetensors), optimiser and scheduler state, every process's RNG state, and
the loop counters (``state.json``). It is written into a temporary sibling directory and renamed
into place, so a crash while saving leaves the previous checkpoint intact. Only trainable
tensors are saved — a checkpoint of a LoRA run is megabytes, not a copy of the base.

Also here: the cheap checksum that proves frozen weights did not move during training, the
start of a run directory (:func:`start_run`: ``config.yaml``, ``env.json``, the ``--resume``
config check) and the save function that writes an adapter in PEFT format (:func:`peft_saver`).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from compatlm.config import dump_config, read_yaml
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_json, atomic_write_text, env_info
from compatlm.models import resolve_dtype
from compatlm.rundir import check_out_dir, input_paths, prepare_out_dir
from compatlm.train.distributed import zero
from compatlm.train.distributed.sharding import (
    full_tensors,
    load_full,
    load_optimizer_state,
    local,
    optimizer_state,
)

if TYPE_CHECKING:
    from accelerate import Accelerator

    from compatlm.train.config import TrainCompatConfig, TrainTaskConfig

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"


def trainable_named(model: torch.nn.Module) -> dict[str, Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def frozen_checksum(model: torch.nn.Module) -> Tensor:
    """(n_frozen, 2) float64: sum and L2 norm of every frozen tensor. Cheap, and exact to
    compare: the same reduction over the same bits gives the same number. A sharded parameter
    contributes this process's shard (compare checksums taken under the same sharding)."""
    rows = []
    for p in model.parameters():
        if not p.requires_grad:
            t = local(p).detach()  # local() first: detach() drops the ZeRO-3 attributes
            rows.append(torch.stack([t.sum(dtype=torch.float64), t.double().norm()]).cpu())
    return torch.stack(rows) if rows else torch.zeros((0, 2), dtype=torch.float64)


def replace_dir(tmp: Path, target: Path) -> None:
    """Swap the finished directory ``tmp`` into ``target`` (old copy moved aside, then deleted)."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        shutil.rmtree(old)


def surviving_dir(target: Path) -> Path:
    """``target``, or the copy :func:`replace_dir` moved aside if a kill struck between its two
    renames (then ``target`` is missing but ``.target.old`` is complete)."""
    old = target.with_name(f".{target.name}.old")
    return old if not target.exists() and old.exists() else target


# (model, directory, trainable tensors)
SaveFn = Callable[[torch.nn.Module, Path, dict[str, Tensor]], None]


def save_adapter_atomic(
    acc: Accelerator, save_fn: SaveFn, model: torch.nn.Module, target: Path
) -> None:
    """Run ``save_fn(model, tmp, tensors)`` on the main process and move the result to
    ``target`` in one rename (collective: sharded tensors are gathered on every process)."""
    tensors = full_tensors(trainable_named(model))
    if acc.is_main_process:
        tmp = target.with_name(f".{target.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        save_fn(model, tmp, tensors)
        replace_dir(tmp, target)
    acc.wait_for_everyone()


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    acc: Accelerator,
    out: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
) -> None:
    """Write ``out/checkpoint`` (collective: every process must call it)."""
    from safetensors.torch import save_file

    tmp = out / f".{CHECKPOINT}.tmp"
    if acc.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    # Every process has its own RNG stream (dropout masks differ per process) and its own
    # running loss sums of the current epoch (state.json holds the main process's).
    own = {**_rng_state(), "sums": list(state.get("sums", []))}
    torch.save(own, tmp / f"rng_{acc.process_index}.pt")
    # Whole tensors keyed by name: the checkpoint does not depend on the sharding. DeepSpeed
    # keeps the optimiser (and fp32 master weights) inside its engine: its own files hold them.
    tensors = full_tensors(trainable_named(model))
    optim_state = None
    if zero.is_deepspeed(acc):
        zero.save_engine(acc, tmp)
    else:
        optim_state = optimizer_state(model, optimizer)
    if acc.is_main_process:
        save_file(tensors, str(tmp / "trainable.safetensors"))
        torch.save(
            {"optimizer": optim_state, "scheduler": scheduler.state_dict()}, tmp / "trainer.pt"
        )
        atomic_write_json(tmp / "state.json", {**state, "world_size": acc.num_processes})
    acc.wait_for_everyone()
    if acc.is_main_process:
        replace_dir(tmp, out / CHECKPOINT)
    acc.wait_for_everyone()


def load_checkpoint(
    acc: Accelerator,
    ckpt: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore tensors, optimiser, scheduler and this process's RNG; return the counters."""
    from safetensors.torch import load_file

    state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    saved = load_file(str(ckpt / "trainable.safetensors"))
    params = trainable_named(model)
    if set(saved) != set(params):
        raise CompatlmError(
            f"{ckpt}: the checkpoint holds other trainable tensors than this model "
            f"({len(saved)} vs {len(params)}); it was written by another configuration"
        )
    # weights_only: these files hold tensors, numbers and tuples only, never code.
    trainer = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
    if zero.is_deepspeed(acc):
        zero.load_engine(acc, ckpt)
    elif trainer["optimizer"] is None:
        raise CompatlmError(
            f"{ckpt}: the checkpoint was written under DeepSpeed (its optimiser state is in"
            " DeepSpeed's files); resume it under DeepSpeed, or start again with --overwrite"
        )
    else:
        load_full(params, saved)
        load_optimizer_state(model, optimizer, trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    rng_file = ckpt / f"rng_{acc.process_index}.pt"
    if state.get("world_size") != acc.num_processes or not rng_file.exists():
        log.warning(
            "checkpoint was written by %s process(es), resuming with %s: data sharding and"
            " random streams differ from an uninterrupted run",
            state.get("world_size"),
            acc.num_processes,
        )
    if rng_file.exists():
        own = torch.load(rng_file, weights_only=True)
        _set_rng_state(own)
        if state.get("world_size") == acc.num_processes and "sums" in own:
            state["sums"] = own["sums"]
    return state


# --------------------------------------------------------------------------- run directory


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): data}


# Settings that may change between a run and its resumption without changing the result.
_RESUME_FREE = {"runtime.progress", "out"}


def start_run(
    acc: Accelerator,
    out: Path,
    cfg: TrainTaskConfig | TrainCompatConfig,
    *,
    overwrite: bool,
    resume: bool,
    **env: Any,
) -> Path:
    """Create the run directory and write ``config.yaml`` + ``env.json`` (main process only).

    The refusal checks run on every process before anyone writes, so all processes fail
    together instead of the others waiting forever at a barrier. ``--resume`` with a config
    that differs from the recorded one is refused: the result would match neither.
    """
    out = Path(out)
    # Not a run directory, an input inside it, a symlink ...: refused on every process.
    inputs = input_paths(cfg)
    check_out_dir(out, kind="train", overwrite=overwrite, resume=resume, inputs=inputs)
    recorded = out / "config.yaml"
    if resume and not overwrite and recorded.is_file():
        old = _flat(read_yaml(recorded))  # one-line errors for a corrupt file
        new = _flat(cfg.model_dump(mode="json"))
        diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        diff = [k for k in diff if k not in _RESUME_FREE]
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:3])
            raise CompatlmError(
                f"--resume: the config differs from the one recorded in {recorded} ({shown}"
                f"{', ...' if len(diff) > 3 else ''}); resume with the same config or use"
                " --overwrite"
            )
    acc.wait_for_everyone()
    if acc.is_main_process:
        prepare_out_dir(out, kind="train", overwrite=overwrite, resume=resume, inputs=inputs)
        atomic_write_text(out / "config.yaml", dump_config(cfg))
        optim = cfg.optim
        facts = {
            "num_processes": acc.num_processes,
            "distributed_type": str(acc.distributed_type.value),
            "device": str(acc.device),
            "dtype": str(resolve_dtype(cfg.runtime.dtype, acc.device)).removeprefix("torch."),
            "batch_size": optim.batch_size,
            "grad_accum": optim.grad_accum,
            "global_batch_size": optim.batch_size * optim.grad_accum * acc.num_processes,
            "seed": optim.seed,
        }
        atomic_write_json(out / "env.json", env_info(**facts, **env))
    acc.wait_for_everyone()
    return out


def record_warnings(acc: Accelerator, out: Path, warnings: list[str]) -> None:
    """Add ``warnings`` to the run's ``env.json`` (main process; each text once, so a resumed
    run does not repeat them)."""
    if acc.is_main_process and (out / "env.json").is_file():
        env = json.loads((out / "env.json").read_text(encoding="utf-8"))
        known = list(env.get("warnings") or [])
        env["warnings"] = known + [w for w in warnings if w not in known]
        atomic_write_json(out / "env.json", env)
    acc.wait_for_everyone()


def peft_saver(adapter_name: str, card: str) -> SaveFn:
    """A save function writing adapter ``adapter_name`` of a PeftModel as a standalone PEFT
    directory (safetensors + adapter_config.json) with ``card`` as its README.md. The tensors
    come from the caller (whole, even when the model is sharded)."""

    def save(model: Any, directory: Path, tensors: dict[str, Tensor]) -> None:
        staging = directory.with_name(f"{directory.name}.peft")
        if staging.exists():
            shutil.rmtree(staging)
        model.save_pretrained(str(staging), selected_adapters=[adapter_name], state_dict=tensors)
        # PEFT puts every adapter but "default" in a sub-directory named after it.
        src = staging if adapter_name == "default" else staging / adapter_name
        src.rename(directory)
        if staging.exists():
            shutil.rmtree(staging)
        (directory / "README.md").write_text(card, encoding="utf-8")

    return save
