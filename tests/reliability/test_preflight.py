"""Preflight: every model, adapter and task input is checked before any work.

Each CLI case breaks one thing of the *new* model (or the training base), which the old code
found only after the old model had been scored (a traceback and a partial ``--out``), after
half a minute of hub retries, or after a model had loaded. The contract is that of
``test_bad_inputs.py``: exit code 2, stderr is exactly one ``error: ...`` line containing the
case's substrings (file, field), no traceback, ``--out`` never created, and no model weights
loaded (``load_base`` is a trap).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from contract import refused

from compatlm.errors import CompatlmError
from compatlm.spec import ModelSpec
from helpers import make_llama, save_lora

CORPUS = Path(__file__).parent / "corpus"
TASK = CORPUS / "tasks" / "good_mc.jsonl"


@dataclass(frozen=True)
class Case:
    id: str
    new: str  # the new model's spec; {name} is a directory of the `broken` fixture
    expect: tuple[str, ...]


def _edit_json(path: Path, change) -> None:
    path.write_text(change(json.loads(path.read_text())) if callable(change) else change)


def _with(key: str, value):
    def change(cfg: dict) -> str:
        if value is ...:
            cfg.pop(key)
        else:
            cfg[key] = value
        return json.dumps(cfg)

    return change


BASE_CONFIGS = {  # directory name -> new contents of config.json
    "base_bad_json": '{"model_type": "llama",',
    "base_list": "[1, 2]",
    "base_no_type": _with("model_type", ...),
    "base_unknown_type": _with("model_type", "llamax"),
    "base_bad_size": _with("hidden_size", "wide"),
    "base_not_causal": _with("model_type", "t5"),
    "base_neg_vocab": _with("vocab_size", -5),
}
ADAPTER_CONFIGS = {  # directory name -> new contents of adapter_config.json
    "ad_bad_json": '{"peft_type": "LORA"',
    "ad_list": lambda cfg: json.dumps([cfg]),
    "ad_no_peft_type": _with("peft_type", ...),
    "ad_bad_peft_type": _with("peft_type", "LORAX"),
    "ad_ia3": _with("peft_type", "IA3"),
    "ad_int_targets": _with("target_modules", 3),
    "ad_int_in_targets": _with("target_modules", ["q_proj", 7]),
    "ad_targets_object": _with("target_modules", {"q_proj": True}),
    "ad_zero_rank": _with("r", 0),
    "ad_float_rank": _with("r", 4.5),
    # Valid field by field, refused by PEFT's own checks (a regex cannot select layers).
    "ad_peft_refuses": lambda cfg: json.dumps(
        cfg | {"target_modules": ".*q_proj", "layers_to_transform": [0]}
    ),
}

CASES = [
    Case("base-malformed-json", "{base_bad_json}", ("new:", "base_bad_json/config.json", "malformed JSON")),
    Case("base-config-is-list", "{base_list}", ("base_list/config.json", "expected a JSON object", "list")),
    Case("base-no-model-type", "{base_no_type}", ("base_no_type/config.json", "field 'model_type'", "missing")),
    Case("base-unknown-model-type", "{base_unknown_type}", ("base_unknown_type/config.json", "field 'model_type'", "'llamax'", "'llama'")),
    Case("base-bad-config-value", "{base_bad_size}", ("base_bad_size/config.json", "'hidden_size'", "'wide'")),
    Case("base-unbuildable-config", "{base_neg_vocab}", ("base model", "base_neg_vocab", "cannot build a causal LM", "negative dimension")),
    Case("base-not-a-causal-lm", "{base_not_causal}", ("base_not_causal/config.json", "field 'model_type'", "'t5'", "no causal language model")),
    Case("adapter-malformed-json", "{new}+{ad_bad_json}", ("new:", "ad_bad_json/adapter_config.json", "malformed JSON")),
    Case("adapter-config-is-list", "{new}+{ad_list}", ("ad_list/adapter_config.json", "expected a JSON object", "list")),
    Case("adapter-no-peft-type", "{new}+{ad_no_peft_type}", ("ad_no_peft_type/adapter_config.json", "field 'peft_type'", "missing")),
    Case("adapter-unknown-peft-type", "{new}+{ad_bad_peft_type}", ("adapter_config.json", "field 'peft_type'", "'LORAX'", "not a PEFT adapter type")),
    Case("adapter-unsupported-peft-type", "{new}+{ad_ia3}", ("adapter_config.json", "field 'peft_type'", "'IA3'", "LoRA")),
    Case("adapter-integer-targets", "{new}+{ad_int_targets}", ("ad_int_targets/adapter_config.json", "field 'target_modules'", "3 (int)")),
    Case("adapter-integer-in-targets", "{new}+{ad_int_in_targets}", ("adapter_config.json", "field 'target_modules[1]'", "7 (int)")),
    Case("adapter-targets-object", "{new}+{ad_targets_object}", ("adapter_config.json", "field 'target_modules'", "(object)")),
    Case("adapter-zero-rank", "{new}+{ad_zero_rank}", ("ad_zero_rank/adapter_config.json", "field 'r'", "positive integer", "0 (int)")),
    Case("adapter-float-rank", "{new}+{ad_float_rank}", ("adapter_config.json", "field 'r'", "4.5 (float)")),
    Case("adapter-peft-refuses", "{new}+{ad_peft_refuses}", ("ad_peft_refuses/adapter_config.json", "PEFT refuses", "layers_to_transform")),
    Case("adapter-missing", "{new}+{root}/no_such_adapter", ("new: adapter", "no_such_adapter", "does not exist")),
    Case("base-file-suffix-missing", "{root}/model.safetensors", ("new: base model", "model.safetensors", "does not exist")),
]  # fmt: skip


@pytest.fixture(scope="module")
def broken(tiny_family, tmp_path_factory) -> dict[str, str]:
    """Copies of the tiny new base and its adapter, each with one config file broken."""
    root = tmp_path_factory.mktemp("preflight")
    places = {k: str(v) for k, v in tiny_family.items()} | {"root": str(root)}
    for name, change in BASE_CONFIGS.items():
        shutil.copytree(tiny_family["new"], root / name)
        _edit_json(root / name / "config.json", change)
        places[name] = str(root / name)
    for name, change in ADAPTER_CONFIGS.items():
        shutil.copytree(tiny_family["new_adapter"], root / name)
        _edit_json(root / name / "adapter_config.json", change)
        places[name] = str(root / name)
    return places


def _eval_config(path: Path, old: str, new: str, task: Path = TASK) -> Path:
    path.write_text(
        f"old: {old}\nnew: {new}\ntasks:\n  - name: tiny_mc\n    path: {task}\n"
        "runtime: {batch_size: 4, progress: false}\ncompare: {bootstrap: 0}\n"
    )
    return path


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_model_input_is_refused_before_any_work(
    case: Case, broken, tiny_family, tmp_path, capsys, no_model_loads
):
    old = f"{tiny_family['old']}+{tiny_family['old_adapter']}"
    cfg = _eval_config(tmp_path / "eval.yaml", old, case.new.format(**broken))
    out = tmp_path / "out"
    refused(["eval", str(cfg), "--out", str(out)], capsys, case.expect, out=out)


# ---- paths and the hub ------------------------------------------------------------------------


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Offline mode off and the hub endpoint a closed local port: what a machine without network
    looks like, without touching the network."""
    from huggingface_hub import constants

    from compatlm import hub

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    hub.hub_reachable.cache_clear()
    yield
    hub.hub_reachable.cache_clear()


