"""Mechanism diagnostics of compatibility training: the token counters on hand-built batches,
sum-then-divide rates and the verdict, the records a run writes, and their resumability."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from compatlm.config import RuntimeConfig, build_config
from compatlm.errors import CompatlmError
from compatlm.train import loop as loop_mod
from compatlm.train.config import TrainCompatConfig
from compatlm.train.data import IGNORE
from compatlm.train.diagnostics import (
    build_diagnostics,
    chain_hash,
    load_diagnostics,
    token_counts,
    warmup_warnings,
)
from compatlm.train.masks import OldStats
from compatlm.train.recipes.compat import train_compat
from compatlm.train.step import compat_step
from compatlm.train.teachers import Teachers

IG = IGNORE
V = 5
# Two rows, 5 valid tokens. Student argmax vs label: right, wrong, wrong | right, wrong.
LABELS = torch.tensor([[1, 2, 3, IG], [4, 0, IG, IG]])
STUDENT_ARGMAX = torch.tensor([[1, 0, 0, 2], [4, 3, 1, 1]])
# teacher_old right at (0,0), (0,1), (1,1): of those the student is wrong at (0,1), (1,1).
OLD_ARGMAX = torch.tensor([[1, 2, 1, 0], [0, 0, 0, 0]])
# teacher_new right at (0,2), (1,0): the student is wrong at (0,2) only.
NEW_ARGMAX = torch.tensor([[0, 0, 3, 0], [4, 4, 0, 0]])


def _logits(argmax: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(argmax, V).float() * 4.0  # (B, T, V)


def _cfg(**kw) -> TrainCompatConfig:
    return build_config(
        TrainCompatConfig, {"old": "o+oa", "new": "n+na", "task": {"name": "t", "path": "x"}, **kw}
    )


def test_token_counts_on_a_hand_built_batch():
    counts = token_counts(
        _logits(STUDENT_ARGMAX), LABELS, old_argmax=OLD_ARGMAX, new_argmax=NEW_ARGMAX
    )
    assert counts == {
        "student_wrong": 3,
        "student_wrong_old_right": 2,
        "student_wrong_new_right": 1,
        "old_observed": 5,
        "new_observed": 5,
    }
    alone = token_counts(_logits(STUDENT_ARGMAX), LABELS)
    assert alone == {
        "student_wrong": 3,
        "student_wrong_old_right": 0,
        "student_wrong_new_right": 0,
        "old_observed": 0,
        "new_observed": 0,
    }


class _FixedModel:
    """A stand-in student: returns fixed logits, cut to the requested positions."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def __call__(self, input_ids, attention_mask, use_cache, logits_to_keep=None):
        out = self.logits if logits_to_keep is None else self.logits[:, logits_to_keep]
        return SimpleNamespace(logits=out)


def _batch() -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.zeros_like(LABELS),
        "attention_mask": torch.ones_like(LABELS),
        "labels": LABELS,
        "answer_mask": LABELS != IG,
        "index": torch.tensor([0, 1]),
    }


