"""MUSCLE compatibility training: λ = 0 is plain fine-tuning, gradients reach the student only,
the teacher cache at k = V trains like the live teacher, the vocabulary guard, PCT weights."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from safetensors.torch import load_file

from compatlm.config import RuntimeConfig, build_config
from compatlm.errors import CompatlmError
from compatlm.models import load_model
from compatlm.spec import ModelSpec
from compatlm.train.checkpoint import frozen_checksum, peft_saver
from compatlm.train.config import OptimSettings, TrainCompatConfig, TrainTaskConfig
from compatlm.train.data import Collator, Features, encode_task, split_train_val
from compatlm.train.distributed.sharding import make_accelerator
from compatlm.train.loop import StepFn, run_training
from compatlm.train.recipes.compat import train_compat
from compatlm.train.recipes.task import train_task
from compatlm.train.step import compat_step, old_correct
from compatlm.train.student import load_student
from compatlm.train.teachers import AdapterTeacher, LiveOldTeacher, TeacherFn, Teachers
from helpers import make_tokenizer, save_base, save_lora

CPU = {"device": "cpu", "progress": False}
OPTIM = {"epochs": 2, "batch_size": 3, "lr": 0.05, "seed": 4}


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


def _specs(fam):
    return (
        f"{fam['old']}+{fam['old_adapter']}",
        f"{fam['new']}+{fam['new_adapter']}",
    )


def _compat_cfg(fam, data, **kw) -> TrainCompatConfig:
    old, new = _specs(fam)
    base = {
        "old": old,
        "new": new,
        "task": {"name": "mc", "path": data},
        "optim": OPTIM,
        "runtime": CPU,
    }
    return build_config(TrainCompatConfig, {**base, **kw})


def _features(cfg: TrainCompatConfig, tok) -> list[Features]:
    """Every example a compat run with ``cfg`` trains and validates on."""
    return encode_task(cfg.task, tok, cfg.data, mask_prompt=cfg.mask_prompt)[1]


def _step(cfg: TrainCompatConfig, new: TeacherFn, old: TeacherFn | None) -> StepFn:
    return partial(compat_step, cfg=cfg, teachers=Teachers(new=new, old=old))


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


def test_zero_kd_weight_is_plain_fine_tuning(tiny_family, data, tmp_path):
    _, new = _specs(tiny_family)
    task_cfg = build_config(
        TrainTaskConfig,
        {"base": new, "task": {"name": "mc", "path": data}, "optim": OPTIM, "runtime": CPU},
    )
    a = train_task(task_cfg, tmp_path / "task")
    b = train_compat(_compat_cfg(tiny_family, data, kd_weight=0.0), tmp_path / "compat")
    wa, wb = _weights(a.parent), _weights(b.parent)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    start = load_file(str(tiny_family["new_adapter"] / "adapter_model.safetensors"))
    assert any(not torch.equal(start[k], wb[k]) for k in start)  # it did train


def test_gradient_reaches_the_student_only(tiny_family, data, tmp_path):
    old, new = (ModelSpec.parse(s) for s in _specs(tiny_family))
    runtime = RuntimeConfig(**CPU)
    cfg = _compat_cfg(tiny_family, data, kd_weight=0.5, focal={"alpha": 1.0, "beta": 1.0})
    model, tok = load_student(new, runtime)
    feats = _features(cfg, tok)
    step = _step(cfg, AdapterTeacher(model), LiveOldTeacher(load_model(old).model))
    batch = Collator(tok.pad_token_id, [f.example_id for f in feats])(feats[:4])
    out = step(model, batch)
    out.loss.backward()
    assert out.n_old_tokens > 0 and float(out.kd.detach()) > 0
    for name, p in model.named_parameters():
        if ".student." in name:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
        else:
            assert p.grad is None, name

    # A whole run: student moves, teacher_new and the base stay bit-identical.
    model, tok = load_student(new, runtime)
    teacher_before = {n: p.clone() for n, p in model.named_parameters() if ".teacher_new." in n}
    student_before = {n: p.clone() for n, p in model.named_parameters() if ".student." in n}
    checksum = frozen_checksum(model)
    train, val = split_train_val(feats, 0.25, 0)
    run_training(
        accelerator=make_accelerator(runtime),
        model=model,
        train_feats=train,
        val_feats=val,
        collate=Collator(tok.pad_token_id, [f.example_id for f in feats]),
        step_fn=_step(cfg, AdapterTeacher(model), LiveOldTeacher(load_model(old).model)),
        save_adapter=peft_saver("student", "# t\n"),
        optim=OptimSettings(**OPTIM),
        out=tmp_path,
        progress=False,
    )
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in teacher_before.items())
    assert all(not torch.equal(params[n], p) for n, p in student_before.items())
    assert torch.equal(checksum, frozen_checksum(model))
    assert all(p.requires_grad == (".student." in n) for n, p in params.items())


def test_caches_at_full_vocabulary_train_like_the_live_teachers(
    tiny_family, tiny_tokenizer, data, tmp_path
):
    v = len(tiny_tokenizer)
    live = train_compat(_compat_cfg(tiny_family, data), tmp_path / "live")
    runs = {
        "old": _compat_cfg(tiny_family, data, teacher_old="cache", topk=v),
        "both": _compat_cfg(tiny_family, data, teacher_old="cache", teacher_new="cache", topk=v),
    }
    wl = _weights(live.parent)
    kd_live = [json.loads(x)["train_kd"] for x in (tmp_path / "live" / "train_log.jsonl").open()]
    for name, cfg in runs.items():
        run = train_compat(cfg, tmp_path / name).parent
        assert (run / "teacher_cache" / "index.json").is_file()
        assert (run / "teacher_new_cache" / "index.json").is_file() == (name == "both")
        wc = _weights(run)
        # Not bit-equal: the cache's log-probs and "rest" bucket round differently from the
        # live log-softmax, and training amplifies that (seen up to 1.2e-4 relative, on AMD).
        for key in wl:
            torch.testing.assert_close(wl[key], wc[key], rtol=5e-4, atol=1e-5)
        kd = [json.loads(x)["train_kd"] for x in (run / "train_log.jsonl").open()]
        assert kd == pytest.approx(kd_live, rel=1e-4)


def test_tokenizer_mismatch_is_refused(tiny_family, data, tmp_path):
    other_tok = make_tokenizer(vocab_size=300)
    base = save_base(tmp_path / "other", other_tok, seed=5)
    adapter = save_lora(base, tmp_path / "other_adapter", seed=6)
    cfg = _compat_cfg(tiny_family, data, old=f"{base}+{adapter}")
    with pytest.raises(CompatlmError, match="token-level distillation needs a shared vocabulary"):
        train_compat(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # The refusal states the method's limitation (the paper's), not just a mismatch.
    with pytest.raises(CompatlmError, match=r"MUSCLE \(arXiv 2407\.09435\).*keep the tokenizer"):
        train_compat(cfg, tmp_path / "run")


def test_task_models_must_name_adapters(tiny_family, data, tmp_path):
    cfg = _compat_cfg(tiny_family, data, new=str(tiny_family["new"]))
    with pytest.raises(CompatlmError, match="new: .* names no adapter"):
        train_compat(cfg, tmp_path / "run")


def test_old_correct_needs_every_answer_token():
    ig = -100
    argmax = torch.tensor([[5, 6, 7], [5, 6, 8], [1, 2, 3], [4, 4, 4]])
    labels = torch.tensor([[ig, 6, 7], [ig, 6, 7], [9, 2, 3], [ig, ig, ig]])
    answer = torch.tensor([[0, 1, 1], [0, 1, 1], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)
    # Row 2: the prompt token (9 vs 1) is wrong but is not part of the answer.
    assert old_correct(argmax, labels, answer).tolist() == [True, False, True, False]


def test_focal_weights_scale_the_distillation_term(tiny_family, data):
    old, new = (ModelSpec.parse(s) for s in _specs(tiny_family))
    runtime = RuntimeConfig(**CPU)
    model, tok = load_student(new, runtime)
    old_teacher = LiveOldTeacher(load_model(old).model)
    plain = _compat_cfg(tiny_family, data)
    feats = _features(plain, tok)
    batch = Collator(tok.pad_token_id, [f.example_id for f in feats])(feats[:4])
    kd = {}
    for name, focal in (("none", None), ("double", {"alpha": 2.0, "beta": 0.0})):
        cfg = _compat_cfg(tiny_family, data, focal=focal)
        with torch.no_grad():
            kd[name] = float(_step(cfg, AdapterTeacher(model), old_teacher)(model, batch).kd)
    assert kd["double"] == pytest.approx(2 * kd["none"], rel=1e-6)


def test_teacher_new_is_the_new_task_model_and_the_switch_restores(tiny_family, data):
    new = ModelSpec.parse(_specs(tiny_family)[1])
    runtime = RuntimeConfig(**CPU)
    model, tok = load_student(new, runtime)
    with torch.no_grad():  # the student starts as a copy of the new adapter: perturb it
        for name, p in model.named_parameters():
            if ".student." in name and "lora_B" in name:
                p.add_(0.5)
    model.train()
    feats = _features(_compat_cfg(tiny_family, data), tok)
    batch = Collator(tok.pad_token_id, [f.example_id for f in feats])(feats[:3])
    reference = load_model(new, runtime=runtime).model
    with torch.no_grad():
        student_before = model(input_ids=batch["input_ids"]).logits
        expected = reference(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    got = AdapterTeacher(model).logits(batch)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert model.training
    with torch.no_grad():
        assert torch.equal(model(input_ids=batch["input_ids"]).logits, student_before)
    assert all(p.requires_grad == (".student." in n) for n, p in model.named_parameters())


@pytest.mark.parametrize("mask", ["student_wrong", "sequence_likelihood"])
def test_labelled_columns_only_changes_nothing_but_cost(tiny_family, data, mask, monkeypatch):
    """The step projects only positions with a label through the head (prompt masked here):
    loss and gradients equal those from full (B, T, V) logits."""
    import compatlm.train.step as step

    old, new = (ModelSpec.parse(s) for s in _specs(tiny_family))
    runtime = RuntimeConfig(**CPU)
    cfg = _compat_cfg(tiny_family, data, mask=mask, kd_weight=0.7, focal={"alpha": 1, "beta": 2})
    model, tok = load_student(new, runtime)
    old_teacher = LiveOldTeacher(load_model(old).model)
    feats = _features(cfg, tok)
    batch = Collator(tok.pad_token_id, [f.example_id for f in feats])(feats[:5])
    keep = step.labelled_columns(batch["labels"])
    assert keep is not None and 0 < len(keep) < batch["labels"].shape[1]  # the prompt is cut

    def run() -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = _step(cfg, AdapterTeacher(model), old_teacher)(model, batch)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return float(out.loss.detach()), grads

    loss_cols, grads_cols = run()
    monkeypatch.setattr(step, "labelled_columns", lambda labels: None)
    loss_full, grads_full = run()
    assert loss_cols == pytest.approx(loss_full, rel=1e-5)
    assert grads_cols.keys() == grads_full.keys() and grads_cols
    for name in grads_full:
        torch.testing.assert_close(grads_cols[name], grads_full[name], rtol=1e-4, atol=1e-7)


def test_mask_prompt_false_trains_on_the_whole_sequence_and_keys_the_cache(
    tiny_family, data, tmp_path
):
    """mask_prompt reaches the loss (more loss tokens) and the teacher cache: a cache built on
    answer tokens only is refused for a whole-sequence run, naming mask_prompt."""
    from compatlm.train.diagnostics import load_diagnostics

    answers = _compat_cfg(tiny_family, data, teacher_old="cache", optim={**OPTIM, "epochs": 1})
    train_compat(answers, tmp_path / "answers")
    whole = answers.model_copy(
        update={"mask_prompt": False, "cache_dir": str(tmp_path / "answers" / "teacher_cache")}
    )
    with pytest.raises(CompatlmError, match="other token ids .*mask_prompt"):
        train_compat(whole, tmp_path / "refused")
    train_compat(whole.model_copy(update={"cache_dir": None}), tmp_path / "whole")
    n = {
        run: load_diagnostics(tmp_path / run)["total"]["loss_tokens"]
        for run in ("answers", "whole")
    }
    _, tok = load_student(ModelSpec.parse(answers.new), RuntimeConfig(**CPU), with_teacher=False)
    feats = _features(whole, tok)
    train, _ = split_train_val(feats, whole.val_fraction, whole.optim.seed)
    assert n["whole"] == sum(len(f.input_ids) for f in train) > 3 * n["answers"]


def test_t_squared_scales_the_distillation_term(tiny_family, data):
    old, new = (ModelSpec.parse(s) for s in _specs(tiny_family))
    runtime = RuntimeConfig(**CPU)
    model, tok = load_student(new, runtime)
    old_teacher = LiveOldTeacher(load_model(old).model)
    feats = _features(_compat_cfg(tiny_family, data), tok)
    batch = Collator(tok.pad_token_id, [f.example_id for f in feats])(feats[:4])
    kd = {}
    for t2 in (False, True):
        cfg = _compat_cfg(tiny_family, data, t_squared=t2, temperature=3.0)
        with torch.no_grad():
            kd[t2] = float(_step(cfg, AdapterTeacher(model), old_teacher)(model, batch).kd)
    assert kd[False] > 0
    assert kd[True] == pytest.approx(9.0 * kd[False], rel=1e-6)


def test_kd_new_never_loads_teacher_old(tiny_family, data, tmp_path, monkeypatch):
    """mask new_only: the old base is neither loaded live nor cached."""
    import compatlm.train.teachers as teachers_mod

    def refuse(*args, **kwargs):
        raise AssertionError("teacher_old was built")

    monkeypatch.setattr(teachers_mod, "LiveOldTeacher", refuse)
    monkeypatch.setattr(teachers_mod, "build_teacher_cache", refuse)
    for teacher_old in ("live", "cache"):
        cfg = _compat_cfg(tiny_family, data, mask="new_only", teacher_old=teacher_old)
        train_compat(cfg, tmp_path / teacher_old)
        rows = [json.loads(x) for x in (tmp_path / teacher_old / "train_log.jsonl").open()]
        assert all(r["counts"]["old_tokens"] == 0 and r["train_kd"] > 0 for r in rows)


def test_fresh_student_starts_at_the_base_and_keeps_teacher_new(tiny_family, data):
    """student_init fresh: same LoRA shape, B zero (outputs = the new base's), A re-drawn from
    the seeded RNG; teacher_new is still the new task adapter."""
    new = ModelSpec.parse(_specs(tiny_family)[1])
    runtime = RuntimeConfig(**CPU)
    copy, _ = load_student(new, runtime)
    torch.manual_seed(0)
    fresh, tok = load_student(new, runtime, init="fresh")
    torch.manual_seed(1)
    other, _ = load_student(new, runtime, init="fresh")
    students = {
        name: {n: p for n, p in m.named_parameters() if ".student." in n}
        for name, m in (("copy", copy), ("fresh", fresh), ("other", other))
    }
    assert students["fresh"].keys() == students["copy"].keys() and students["fresh"]
    for n, p in students["fresh"].items():
        if "lora_B" in n:
            assert not p.any(), n
            assert students["copy"][n].any(), n  # the copy is the (non-zero) new adapter
        else:
            assert p.any() and not torch.equal(p, students["copy"][n]), n
            assert not torch.equal(p, students["other"][n]), n  # the seed draws A
    assert all(p.requires_grad for p in students["fresh"].values())

    feats = _features(_compat_cfg(tiny_family, data), tok)
    batch = Collator(tok.pad_token_id, [f.example_id for f in feats])(feats[:3])
    ids, attn = batch["input_ids"], batch["attention_mask"]
    base = load_model(ModelSpec.parse(tiny_family["new"]), runtime=runtime).model
    task_model = load_model(new, runtime=runtime).model
    with torch.no_grad():
        torch.testing.assert_close(
            fresh(input_ids=ids, attention_mask=attn).logits,
            base(input_ids=ids, attention_mask=attn).logits,
        )
        expected = task_model(input_ids=ids, attention_mask=attn).logits
    torch.testing.assert_close(AdapterTeacher(fresh).logits(batch), expected, rtol=1e-5, atol=1e-6)


def test_fresh_student_refuses_an_adapter_it_cannot_reinitialise(tiny_family):
    from compatlm.train.student import reset_student

    model, _ = load_student(ModelSpec.parse(_specs(tiny_family)[1]), RuntimeConfig(**CPU))
    model.peft_config["student"].use_dora = True
    with pytest.raises(CompatlmError, match="student_init fresh: the new task adapter is DoRA"):
        reset_student(model)


def test_fresh_run_records_its_start(tiny_family, data, tmp_path):
    """The run's diagnostics, budget and card say where the student started; the low old-share
    verdict ("can barely differ from new") is the copy's, not a fresh student's."""
    from compatlm.methods.controls import control_config

    for init in ("new_adapter", "fresh"):
        cfg = _compat_cfg(tiny_family, data, student_init=init, mask="old_correct")
        train_compat(cfg, tmp_path / init)
        train_compat(control_config(cfg, "continue_ce"), tmp_path / f"ce_{init}")
        diag = json.loads((tmp_path / init / "diagnostics.json").read_text())
        assert diag["settings"]["student_init"] == init
        for run in (init, f"ce_{init}"):
            assert json.loads((tmp_path / run / "budget.json").read_text())["student_init"] == init
        card = (tmp_path / init / "adapter" / "README.md").read_text()
        assert f"student_init {init}" in card
        ce = json.loads((tmp_path / f"ce_{init}" / "diagnostics.json").read_text())["verdict"]
        start = "the new task adapter" if init == "new_adapter" else "a fresh LoRA"
        assert start in ce
    # The recipe really started elsewhere: same data, seed and steps, different weights.
    trained = {init: _weights(tmp_path / init) for init in ("new_adapter", "fresh")}
    assert trained["fresh"].keys() == trained["new_adapter"].keys()
    assert all(not torch.equal(trained["fresh"][k], v) for k, v in trained["new_adapter"].items())
