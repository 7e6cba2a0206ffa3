"""The sharding helpers on one process: which accelerate set-ups are accepted, and that the
name-keyed optimiser state round-trips exactly (the two-process FSDP2 runs that use them are in
test_train_multiprocess.py)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from compatlm.errors import CompatlmError
from compatlm.train.sharding import (
    check_distributed,
    full_tensors,
    is_sharded,
    load_full,
    load_optimizer_state,
    optimizer_state,
)


def _acc(kind: DistributedType, fsdp_version: int | None = None) -> SimpleNamespace:
    plugin = None if fsdp_version is None else SimpleNamespace(fsdp_version=fsdp_version)
    return SimpleNamespace(distributed_type=kind, state=SimpleNamespace(fsdp_plugin=plugin))


@pytest.mark.parametrize(
    "kind, version",
    [(DistributedType.NO, None), (DistributedType.MULTI_GPU, None), (DistributedType.FSDP, 2)],
)
def test_supported_setups_pass(kind, version):
    acc = _acc(kind, version)
    check_distributed(acc)
    assert is_sharded(acc) == (kind == DistributedType.FSDP)


def test_fsdp1_and_deepspeed_are_refused_with_the_fix():
    with pytest.raises(CompatlmError, match="FSDP version 1.*fsdp_version: 2"):
        check_distributed(_acc(DistributedType.FSDP, 1))
    with pytest.raises(CompatlmError, match="DeepSpeed.*DDP and FSDP2.*docs/multi_gpu.md"):
        check_distributed(_acc(DistributedType.DEEPSPEED))


def _trained() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].bias.requires_grad_(False)  # a frozen tensor the optimiser does not hold
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=0.1, weight_decay=0.01)
    for _ in range(2):
        model(torch.randn(5, 4)).square().sum().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def _fresh(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    other = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    other.load_state_dict(model.state_dict())
    other[0].bias.requires_grad_(False)
    params = [p for p in other.parameters() if p.requires_grad]
    return other, torch.optim.AdamW(params, lr=0.5)


def _states(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for s in opt.state.values() for v in s.values()]


@pytest.mark.parametrize("legacy", [False, True], ids=["by_name", "torch_layout"])
def test_optimizer_state_round_trips_and_training_continues_identically(legacy):
    model, opt = _trained()
    state = opt.state_dict() if legacy else optimizer_state(model, opt)
    if not legacy:
        assert set(state["state"]) == {"0.weight", "1.weight", "1.bias"}
    other, opt2 = _fresh(model)
    # A copy, as a checkpoint file gives: loading keeps the given tensors, not copies of them.
    load_optimizer_state(other, opt2, copy.deepcopy(state))
    assert opt2.param_groups[0]["lr"] == 0.1
    for a, b in zip(_states(opt), _states(opt2), strict=True):
        assert torch.equal(a, b)
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (other, opt2)):
        m(x).square().sum().backward()
        o.step()
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)


def test_full_tensors_are_copies_and_load_back():
    model, _ = _trained()
    named = dict(model.named_parameters())
    saved = full_tensors(named)
    with torch.no_grad():
        named["0.weight"].add_(1.0)
    assert not torch.equal(saved["0.weight"], named["0.weight"])
    load_full(named, saved)
    assert all(torch.equal(saved[n], p) for n, p in named.items())
