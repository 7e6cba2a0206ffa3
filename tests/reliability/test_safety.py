"""Safety defaults: no remote code, no pickle unless asked, reports escape every piece of data."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from workloads import WORDS

from compatlm.cli import main
from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError

SRC = Path(__file__).resolve().parents[2] / "src" / "compatlm"
# Loaders that take trust_remote_code (PeftModel.from_pretrained does not: it runs no model code).
_NO_REMOTE_CODE_ARG = {"PeftModel"}


def _calls(name: str):
    """(file, line, call) for every ``X.name(...)`` call in src/compatlm."""
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == name
            ):
                yield path.relative_to(SRC), node.lineno, node


def _safe_flag(value: ast.expr) -> bool:
    """Literally False, or read from a runtime config (``runtime.trust_remote_code``)."""
    if isinstance(value, ast.Constant):
        return value.value is False
    return isinstance(value, ast.Attribute) and value.attr == "trust_remote_code"


def test_every_loader_passes_trust_remote_code_from_the_runtime_or_false():
    checked = 0
    for name in ("from_pretrained", "from_config"):
        for path, line, call in _calls(name):
            receiver = call.func.value
            if isinstance(receiver, ast.Name) and receiver.id in _NO_REMOTE_CODE_ARG:
                continue
            kw = {k.arg: k.value for k in call.keywords}
            assert "trust_remote_code" in kw, f"{path}:{line}: {name} without trust_remote_code"
            assert _safe_flag(kw["trust_remote_code"]), f"{path}:{line}: unsafe trust_remote_code"
            checked += 1
    assert checked >= 4  # tokenizer, base, config, meta skeleton at least
    text = "\n".join(p.read_text(encoding="utf-8") for p in SRC.rglob("*.py"))
    assert not re.search(r"trust_remote_code\s*=\s*True", text)


def test_every_torch_load_is_weights_only():
    calls = [(p, n, c) for p, n, c in _calls("load") if ast.unparse(c.func) == "torch.load"]
    assert calls, "expected torch.load calls (checkpoints, allowed pickle adapters)"
    for path, line, call in calls:
        kw = {k.arg: k.value for k in call.keywords}
        flag = kw.get("weights_only")
        assert isinstance(flag, ast.Constant) and flag.value is True, f"{path}:{line}"


def test_runtime_defaults_are_safe():
    rt = RuntimeConfig()
    assert rt.trust_remote_code is False and rt.allow_pickle is False


def test_load_model_passes_trust_remote_code_false(tiny_family, monkeypatch):
    """Behaviour, not text: capture the kwargs that reach transformers."""
    import transformers

    from compatlm.models import load_model

    seen: dict[str, list[dict]] = {"model": [], "tokenizer": []}
    originals = {
        "model": transformers.AutoModelForCausalLM.from_pretrained,
        "tokenizer": transformers.AutoTokenizer.from_pretrained,
    }

    def spy(kind):
        def wrapped(*args, **kwargs):
            seen[kind].append(kwargs)
            return originals[kind](*args, **kwargs)

        return staticmethod(wrapped)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy("model"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy("tokenizer"))
    load_model(f"{tiny_family['new']}+{tiny_family['new_adapter']}")
    assert [kw["trust_remote_code"] for kw in seen["model"]] == [False]
    assert [kw["trust_remote_code"] for kw in seen["tokenizer"]] == [False]
    assert seen["model"][0]["use_safetensors"] is True
    # the flag is the runtime's: turning it on is the user's explicit decision
    load_model(tiny_family["new"], runtime=RuntimeConfig(trust_remote_code=True))
    assert seen["model"][-1]["trust_remote_code"] is True


def _to_pickle(src: Path, dst: Path, st_name: str, bin_name: str) -> Path:
    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    torch.save(load_file(str(dst / st_name)), dst / bin_name)
    (dst / st_name).unlink()
    return dst


def _logits(loaded) -> torch.Tensor:
    ids = torch.tensor([[1, 5, 9, 17, 33]])
    with torch.no_grad():
        return loaded.model(input_ids=ids).logits  # (1, 5, V)


def test_pickle_weights_refused_unless_allowed(tiny_family, tmp_path):
    from compatlm.methods.lora import load_adapter_tensors
    from compatlm.models import load_model

    base = _to_pickle(tiny_family["new"], tmp_path / "base", "model.safetensors", "model.bin")
    adapter = _to_pickle(
        tiny_family["new_adapter"],
        tmp_path / "adapter",
        "adapter_model.safetensors",
        "adapter_model.bin",
    )
    with pytest.raises(CompatlmError, match="pickle.*allow_pickle=true"):
        load_model(str(base))
    with pytest.raises(CompatlmError, match=r"adapter_model.bin \(pickle\).*allow_pickle=true"):
        load_model(f"{tiny_family['new']}+{adapter}")
    with pytest.raises(CompatlmError, match="allow_pickle=true"):
        load_adapter_tensors(adapter)
    # Allowed explicitly, the same weights give the same model.
    allowed = RuntimeConfig(allow_pickle=True)
    want = _logits(load_model(f"{tiny_family['new']}+{tiny_family['new_adapter']}"))
    got = _logits(load_model(f"{tiny_family['new']}+{adapter}", runtime=allowed))
    assert torch.allclose(got, want, atol=1e-6)


SCRIPT = "<script>alert(1)</script>"


def test_report_html_escapes_data(tmp_path):
    """Ids, outputs, targets, slices, task and role names all carry a script tag."""
    rows_old, rows_new = [], []
    for i in range(4):
        common = {
            "example_id": f"{SCRIPT}{i}",
            "target": f"{SCRIPT} target",
            "slice": f"{SCRIPT} slice",
        }
        rows_old.append({**common, "correct": True, "parsed": "a", "output": f"{SCRIPT} old"})
        rows_new.append(
            {**common, "correct": i % 2 == 0, "parsed": "b", "output": f'{SCRIPT}"><img src=x>'}
        )
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text("".join(json.dumps(r) + "\n" for r in rows_old))
    new.write_text("".join(json.dumps(r) + "\n" for r in rows_new))
    out = tmp_path / "out"
    assert main(["compare", str(old), str(new), "--out", str(out), "--bootstrap", "0"]) == 0
    page = (out / "report.html").read_text()
    assert "<script" not in page.lower()  # the page has no scripts of its own either
    assert "<img src=x" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, as text
    md = (out / "report.md").read_text()
    assert "<script" not in md.lower()


def test_report_html_of_an_eval_run_escapes_prompts_and_outputs(tiny_family, tmp_path):
    """The same through ``compatlm eval``: the choices (MC outputs) carry the script tag."""
    task = tmp_path / "mc.jsonl"
    rows = [
        {
            "id": f"{SCRIPT}{i}",
            "context": f"{SCRIPT} Question: what does the cat do {i}?\nAnswer:",
            # Same shape, other words: the tiny models' choices then differ (flips exist).
            "choices": [f"{SCRIPT} {WORDS[(i + k) % len(WORDS)]}" for k in range(3)],
            "label": i % 3,
            "slice": SCRIPT,
        }
        for i in range(30)
    ]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        f"old: {tiny_family['old']}+{tiny_family['old_adapter']}\n"
        f"new: {tiny_family['new']}+{tiny_family['new_adapter']}\n"
        f"tasks: [{{name: xss_task, path: {task}, metric: acc_norm}}]\n"
        "runtime: {batch_size: 8, progress: false, device: cpu}\n"
        "compare: {bootstrap: 0}\n"
    )
    out = tmp_path / "run"
    assert main(["eval", str(cfg), "--out", str(out)]) == 0
    flips = (out / "flips/xss_task/old_vs_new.jsonl").read_text()
    assert SCRIPT in flips, "the workload must produce flips whose outputs carry the tag"
    page = (out / "report.html").read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
