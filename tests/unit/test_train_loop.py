"""The shared training loop: resume, checkpoints, guard rails, accumulation, saved adapters."""

from __future__ import annotations

import json

import pytest
import torch

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.models import load_model
from compatlm.spec import ModelSpec
from compatlm.train import loop as loop_mod
from compatlm.train.checkpoint import frozen_checksum, peft_saver
from compatlm.train.config import LoraSettings, OptimSettings
from compatlm.train.data import IGNORE, Collator, Features
from compatlm.train.distributed.sharding import make_accelerator
from compatlm.train.forward import forward_logits
from compatlm.train.loop import run_training
from compatlm.train.losses import LossOutput
from compatlm.train.step import ce_step
from compatlm.train.student import lora_config

CPU = RuntimeConfig(device="cpu", progress=False)


def _model(family, dropout: float = 0.0, seed: int = 0):
    from peft import get_peft_model

    base = load_model(ModelSpec(str(family["new"])), trainable=True, runtime=CPU).model
    torch.manual_seed(seed)
    model = get_peft_model(base, lora_config(LoraSettings(r=2, alpha=4, dropout=dropout)))
    # peft starts lora_B at zero; a non-zero start makes every test see real LoRA outputs.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model


def _feats(n: int, length: int = 8, seed: int = 0, vocab: int = 300) -> list[Features]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(3, vocab, (length + 1,), generator=gen).tolist()
        labels = [IGNORE] * (length - 3) + ids[-3:]  # the last 3 tokens are the "answer"
        out.append(
            Features(f"e{i}", tuple(ids[:-1]), tuple(labels), (False,) * (length - 3) + (True,) * 3)
        )
    return out


def _train(family, out, feats, *, model=None, val=(), step_fn=ce_step, resume=False, **optim):
    model = model if model is not None else _model(family, optim.pop("dropout", 0.0))
    settings = OptimSettings(**{"lr": 5e-2, "epochs": 2, "batch_size": 2, "seed": 1, **optim})
    result = run_training(
        accelerator=make_accelerator(CPU),
        model=model,
        train_feats=feats,
        val_feats=list(val),
        collate=Collator(0, [f.example_id for f in [*feats, *val]]),
        step_fn=step_fn,
        save_adapter=peft_saver("default", "# test\n"),
        optim=settings,
        out=out,
        resume=resume,
        progress=False,
    )
    return model, result


def _adapter(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter" / "adapter_model.safetensors"))


def test_resume_equals_uninterrupted(tiny_family, tmp_path, monkeypatch):
    feats = _feats(6)
    _train(tiny_family, tmp_path / "a", feats, dropout=0.2, checkpoint_every=2)

    def interrupt(step: int) -> None:
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop_mod, "_on_step_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_family, tmp_path / "b", feats, dropout=0.2, checkpoint_every=2)
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert (state["global_step"], state["epoch"], state["batches_done"]) == (2, 0, 2)
    monkeypatch.setattr(loop_mod, "_on_step_end", lambda step: None)
    # A fresh model with another initialisation: everything must come from the checkpoint.
    fresh = _model(tiny_family, dropout=0.2, seed=99)
    _, result = _train(
        tiny_family, tmp_path / "b", feats, model=fresh, resume=True, checkpoint_every=2
    )
    assert result.global_step == 6
    a, b = _adapter(tmp_path / "a"), _adapter(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_deepspeed_checkpoint_is_refused_without_deepspeed(tiny_family, tmp_path):
    feats = _feats(4)
    _train(tiny_family, tmp_path, feats, epochs=1)
    trainer = tmp_path / "checkpoint" / "trainer.pt"
    saved = torch.load(trainer, weights_only=True)
    torch.save({**saved, "optimizer": None}, trainer)  # as written under DeepSpeed
    with pytest.raises(CompatlmError, match="written under DeepSpeed.*resume it under DeepSpeed"):
        _train(tiny_family, tmp_path, feats, epochs=2, resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_family, tmp_path):
    calls = {"n": 0}

    def flaky(model, batch) -> LossOutput:
        out = ce_step(model, batch)
        calls["n"] += 1
        if calls["n"] == 4:
            out.loss = out.loss * float("nan")
        return out

    with pytest.raises(
        CompatlmError, match=r"non-finite loss \(nan\) at epoch 2, optimiser step 4"
    ):
        _train(tiny_family, tmp_path, _feats(6), step_fn=flaky, checkpoint_every=1)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["global_step"] == 3
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()  # epoch 1's adapter


def test_trainable_changed_frozen_unchanged_and_reload_identical(tiny_family, tmp_path):
    model = _model(tiny_family)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    checksum = frozen_checksum(model)
    _train(tiny_family, tmp_path, _feats(4), model=model)
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[name]), f"{name} did not train"
        else:
            assert torch.equal(p, before[name]), f"{name} moved"
    assert torch.equal(checksum, frozen_checksum(model))
    # Without validation the last epoch is kept: the saved adapter IS the in-memory model.
    spec = ModelSpec(str(tiny_family["new"]), adapter=str(tmp_path / "adapter"))
    reloaded = load_model(spec, runtime=CPU).model
    batch = Collator(0, ["e0", "e1"])(_feats(2, seed=5))
    model.eval()
    with torch.no_grad():
        assert torch.equal(forward_logits(model, batch), forward_logits(reloaded, batch))


def test_grad_accumulation_matches_a_larger_batch(tiny_family, tmp_path):
    feats = _feats(8)
    _train(tiny_family, tmp_path / "big", feats, batch_size=4, grad_accum=1, epochs=1)
    _train(tiny_family, tmp_path / "acc", feats, batch_size=2, grad_accum=2, epochs=1)
    a, b = _adapter(tmp_path / "big"), _adapter(tmp_path / "acc")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


def test_best_epoch_is_the_lowest_validation_ce(tiny_family, tmp_path):
    _, result = _train(tiny_family, tmp_path, _feats(4), val=_feats(2, seed=7), epochs=3, lr=0.3)
    rows = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    best = min(rows, key=lambda r: r["val_ce"])
    assert result.best_epoch == best["epoch"]
    assert result.best_metric == best["val_ce"]
    assert rows[-1]["lr"] == 0.0  # linear decay ends at zero


def test_refusals(tiny_family, tmp_path):
    with pytest.raises(CompatlmError, match="training split is empty"):
        _train(tiny_family, tmp_path / "a", [])
    masked = [Features("m", (5, 6, 7), (IGNORE,) * 3, (False,) * 3)]
    with pytest.raises(CompatlmError, match="every label of the training split is masked"):
        _train(tiny_family, tmp_path / "b", masked)
    frozen = _model(tiny_family)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(CompatlmError, match="no trainable parameters"):
        _train(tiny_family, tmp_path / "c", _feats(2), model=frozen)