def test_missing_relative_path_is_not_a_hub_lookup(
    tiny_family, tmp_path, monkeypatch, capsys, unreachable_hub, no_model_loads
):
    # `models/` exists here, so `models/neww` is a typo of a local path, not a hub id.
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_family["new"], tmp_path / "models" / "new")
    cfg = _eval_config(tmp_path / "eval.yaml", str(tiny_family["old"]), "models/neww")
    start = time.monotonic()
    line = refused(
        ["eval", str(cfg), "--out", "out"], capsys, ("new: base model",), out=tmp_path / "out"
    )
    assert "models/neww: path does not exist" in line and "models/ exists" in line
    assert time.monotonic() - start < 15  # the hub's retries alone took 25 s


def test_uncached_hub_id_fails_fast_when_hub_unreachable(
    tiny_family, tmp_path, capsys, unreachable_hub, no_model_loads
):
    cfg = _eval_config(tmp_path / "eval.yaml", str(tiny_family["old"]), "someorg/somemodel")
    out = tmp_path / "out"
    start = time.monotonic()
    expect = ("new: base model someorg/somemodel", "not in the Hugging Face cache", "unreachable")
    refused(["eval", str(cfg), "--out", str(out)], capsys, expect, out=out)
    assert time.monotonic() - start < 15


def test_uncached_hub_id_with_offline_mode_says_so(tiny_family, tmp_path, capsys, no_model_loads):
    # The suite runs with HF_HUB_OFFLINE=1 (tests/conftest.py).
    cfg = _eval_config(tmp_path / "eval.yaml", str(tiny_family["old"]), "someorg/somemodel")
    out = tmp_path / "out"
    expect = ("someorg/somemodel", "not in the Hugging Face cache", "HF_HUB_OFFLINE is set")
    refused(["eval", str(cfg), "--out", str(out)], capsys, expect, out=out)


def test_what_looks_like_a_path(tmp_path, monkeypatch):
    from compatlm.hub import looks_like_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("./x", "/abs/x", "~/x", "runs/typo", "a/b/c", "model.safetensors", "runs"):
        assert looks_like_path(name), name
    for name in ("gpt2", "meta-llama/Llama-2-7b-hf", "org/name"):
        assert not looks_like_path(name), name


