"""The sharding helpers on one process: which accelerate set-ups are accepted, how a DeepSpeed
config is made to agree with the loop, and that the name-keyed optimiser state round-trips
exactly (the two-process FSDP2 and ZeRO runs that use them are in test_train_multiprocess.py)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from compatlm.errors import CompatlmError
from compatlm.train.distributed.sharding import (
    check_distributed,
    full_tensors,
    is_sharded,
    load_full,
    load_optimizer_state,
    optimizer_state,
)
from compatlm.train.distributed.zero import configure, load_engine


def _acc(
    kind: DistributedType, fsdp_version: int | None = None, zero_stage: int = 0, **config
) -> SimpleNamespace:
    fsdp = None if fsdp_version is None else SimpleNamespace(fsdp_version=fsdp_version)
    ds = SimpleNamespace(zero_stage=zero_stage, deepspeed_config=dict(config))
    return SimpleNamespace(
        distributed_type=kind, state=SimpleNamespace(fsdp_plugin=fsdp, deepspeed_plugin=ds)
    )


@pytest.mark.parametrize(
    "acc, sharded",
    [
        (_acc(DistributedType.NO), False),
        (_acc(DistributedType.MULTI_GPU), False),
        (_acc(DistributedType.FSDP, 2), True),
        (_acc(DistributedType.DEEPSPEED, zero_stage=2), False),
        (_acc(DistributedType.DEEPSPEED, zero_stage=3), True),
    ],
)
def test_supported_setups_pass(acc, sharded):
    check_distributed(acc)
    assert is_sharded(acc) == sharded


def test_fsdp1_is_refused_with_the_fix():
    with pytest.raises(CompatlmError, match="FSDP version 1.*fsdp_version: 2"):
        check_distributed(_acc(DistributedType.FSDP, 1))


def test_deepspeed_config_follows_the_loop():
    acc = _acc(DistributedType.DEEPSPEED, zero_stage=2, gradient_accumulation_steps="auto")
    configure(acc, max_grad_norm=1.0)
    config = acc.state.deepspeed_plugin.deepspeed_config
    assert (config["gradient_accumulation_steps"], config["gradient_clipping"]) == (1, 1.0)
    acc = _acc(DistributedType.DEEPSPEED, gradient_clipping=0.5)
    configure(acc, max_grad_norm=0.5)  # the same value twice is fine
    configure(_acc(DistributedType.DEEPSPEED), max_grad_norm=None)


@pytest.mark.parametrize(
    "config, match",
    [
        ({"optimizer": {"type": "Adam"}}, "'optimizer' section"),
        ({"scheduler": {"type": "WarmupLR"}}, "'scheduler' section"),
        ({"gradient_accumulation_steps": 4}, "gradient_accumulation_steps: 4.*optim.grad_accum"),
        ({"gradient_clipping": 0.3}, "gradient_clipping: 0.3 but optim.max_grad_norm is 1.0"),
    ],
)
def test_deepspeed_config_that_fights_the_loop_is_refused(config, match):
    with pytest.raises(CompatlmError, match=match):
        configure(_acc(DistributedType.DEEPSPEED, **config), max_grad_norm=1.0)


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


def test_a_checkpoint_without_engine_files_is_refused_under_deepspeed(tmp_path):
    with pytest.raises(CompatlmError, match="no DeepSpeed engine state.*without DeepSpeed"):
        load_engine(_acc(DistributedType.DEEPSPEED, zero_stage=2), tmp_path)