def _cols(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    return x if keep is None else x[:, keep]


def test_compat_step_reports_the_counts_and_the_mask_share():
    def new_teacher(batch, keep=None):
        return _cols(_logits(NEW_ARGMAX), keep), None

    def old_teacher(batch, keep=None):
        logits = _cols(_logits(OLD_ARGMAX), keep)
        return logits, OldStats.from_logits(logits, _cols(batch["labels"], keep))

    student = _FixedModel(_logits(STUDENT_ARGMAX))
    out = compat_step(student, _batch(), cfg=_cfg(), teachers=Teachers(new_teacher, old_teacher))
    # student_wrong: teacher_old teaches exactly the tokens the student gets wrong.
    assert (out.n_tokens, out.n_old_tokens) == (5, 3)
    assert out.counts["student_wrong"] == 3
    assert out.counts["student_wrong_old_right"] == 2
    assert out.counts["student_wrong_new_right"] == 1

    # kd_new: teacher_old is never run, nothing follows it, its counts are unobserved.
    only_new = Teachers(new=new_teacher)
    kd_new = compat_step(student, _batch(), cfg=_cfg(mask="new_only"), teachers=only_new)
    assert (kd_new.n_tokens, kd_new.n_old_tokens) == (5, 0)
    assert kd_new.counts["old_observed"] == 0 and kd_new.counts["new_observed"] == 5
    assert float(kd_new.kd) > 0  # the student still distils from teacher_new


def _row(epoch: int, n: int, old: int, wrong: int, wrong_old: int, kd: float, ce: float) -> dict:
    counts = {
        "loss_tokens": n,
        "old_tokens": old,
        "student_wrong": wrong,
        "student_wrong_old_right": wrong_old,
        "student_wrong_new_right": 0,
        "old_observed": n,
        "new_observed": n,
    }
    return {"epoch": epoch, "step": 2 * epoch, "train_kd": kd, "train_ce": ce, "counts": counts}


def test_rates_are_summed_then_divided_and_the_verdict_names_the_share():
    history = [_row(1, 100, 3, 10, 4, 0.5, 2.0), _row(2, 300, 3, 30, 2, 0.1, 1.0)]
    diag = build_diagnostics(history, _cfg())
    total = diag["total"]
    # 6 / 400 = 1.5% (the mean of the per-epoch shares would be 2%).
    assert total["old_share"]["numerator"] == 6 and total["old_share"]["denominator"] == 400
    assert total["old_share"]["value"] == pytest.approx(0.015)
    assert total["student_wrong_old_right"]["value"] == pytest.approx(6 / 400)
    assert total["mean_kd"] == pytest.approx((50 + 30) / 400)
    assert total["mean_ce"] == pytest.approx((200 + 300) / 400)
    assert [e["old_share"]["value"] for e in diag["epochs"]] == pytest.approx([0.03, 0.01])
    assert diag["verdict"] == (
        "MUSCLE can barely differ from new here: only 1.5% of loss tokens follow teacher_old"
    )
    assert diag["objective"] == "muscle" and diag["settings"]["mask"] == "student_wrong"

    many = build_diagnostics([_row(1, 100, 10, 20, 5, 0.5, 2.0)], _cfg())
    assert many["verdict"] == "10.0% of loss tokens follow teacher_old (mask student_wrong)"


def test_unobserved_teachers_and_empty_epochs_are_null_with_a_reason():
    row = _row(1, 50, 0, 5, 0, 0.0, 1.5)
    row["counts"].update(old_observed=0, new_observed=0)
    diag = build_diagnostics([row], _cfg(kd_weight=0.0))
    total = diag["total"]
    assert total["student_wrong"]["value"] == pytest.approx(0.1)
    for key in ("student_wrong_old_right", "student_wrong_new_right"):
        assert total[key]["value"] is None and "was not run" in total[key]["reason"]
    assert total["old_share"]["value"] == 0.0  # nothing followed teacher_old: a true zero
    assert diag["objective"] == "continue_ce" and diag["verdict"].startswith("control:")

    empty = build_diagnostics([_row(1, 0, 0, 0, 0, 0.0, 0.0)], _cfg())
    assert empty["total"]["old_share"]["value"] is None
    assert empty["verdict"] == "undefined: no loss tokens were trained"


def test_load_diagnostics(tmp_path):
    assert load_diagnostics(tmp_path) is None
    (tmp_path / "diagnostics.json").write_text("{not json")
    with pytest.raises(CompatlmError, match=r"diagnostics.json: malformed JSON") as err:
        load_diagnostics(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "diagnostics.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(CompatlmError, match="schema_version 99, expected 1"):
        load_diagnostics(tmp_path)


def test_fingerprints_and_warmup_warning():
    assert chain_hash(chain_hash("", [0, 1]), [2, 3]) != chain_hash(chain_hash("", [2, 3]), [0, 1])
    optim = SimpleNamespace(warmup_steps=500, lr=1e-4)
    (msg,) = warmup_warnings(optim, 12)
    assert msg.startswith("optim.warmup_steps=500 >= the run's 12 optimiser steps")
    assert "peaks at 2.2% of optim.lr=0.0001" in msg
    assert warmup_warnings(SimpleNamespace(warmup_steps=5, lr=1e-4), 12) == []
    assert warmup_warnings(SimpleNamespace(warmup_steps=0, lr=1e-4), 1) == []


# --------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mc.jsonl"
    rows = [
        {
            "id": f"q{i}",
            "context": f"Question: what color is item {i}? Answer:",
            "choices": ["blue", "red"],
            "label": i % 2,
        }
        for i in range(8)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _run_cfg(fam, data, **kw) -> TrainCompatConfig:
    raw = {
        "old": f"{fam['old']}+{fam['old_adapter']}",
        "new": f"{fam['new']}+{fam['new_adapter']}",
        "task": {"name": "mc", "path": data},
        "optim": {"epochs": 2, "batch_size": 2, "grad_accum": 2, "lr": 0.05, "seed": 4},
        "runtime": {"device": "cpu", "progress": False},
        **kw,
    }
    return build_config(TrainCompatConfig, raw)


def test_a_compat_run_writes_consistent_diagnostics(tiny_family, data, tmp_path):
    from compatlm.models import load_tokenizer
    from compatlm.spec import ModelSpec
    from compatlm.train.data import encode_task, split_train_val

    cfg = _run_cfg(tiny_family, data)
    train_compat(cfg, tmp_path)
    diag = load_diagnostics(tmp_path)
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    tok = load_tokenizer(ModelSpec.parse(cfg.new), RuntimeConfig(device="cpu"))
    _, feats = encode_task(cfg.task, tok, cfg.data, mask_prompt=cfg.mask_prompt)
    train, _ = split_train_val(feats, cfg.val_fraction, cfg.optim.seed)
    per_epoch = sum(f.n_labels for f in train)
    assert [e["loss_tokens"] for e in diag["epochs"]] == [per_epoch, per_epoch]
    for e, row in zip(diag["epochs"], log, strict=True):
        # The student_wrong mask sends exactly the tokens the student gets wrong to teacher_old.
        assert e["old_share"]["numerator"] == e["student_wrong"]["numerator"]
        assert e["old_share"]["value"] == pytest.approx(row["old_token_fraction"])
        assert e["mean_kd"] == pytest.approx(row["train_kd"])
        assert e["mean_ce"] == pytest.approx(row["train_ce"]) and e["mean_ce"] > 0
        assert e["student_wrong_old_right"]["denominator"] == per_epoch
        assert e["student_wrong_old_right"]["numerator"] <= e["student_wrong"]["numerator"]
    assert diag["total"]["loss_tokens"] == 2 * per_epoch
    budget = json.loads((tmp_path / "budget.json").read_text())
    # 6 training rows at batch 2 = 3 micro-batches = 2 optimiser steps per epoch.
    assert budget["optimizer_steps"] == budget["planned_optimizer_steps"] == 4
    assert budget["train_tokens"] == 2 * per_epoch and len(budget["lr_schedule"]["per_step"]) == 4
    assert "diagnostics:" in (tmp_path / "adapter" / "README.md").read_text()


def test_interrupted_run_resumes_to_the_same_records(tiny_family, data, tmp_path, monkeypatch):
    cfg = _run_cfg(tiny_family, data, optim={"epochs": 2, "batch_size": 2, "seed": 4, "lr": 0.05})
    train_compat(cfg, tmp_path / "a")

    def interrupt(step: int) -> None:
        if step == 2:  # mid-epoch: the first epoch has 3 steps
            raise KeyboardInterrupt

    cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"checkpoint_every": 1})})
    monkeypatch.setattr(loop_mod, "_on_step_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_compat(cfg, tmp_path / "b")
    monkeypatch.setattr(loop_mod, "_on_step_end", lambda step: None)
    train_compat(cfg, tmp_path / "b", resume=True)
    budgets = [json.loads((tmp_path / r / "budget.json").read_text()) for r in "ab"]
    for key in ("optimizer_steps", "train_tokens", "batch_order_fingerprint"):
        assert budgets[0][key] == budgets[1][key], key
    assert budgets[0]["lr_schedule"]["per_step"] == budgets[1]["lr_schedule"]["per_step"]
    a, b = (load_diagnostics(tmp_path / r) for r in "ab")
    assert a["epochs"] == b["epochs"]


@pytest.mark.slow
def test_counts_are_summed_over_processes(tiny_family, tmp_path):
    """Two data-parallel processes at half the batch: the same global batches, so the epoch's
    counts must equal one process's (each process counts its half; the loop sums them)."""
    import os
    import subprocess

    from compatlm.cli import main
    from cpu_launch import command

    # Single tokens of the tiny tokenizer: equal token counts per row, so the mean of the two
    # processes' token means (what data parallelism averages) is the global token mean.
    digits = (1, 3, 4, 7)
    rows = [
        {
            "id": f"g{k}",
            "prompt": f"Alice has {digits[k % 4]} apples.",
            "reference": str(digits[(k // 4 + k) % 4]),
        }
        for k in range(10)
    ]
    data = tmp_path / "gen.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for bs in (4, 2):
        (tmp_path / f"bs{bs}.yaml").write_text(
            f"old: {tiny_family['old']}+{tiny_family['old_adapter']}\n"
            f"new: {tiny_family['new']}+{tiny_family['new_adapter']}\n"
            f"task: {{name: apples, path: {data}}}\nkd_weight: 0.5\n"
            f"optim: {{epochs: 2, batch_size: {bs}, lr: 0.02, seed: 3}}\n"
            "runtime: {device: cpu, progress: false}\n"
        )
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", "compat", str(tmp_path / "bs4.yaml"), "--out", str(one)]) == 0
    argv = ["train", "compat", str(tmp_path / "bs2.yaml"), "--out", str(two)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = command(["--multi_gpu"], argv, port=29533, hooks=False)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = load_diagnostics(one), load_diagnostics(two)
    assert json.loads((two / "budget.json").read_text())["num_processes"] == 2
    for ea, eb in zip(a["epochs"], b["epochs"], strict=True):
        assert ea["loss_tokens"] == eb["loss_tokens"] > 0
        for key in ("old_share", "student_wrong", "student_wrong_old_right"):
            assert ea[key]["denominator"] == eb[key]["denominator"], key
            assert abs(ea[key]["numerator"] - eb[key]["numerator"]) <= 1, key  # argmax ties
        assert eb["mean_kd"] == pytest.approx(ea["mean_kd"], rel=1e-4)


def test_diagnostics_are_found_from_a_candidate_spec(tmp_path):
    from compatlm.train.diagnostics import diagnostics_for_spec

    (tmp_path / "adapter").mkdir()
    doc = build_diagnostics([_row(1, 10, 1, 2, 1, 0.1, 1.0)], _cfg())
    (tmp_path / "diagnostics.json").write_text(json.dumps(doc))
    assert diagnostics_for_spec(f"base+{tmp_path / 'adapter'}") == doc
    assert diagnostics_for_spec("base") is None
    assert diagnostics_for_spec(f"base+{tmp_path / 'other' / 'adapter'}") is None