# ---- tied output head -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tied(tiny_tokenizer, tmp_path_factory) -> dict[str, Path]:
    """A base whose lm_head shares the input embedding matrix, and a LoRA on that lm_head."""
    root = tmp_path_factory.mktemp("tied")
    model = make_llama(tiny_tokenizer, layers=1, tied=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(root / "base")
    tiny_tokenizer.save_pretrained(root / "base")
    adapter = save_lora(root / "base", root / "head_adapter", r=2, targets=["q_proj", "lm_head"])
    return {"base": root / "base", "head_adapter": adapter}


def _train_config(path: Path, base: str, lora: str) -> Path:
    path.write_text(
        f"base: {base}\nlora: {lora}\ntask: {{name: tiny_mc, path: {TASK}}}\n"
        "optim: {epochs: 1, batch_size: 2}\nruntime: {device: cpu, progress: false}\n"
    )
    return path


FIX = "set tie_word_embeddings=False or drop lm_head from target_modules"


@pytest.mark.parametrize("targets", ["[q_proj, lm_head]", "'.*lm_head'"])
def test_training_a_lora_on_a_tied_head_is_refused(tied, targets, tmp_path, capsys, no_model_loads):
    cfg = _train_config(
        tmp_path / "t.yaml", str(tied["base"]), f"{{r: 2, target_modules: {targets}}}"
    )
    out = tmp_path / "out"
    expect = ("lora.target_modules", "'lm_head'", "tied", FIX)
    refused(["train", "task", str(cfg), "--out", str(out)], capsys, expect, out=out)


def test_continuing_an_adapter_on_a_tied_head_is_refused(tied, tmp_path, capsys, no_model_loads):
    spec = f"{tied['base']}+{tied['head_adapter']}"
    cfg = _train_config(tmp_path / "t.yaml", spec, "{r: 2}")
    out = tmp_path / "out"
    expect = ("adapter", "head_adapter", "'lm_head'", FIX)
    refused(["train", "task", str(cfg), "--out", str(out)], capsys, expect, out=out)


def test_tied_head_check_allows_what_is_safe(tied, tiny_family):
    from compatlm.models import check_lora_head

    check_lora_head(ModelSpec(str(tied["base"])), "all-linear")  # PEFT leaves the output head out
    check_lora_head(ModelSpec(str(tied["base"])), ["q_proj", "v_proj"])
    check_lora_head(ModelSpec(str(tiny_family["new"])), ["q_proj", "lm_head"])  # untied: mergeable
    with pytest.raises(CompatlmError, match="tie_word_embeddings=False"):
        check_lora_head(ModelSpec(str(tied["base"])), ["lm_head"])


def test_evaluating_an_adapter_on_a_tied_head_only_warns(tied, caplog, monkeypatch):
    from compatlm import adapters
    from compatlm.models import preflight

    monkeypatch.setattr(adapters, "_warned_tied", set())  # warned once per process
    with caplog.at_level(logging.WARNING, logger="compatlm"):
        preflight(f"{tied['base']}+{tied['head_adapter']}")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("lm_head" in m and "ties" in m and FIX in m for m in warned), warned


# ---- task inputs against the context length ---------------------------------------------------


def test_choice_fits_exactly_the_scoring_window(tiny_tokenizer):
    from compatlm.prompts import encode_choices
    from compatlm.tasks.base import MCExample, ResolvedTask
    from compatlm.tasks.fit import check_task_fits

    ex = MCExample("q1", "The cat sat on the", ("mat", "mat and the dog runs"), 0)
    task = ResolvedTask("t", "multiple_choice", (ex,), "acc", "mem", "test")
    totals = [r.total_length for r in encode_choices(tiny_tokenizer, ex.context, ex.choices)]
    longest = max(totals)
    check_task_fits(task, tiny_tokenizer, longest - 1, "test")  # the last token is never fed
    match = rf"example 'q1': context \+ choice {totals.index(longest)} .* = {longest} tokens"
    with pytest.raises(CompatlmError, match=match):
        check_task_fits(task, tiny_tokenizer, longest - 2, "test")


def test_prompt_needs_room_for_max_new_tokens(tiny_tokenizer):
    from compatlm.prompts import encode_prompt
    from compatlm.tasks.base import GenExample, ResolvedTask
    from compatlm.tasks.fit import check_task_fits

    ex = GenExample("g1", "Question: what color is the sky? Answer:", "blue")
    n = len(encode_prompt(tiny_tokenizer, ex.prompt))
    task = ResolvedTask("t", "generation", (ex,), "exact_match", "mem", "test", max_new_tokens=8)
    check_task_fits(task, tiny_tokenizer, n + 8, "test")
    with pytest.raises(CompatlmError, match=rf"prompt {n} tokens \+ max_new_tokens 8 = {n + 8}"):
        check_task_fits(task, tiny_tokenizer, n + 7, "test")
