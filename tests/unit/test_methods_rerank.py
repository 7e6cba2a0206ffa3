"""Re-rank (BCR): the chosen sample is the old model's favourite, computed here by hand."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from compatlm.cli import main
from compatlm.config import RuntimeConfig, TaskConfig
from compatlm.errors import CompatlmError
from compatlm.methods.config import RerankConfig
from compatlm.methods.rerank import rerank_predictions, run_rerank
from compatlm.tasks import resolve_task

PROMPTS = ["The cat sat on the", "Question: what color is the sky? Answer:", "one two three"]


def _task_file(tmp_path):
    path = tmp_path / "gen.jsonl"
    rows = [{"id": f"g{i}", "prompt": p, "reference": "blue"} for i, p in enumerate(PROMPTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(tiny_family, tmp_path, **kw) -> RerankConfig:
    task = TaskConfig(
        name="toy",
        path=str(_task_file(tmp_path)),
        kind="generation",
        max_new_tokens=4,
        stop=[],
        metric="rouge1",
    )
    base = {
        "old": f"{tiny_family['old']}+{tiny_family['old_adapter']}",
        "new": f"{tiny_family['new']}+{tiny_family['new_adapter']}",
        "task": task,
        "k": 5,
        "temperature": 3.0,
        "runtime": RuntimeConfig(batch_size=4, progress=False),
    }
    return RerankConfig(**(base | kw))


def _old_scores(tiny_family, prompt, texts, finishes, mean):
    """log p_old(text [+ EOS] | prompt), straight from a forward pass of the old model."""
    from peft import PeftModel

    tok = AutoTokenizer.from_pretrained(tiny_family["old"])
    base = AutoModelForCausalLM.from_pretrained(tiny_family["old"])
    model = PeftModel.from_pretrained(base, tiny_family["old_adapter"]).eval()
    ctx = tok.encode(prompt)
    out = []
    for text, finish in zip(texts, finishes, strict=True):
        cont = tok.encode(prompt + text)[len(ctx) :] + (
            [tok.eos_token_id] if finish == "eos" else []
        )
        if not cont:
            out.append(None)
            continue
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids[:, :-1]).logits[0].float(), -1)
        ll = sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))
        out.append(ll / len(cont) if mean else ll)
    return out


@pytest.mark.parametrize("score", ["sum", "mean"])
def test_rerank_picks_the_old_models_favourite(tiny_family, tmp_path, score):
    cfg = _cfg(tiny_family, tmp_path, score=score)
    task = resolve_task(cfg.task)
    result = rerank_predictions(cfg.new, cfg.old, task, cfg)
    assert [p["example_id"] for p in result.predictions] == ["g0", "g1", "g2"]
    n_distinct = 0
    for prompt, choice, pred in zip(PROMPTS, result.choices, result.predictions, strict=True):
        assert len(choice["candidates"]) == 5
        n_distinct += len(set(choice["candidates"])) > 1
        want = _old_scores(
            tiny_family, prompt, choice["candidates"], choice["finish"], score == "mean"
        )
        for got, ref in zip(choice["scores"], want, strict=True):
            assert (got is None and ref is None) or abs(got - ref) < 1e-4
        finite = [s if s is not None else float("-inf") for s in want]
        best = max(range(len(finite)), key=lambda i: (finite[i], -i))
        assert choice["chosen"] == best
        assert pred["output"] == choice["candidates"][best]
        assert pred["role"] == "rerank" and pred["kind"] == "generation"
    assert n_distinct >= 2  # the choice among samples was not trivial
    assert any(c["chosen"] != 0 for c in result.choices)
    cost = result.cost
    assert cost["rerank"]["sample_forward_tokens"] > cost["greedy"]["forward_tokens"]
    ratio = cost["forward_token_ratio"]
    assert ratio["value"] == ratio["numerator"] / ratio["denominator"] > 1


def test_rerank_is_seeded_and_resumes_from_samples(tiny_family, tmp_path, capsys):
    cfg = _cfg(tiny_family, tmp_path, k=3)
    (tmp_path / "rerank.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    # Through the CLI: it prints the paths it wrote.
    assert main(["rerank", str(tmp_path / "rerank.yaml"), "--out", str(tmp_path / "run")]) == 0
    preds = tmp_path / "run" / "predictions" / "toy" / "rerank.jsonl"
    printed = capsys.readouterr().out.splitlines()
    assert (
        f"wrote {preds}" in printed and f"wrote {tmp_path / 'run' / 'rerank_cost.json'}" in printed
    )
    first = preds.read_text()
    # Same seed, other batch size: identical samples (seeds are per example), so identical output.
    other = cfg.model_copy(update={"runtime": RuntimeConfig(batch_size=1, progress=False)})
    run_rerank(other, tmp_path / "run2")
    assert (tmp_path / "run2" / "predictions" / "toy" / "rerank.jsonl").read_text() == first
    # A resumed run reuses the samples on disk instead of drawing new ones.
    samples = tmp_path / "run" / "rerank" / "toy" / "samples.jsonl"
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join(lines[:2]) + "\n")
    run_rerank(cfg, tmp_path / "run", resume=True)
    assert preds.read_text() == first
    assert json.loads((tmp_path / "run" / "rerank_cost.json").read_text())["resumed"] is True


def test_rerank_refuses_other_tokenizer_and_mc_tasks(tiny_family, tmp_path):
    from helpers import make_tokenizer, save_base

    other_tok = make_tokenizer(vocab_size=300)
    other = save_base(tmp_path / "other", other_tok, seed=4)
    cfg = _cfg(tiny_family, tmp_path, old=str(other))
    with pytest.raises(CompatlmError, match="tokenizers differ.*rerank"):
        rerank_predictions(cfg.new, cfg.old, resolve_task(cfg.task), cfg)
    mc = tmp_path / "mc.jsonl"
    mc.write_text(json.dumps({"id": "q", "context": "a", "choices": ["b", "c"], "label": 0}))
    task = resolve_task(TaskConfig(name="mc", path=str(mc)))
    with pytest.raises(CompatlmError, match="needs a generation task"):
        rerank_predictions(cfg.new, cfg.new, task, cfg)


def test_rerank_config_role_must_be_a_candidate_name():
    from compatlm.config import build_config

    data = {"old": "o", "new": "n", "task": {"name": "t"}}
    with pytest.raises(CompatlmError, match="role 'new' is reserved"):
        build_config(RerankConfig, data | {"role": "new"})
    with pytest.raises(CompatlmError, match="'role'.*pattern"):
        build_config(RerankConfig, data | {"role": "a/b"})
