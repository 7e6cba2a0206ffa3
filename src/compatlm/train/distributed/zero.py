"""What the training loop needs to know about DeepSpeed ZeRO (under ``accelerate launch``).

DeepSpeed's engine owns parts of the step that compatlm's loop owns in every other set-up, so
this module adapts the two to each other:

- :func:`unwrap_model` — the prepared model's inner module, DeepSpeed imported only when used;
- :func:`configure` — fills the DeepSpeed config from compatlm's settings before ``prepare``:
  one micro-batch per engine step (compatlm accumulates gradients itself and tells the engine
  where a window ends), gradient clipping at ``optim.max_grad_norm``; refuses a config that
  would fight the loop (its own optimiser, scheduler or accumulation);
- :func:`backward` — the engine's backward with the accumulation boundary set by the loop;
- :func:`gathered` — ZeRO-3 keeps only a partition of each parameter on a process; the
  context gathers whole parameters (collective) to save them;
- :func:`whole_models` — frozen teachers are loaded whole, outside ZeRO-3's partitioning;
- :func:`save_engine` / :func:`load_engine` — the optimiser's partitions and fp32 master
  weights live inside the engine, so a checkpoint stores the engine's own files (frozen
  weights excluded) next to compatlm's name-keyed tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from compatlm.errors import CompatlmError

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

ENGINE_DIR = "deepspeed"
_TAG = "engine"


def is_deepspeed(acc: Accelerator) -> bool:
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.DEEPSPEED


def unwrap_model(acc: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """``acc.unwrap_model(model)`` that imports DeepSpeed only for a DeepSpeed run.

    accelerate's unwrap imports DeepSpeed whenever it is installed (to test for its engine
    class); that import costs seconds and logs to stdout, so a single-process run such as
    ``compatlm demo`` would pay for and print it. Without DeepSpeed the only wrappers
    ``prepare`` adds are torch's: compilation and (Distributed)DataParallel; FSDP2 shards in
    place, FSDP1 is refused by the loop."""
    if is_deepspeed(acc):
        return acc.unwrap_model(model)
    from accelerate.utils import is_compiled_module
    from torch.nn import DataParallel
    from torch.nn.parallel import DistributedDataParallel

    if is_compiled_module(model):
        model = model._orig_mod
    while isinstance(model, DataParallel | DistributedDataParallel):
        model = model.module
    return model


def zero_stage(acc: Accelerator) -> int:
    return int(acc.state.deepspeed_plugin.zero_stage or 0)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def configure(acc: Accelerator, max_grad_norm: float | None) -> None:
    """Make the DeepSpeed config agree with the loop; refuse settings it would contradict."""
    config = acc.state.deepspeed_plugin.deepspeed_config
    for section in ("optimizer", "scheduler"):
        if section in config:
            raise CompatlmError(
                f"the DeepSpeed config has a '{section}' section; compatlm builds the optimiser"
                " (AdamW) and schedule from optim.* — remove the section"
            )
    gas = config.get("gradient_accumulation_steps", "auto")
    if _numeric(gas) and gas != 1:
        raise CompatlmError(
            f"the DeepSpeed config sets gradient_accumulation_steps: {gas}; set optim.grad_accum"
            " instead (compatlm accumulates and marks each window's end for the engine)"
        )
    clip = config.get("gradient_clipping", "auto")
    want = float(max_grad_norm or 0.0)
    if _numeric(clip) and clip not in (0, want):
        raise CompatlmError(
            f"the DeepSpeed config sets gradient_clipping: {clip} but optim.max_grad_norm is"
            f" {max_grad_norm}; set one value, in optim.max_grad_norm"
        )
    config["gradient_accumulation_steps"] = 1
    config["gradient_clipping"] = want
    if config.get("zero_allow_untested_optimizer") in (None, "auto"):
        config["zero_allow_untested_optimizer"] = True  # our AdamW is torch's own


def backward(acc: Accelerator, loss: Tensor, boundary: bool) -> None:
    """Engine backward; at a window's end (``boundary``) the engine reduces gradients, clips
    and steps the optimiser — the loop's ``optimizer.step()`` is then a no-op."""
    acc.deepspeed_engine_wrapped.backward(loss, sync_gradients=boundary)


def is_partitioned(t: Tensor) -> bool:
    """A ZeRO-3 parameter (its data is a placeholder; ``ds_tensor`` is this process's part)."""
    return hasattr(t, "ds_id")


def full_numel(t: Tensor) -> int:
    """Elements of the whole parameter (a ZeRO-3 placeholder holds none)."""
    return int(t.ds_numel) if is_partitioned(t) else t.numel()


def full_shape(t: Tensor) -> tuple[int, ...]:
    """The shape of the whole parameter (a ZeRO-3 placeholder's own shape is empty)."""
    return tuple(t.ds_shape) if is_partitioned(t) else tuple(t.shape)


@contextmanager
def gathered(params: Sequence[Tensor]) -> Iterator[None]:
    """Whole ZeRO-3 parameters inside the block, to read them (collective)."""
    parts = [p for p in params if is_partitioned(p)]
    if not parts:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(parts, modifier_rank=None):
        yield


@contextmanager
def whole_models(acc: Accelerator) -> Iterator[None]:
    """Models loaded inside the block are whole, not ZeRO-3 partitioned at load time.

    Under ZeRO-3, transformers builds every model inside ``deepspeed.zero.Init``, which leaves
    each weight as a placeholder that only a DeepSpeed engine gathers. The frozen teachers
    (teacher_old, and the models that build teacher caches) never enter an engine, so they are
    loaded whole; only the student's model is partitioned.
    """
    if not is_deepspeed(acc) or zero_stage(acc) != 3:
        yield
        return
    from transformers.integrations import (
        HfDeepSpeedConfig,
        deepspeed_config,
        unset_hf_deepspeed_config,
    )

    config = deepspeed_config()
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None:
            # transformers keeps only a weak reference: the plugin keeps the object alive.
            acc.state.deepspeed_plugin.dschf = HfDeepSpeedConfig(config)


def _engine(acc: Accelerator) -> Any:
    return acc.deepspeed_engine_wrapped.engine


def save_engine(acc: Accelerator, directory: Path) -> None:
    """The engine's optimiser partitions, fp32 master weights and trainable module weights
    (collective: every process writes its part into ``directory/deepspeed``)."""
    _engine(acc).save_checkpoint(
        str(directory / ENGINE_DIR), tag=_TAG, save_latest=False, exclude_frozen_parameters=True
    )


def load_engine(acc: Accelerator, directory: Path) -> None:
    """Restore what :func:`save_engine` wrote (the frozen weights come from the base)."""
    if not (directory / ENGINE_DIR / _TAG).is_dir():
        raise CompatlmError(
            f"{directory}: the checkpoint has no DeepSpeed engine state; it was written without"
            " DeepSpeed — resume it without DeepSpeed, or start again with --overwrite"
        )
    path, _ = _engine(acc).load_checkpoint(
        str(directory / ENGINE_DIR),
        tag=_TAG,
        load_module_strict=False,
        load_optimizer_states=True,
        load_lr_scheduler_states=False,
    )
    if path is None:
        raise CompatlmError(f"{directory / ENGINE_DIR}: DeepSpeed could not load its checkpoint")
