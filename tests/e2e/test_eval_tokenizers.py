"""`compatlm eval` of an old and a new model with different tokenizers: said before any model
is loaded, recorded in env.json, and compared on example hashes (metrics.json says so)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from compatlm.cli import main
from compatlm.eval import pipeline
from compatlm.eval.records import load_predictions

N = 6


@pytest.fixture(scope="module")
def other_tokenizer_run(tiny_family, tmp_path_factory) -> dict:
    """old = the tiny family's old model; new = a base whose tokenizer has another vocabulary.
    Records the order of warnings and model loads while eval runs."""
    from helpers import make_tokenizer, save_base

    root = tmp_path_factory.mktemp("othertok")
    other = save_base(root / "other_base", make_tokenizer(vocab_size=300), seed=4)
    rows = [
        {
            "id": f"m{i}",
            "context": f"Question: what does the cat do on day {i}?\nAnswer:",
            "choices": [" sleeps on the mat", " runs in the park"],
            "label": i % 2,
        }
        for i in range(N)
    ]
    (root / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = root / "eval.yaml"
    cfg.write_text(
        f"old: {tiny_family['old']}+{tiny_family['old_adapter']}\n"
        f"new: {other}\n"
        f"tasks:\n  - name: tiny_mc\n    path: {root / 'mc.jsonl'}\n"
        "runtime:\n  batch_size: 4\n  progress: false\ncompare:\n  bootstrap: 0\n"
    )
    events: list[tuple[str, str]] = []
    out = root / "run"

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING and "tokenises differently" in record.getMessage():
                scored = list((out / "predictions").rglob("*.jsonl")) if out.exists() else []
                events.append(("warning", f"{len(scored)} prediction files"))

    original = pipeline.load_model

    def recording_load(spec, **kw):
        events.append(("load", str(spec)))
        return original(spec, **kw)

    handler = Recorder()
    logger = logging.getLogger("compatlm.eval.roles")  # the CLI sets up "compatlm" itself
    logger.addHandler(handler)
    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "load_model", recording_load)
    try:
        code = main(["eval", str(cfg), "--out", str(out)])
    finally:
        mp.undo()
        logger.removeHandler(handler)
    return {"code": code, "out": out, "events": events}


def test_the_warning_comes_before_any_model_is_loaded(other_tokenizer_run):
    events = other_tokenizer_run["events"]
    assert other_tokenizer_run["code"] == 0
    kinds = [kind for kind, _ in events]
    assert kinds.count("warning") == 1 and kinds.count("load") == 2, events
    assert kinds[0] == "warning", events  # before the old model, not after the new one
    assert events[0][1] == "0 prediction files"


def test_env_json_records_the_difference(other_tokenizer_run):
    env = json.loads((other_tokenizer_run["out"] / "env.json").read_text())
    fps = env["tokenizers"]
    assert fps["old"] != fps["new"]
    assert len(env["warnings"]) == 1
    assert "tokenises differently" in env["warnings"][0]
    assert fps["old"] in env["warnings"][0] and fps["new"] in env["warnings"][0]


def test_eval_compares_on_example_hashes_and_says_so(other_tokenizer_run):
    out: Path = other_tokenizer_run["out"]
    old = load_predictions(out / "predictions" / "tiny_mc" / "old.jsonl")
    new = load_predictions(out / "predictions" / "tiny_mc" / "new.jsonl")
    # The premise: other token ids, same data.
    assert any(old.rows[i].prompt_hash != new.rows[i].prompt_hash for i in old.rows)
    assert all(old.rows[i].example_hash == new.rows[i].example_hash for i in old.rows)
    fps = json.loads((out / "env.json").read_text())["tokenizers"]
    (comp,) = json.loads((out / "metrics.json").read_text())["comparisons"]
    assert comp["prompt_hash_check"] == (
        f"skipped: tokenizers differ (old {fps['old']} vs new {fps['new']});"
        f" example hashes verified on {N} instances"
    )
    assert comp["n"] == N


def test_recompare_of_the_run_keeps_it_and_two_files_still_need_the_flag(
    other_tokenizer_run, tmp_path, capsys
):
    out: Path = other_tokenizer_run["out"]
    assert main(["compare", str(out)]) == 0  # env.json records both fingerprints
    (comp,) = json.loads((out / "metrics.json").read_text())["comparisons"]
    assert comp["prompt_hash_check"].startswith("skipped: tokenizers differ")
    # Two bare prediction files carry no fingerprint: the explicit flag is still needed.
    preds = out / "predictions" / "tiny_mc"
    pair = [str(preds / "old.jsonl"), str(preds / "new.jsonl")]
    capsys.readouterr()
    assert main(["compare", *pair, "--out", str(tmp_path / "c")]) == 2
    assert "--allow-prompt-mismatch" in capsys.readouterr().err
    flagged = ["compare", *pair, "--out", str(tmp_path / "d"), "--allow-prompt-mismatch"]
    assert main(flagged) == 0
