"""Per-task model specs: each task evaluated with its own adapter, one model at a time."""

from __future__ import annotations

import json

from test_cli_eval import _write_tasks

from compatlm.cli import main
from compatlm.eval.records import load_predictions


def test_task_models_override_roles(tiny_family, tmp_path):
    f = tiny_family
    mc, gen = _write_tasks(tmp_path)
    cfg = tmp_path / "eval.yaml"
    # The MC task uses the swapped adapters and a task-only candidate role ("port");
    # the generation task falls back to the top-level specs.
    cfg.write_text(
        f"""\
old: {f["old"]}+{f["old_adapter"]}
new: {f["new"]}+{f["new_adapter"]}
tasks:
  - name: tiny_mc
    path: {mc}
    models:
      new: {f["new"]}
      port: {f["new"]}+{f["old_adapter"]}
  - name: demo_gsm8k
    path: {gen}
    max_new_tokens: 4
runtime:
  batch_size: 4
  progress: false
compare:
  bootstrap: 0
"""
    )
    out = tmp_path / "run"
    assert main(["eval", str(cfg), "--out", str(out)]) == 0
    mc_new = load_predictions(out / "predictions" / "tiny_mc" / "new.jsonl")
    gen_new = load_predictions(out / "predictions" / "demo_gsm8k" / "new.jsonl")
    assert {r.model for r in mc_new.rows.values()} == {str(f["new"])}
    assert {r.model for r in gen_new.rows.values()} == {f"{f['new']}+{f['new_adapter']}"}
    assert (out / "predictions" / "tiny_mc" / "port.jsonl").is_file()
    assert not (out / "predictions" / "demo_gsm8k" / "port.jsonl").exists()
    doc = json.loads((out / "metrics.json").read_text())
    pairs = {(c["task"], c["reference"], c["other"]) for c in doc["comparisons"]}
    assert ("tiny_mc", "old", "port") in pairs and ("tiny_mc", "new", "port") in pairs
    assert not any(t == "demo_gsm8k" and o == "port" for t, _, o in pairs)
