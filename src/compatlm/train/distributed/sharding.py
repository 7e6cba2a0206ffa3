"""Distributed set-up for training: the Accelerator, and what the loop needs to know about
sharded parameters.

Under ``accelerate launch`` with FSDP2 (``fsdp_version: 2``) every parameter of the student's
model becomes a DTensor holding this process's shard of the weight (under DeepSpeed ZeRO-3, a
parameter with a ``ds_tensor`` partition; its specifics are in :mod:`compatlm.train.distributed.zero`); a
forward pass all-gathers each layer's weights and is therefore a collective that every process
must enter. This module owns the few places where that differs from data-parallel training:

- :func:`make_accelerator` / :func:`check_distributed` — the Accelerator for the run; the loop
  supports one process, DDP, FSDP2 and DeepSpeed ZeRO 0–3, and refuses FSDP1 in one line;
  :func:`runtime_for` — the runtime settings with this process's device;
- :func:`full_tensors` / :func:`load_full` — trainable tensors as whole CPU tensors (for the
  adapter and the checkpoint) and back into (maybe FSDP2-sharded) parameters (a DeepSpeed
  checkpoint is restored by the engine instead);
- :func:`optimizer_state` / :func:`load_optimizer_state` — the optimiser state keyed by
  parameter name with whole tensors, so a checkpoint does not depend on how the run was sharded
  (an FSDP2 run can be resumed on one process and vice versa);
- :func:`local` — a parameter's local shard (the frozen-weights checksum reads shards).

Every function here that touches a DTensor is collective: all processes call it, in the same
order, or the run hangs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.train.distributed import zero

if TYPE_CHECKING:
    from accelerate import Accelerator


def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed support
        return None
    return DTensor


def is_sharded(acc: Accelerator) -> bool:
    """Whether ``acc`` shards parameters (FSDP2, ZeRO-3): forwards are then collectives."""
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.DEEPSPEED:
        return zero.zero_stage(acc) == 3
    return acc.distributed_type == DistributedType.FSDP


def make_accelerator(runtime: RuntimeConfig) -> Accelerator:
    """An Accelerator for ``runtime.device`` (``cpu`` forces CPU even where CUDA exists).

    On a machine without CUDA, ``auto`` means CPU too: accelerate only sets up multi-process CPU
    training (gloo) when told it runs on CPU, and would otherwise run each launched process alone.
    """
    from accelerate import Accelerator

    cpu = runtime.device == "cpu" or (runtime.device == "auto" and not torch.cuda.is_available())
    acc = Accelerator(cpu=cpu)
    check_distributed(acc)
    return acc


def runtime_for(acc: Accelerator, runtime: RuntimeConfig) -> RuntimeConfig:
    """The runtime with this process's device (each process of a multi-GPU run has its own)."""
    device = acc.device
    # Multi-process CPU runs report "cpu:0"; the index means nothing on CPU, and "cpu" is the
    # name every device check accepts.
    name = "cpu" if device.type == "cpu" else str(device)
    return runtime.model_copy(update={"device": name})


def check_distributed(acc: Accelerator) -> None:
    """Refuse the accelerate set-ups the loop does not support (FSDP1), naming the fix."""
    from accelerate.utils import DistributedType

    kind = acc.distributed_type
    if kind == DistributedType.FSDP and getattr(acc.state.fsdp_plugin, "fsdp_version", 1) != 2:
        raise CompatlmError(
            "accelerate is configured for FSDP version 1; compatlm training needs FSDP2:"
            " set fsdp_version: 2 in the accelerate config (or pass --fsdp_version 2)"
        )


def reshard(model: torch.nn.Module) -> None:
    """Put a sharded model's parameters back into shards after a forward without backward.

    FSDP2 keeps the root module's weights gathered after its forward (the backward would need
    them at once); after a no-grad pass (validation) nothing reshards them, and until the next
    forward ``model.parameters()`` would then be whole tensors the optimiser does not hold.
    """
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def local(t: Tensor) -> Tensor:
    """This process's part of ``t`` (``t`` itself unless it is a DTensor or ZeRO-3 partitioned)."""
    if zero.is_partitioned(t):
        return t.ds_tensor
    dtensor = _dtensor_type()
    return t.to_local() if dtensor is not None and isinstance(t, dtensor) else t


def full_tensors(named: dict[str, Tensor]) -> dict[str, Tensor]:
    """Whole, contiguous CPU copies of ``named`` (collective if any tensor is sharded)."""
    dtensor = _dtensor_type()
    out = {}
    with zero.gathered(list(named.values())):
        for name, t in named.items():
            whole = t.full_tensor() if dtensor is not None and isinstance(t, dtensor) else t
            out[name] = whole.detach().to("cpu", copy=True).contiguous()
    return out


def load_full(params: dict[str, Tensor], saved: dict[str, Tensor]) -> None:
    """Copy whole tensors ``saved`` into ``params``; a DTensor parameter takes its own shard.

    Every process holds the whole tensor, so the shard is cut locally (no communication).
    """
    from torch.distributed.tensor import distribute_tensor

    dtensor = _dtensor_type()
    with torch.no_grad():
        for name, p in params.items():
            value = saved[name]
            if dtensor is not None and isinstance(p, dtensor):
                value = value.to(p.device, p.dtype)
                shard = distribute_tensor(value, p.device_mesh, p.placements, src_data_rank=None)
                p.to_local().copy_(shard.to_local())
            else:
                p.copy_(value.to(p.device, p.dtype))


def _inner(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    # accelerate wraps the optimiser; torch's state-dict helpers want the torch optimiser.
    return getattr(optimizer, "optimizer", optimizer)


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser state keyed by parameter name, whole tensors on CPU (collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, _inner(optimizer), options=options)


def load_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Restore :func:`optimizer_state` output; every process passes the whole state."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    groups = state.get("param_groups") or [{}]
    if any(isinstance(p, int) for p in groups[0].get("params", [])):
        # Written by compatlm before checkpoints keyed the state by name: torch's own layout.
        _inner(optimizer).load_state_dict(state)
        return

    options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(model, _inner(optimizer), state, options=options)
