"""`compatlm eval` / `compatlm validate` end to end on the tiny model family."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compatlm.cli import main
from compatlm.eval.records import load_predictions

N_MC, N_GEN = 6, 4
ANIMALS = ["cat", "dog", "bird", "cow", "fox", "owl"]


def _write_tasks(root: Path) -> tuple[Path, Path]:
    mc = [
        {
            "id": f"m{i}",
            "context": f"Question: what does the {w} do?\nAnswer:",
            "choices": ["sleeps on the mat", "runs in the park", "barks"],
            "label": i % 3,
            "slice": "odd" if i % 2 else "even",
        }
        for i, w in enumerate(ANIMALS[:N_MC])
    ]
    gen = [
        {
            "id": f"g{i}",
            "prompt": f"Question: Alice has {i} apples and Bob has 4 apples.\nAnswer:",
            "reference": str(i + 4),
        }
        for i in range(N_GEN)
    ]
    (root / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc))
    (root / "gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gen))
    return root / "mc.jsonl", root / "gen.jsonl"


@pytest.fixture(scope="module")
def eval_config(tiny_family, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evalcfg")
    mc, gen = _write_tasks(root)
    f = tiny_family
    cfg = root / "eval.yaml"
    cfg.write_text(
        f"""\
old: {f["old"]}+{f["old_adapter"]}
new: {f["new"]}+{f["new_adapter"]}
tasks:
  - name: tiny_mc
    path: {mc}
    metric: acc_norm
  - name: demo_gsm8k
    path: {gen}
    max_new_tokens: 6
runtime:
  batch_size: 4
  progress: false
compare:
  bootstrap: 20
"""
    )
    return cfg


@pytest.fixture(scope="module")
def full_run(eval_config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    assert main(["eval", str(eval_config), "--out", str(out)]) == 0
    return out


def _rows(path: Path) -> dict[str, dict]:
    lines = path.read_text().splitlines()
    rows = {r["example_id"]: r for r in map(json.loads, lines)}
    assert len(rows) == len(lines)  # no duplicates
    return rows


def test_eval_writes_the_run_directory(full_run, tiny_family, capsys):
    for name in ("config.yaml", "env.json", "metrics.json", "report.md", "report.html"):
        assert (full_run / name).is_file(), name
    for task, n in (("tiny_mc", N_MC), ("demo_gsm8k", N_GEN)):
        old = load_predictions(full_run / "predictions" / task / "old.jsonl")
        new = load_predictions(full_run / "predictions" / task / "new.jsonl")
        assert len(old) == len(new) == n
        assert old.model == f"{tiny_family['old']}+{tiny_family['old_adapter']}"
        for eid, row in old.rows.items():
            # same tokenizer, same data: the pairs are comparable
            assert row.prompt_hash == new.rows[eid].prompt_hash
            assert row.example_hash == new.rows[eid].example_hash
    metrics = json.loads((full_run / "metrics.json").read_text())
    pairs = {(c["task"], c["reference"], c["other"]) for c in metrics["comparisons"]}
    assert pairs == {("tiny_mc", "old", "new"), ("demo_gsm8k", "old", "new")}
    env = json.loads((full_run / "env.json").read_text())
    assert env["tokenizers"]["old"] == env["tokenizers"]["new"] and env["warnings"] == []
    assert [t["name"] for t in env["tasks"]] == ["tiny_mc", "demo_gsm8k"]


def test_old_predictions_come_from_old_base_plus_adapter(full_run, tiny_family):
    """The MC rows equal a direct scoring of the old base + old adapter."""
    from compatlm.config import TaskConfig
    from compatlm.eval.runner import score_multiple_choice
    from compatlm.models import load_model
    from compatlm.tasks import resolve_task

    source = json.loads((full_run / "env.json").read_text())["tasks"][0]["source"]
    task = resolve_task(TaskConfig(name="tiny_mc", path=source))
    loaded = load_model(f"{tiny_family['old']}+{tiny_family['old_adapter']}")
    direct = score_multiple_choice(
        loaded.model,
        loaded.tokenizer,
        task.examples,
        metric="acc_norm",
        batch_size=1,
        max_length=256,
    )
    rows = _rows(full_run / "predictions" / "tiny_mc" / "old.jsonl")
    for res in direct:
        row = rows[res.example.id]
        assert row["parsed"] == res.pred
        assert row["loglikelihoods"] == pytest.approx(list(res.loglikelihoods), abs=1e-5)


def test_resume_after_interruption_equals_uninterrupted(full_run, eval_config, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(full_run, out)
    for task in ("tiny_mc", "demo_gsm8k"):
        path = out / "predictions" / task / "new.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        half = len(lines) // 2
        # half of the rows plus a line cut mid-write, as a killed process leaves it
        path.write_text("".join(lines[:half]) + lines[half][:25])
    (out / "metrics.json").unlink()
    assert main(["eval", str(eval_config), "--out", str(out), "--resume"]) == 0
    for task in ("tiny_mc", "demo_gsm8k"):
        for role in ("old", "new"):
            want = _rows(full_run / "predictions" / task / f"{role}.jsonl")
            got = _rows(out / "predictions" / task / f"{role}.jsonl")
            assert list(got) == list(want)
            for eid, row in want.items():
                other = got[eid]
                for key in ("output", "parsed", "correct", "prompt_hash", "example_hash"):
                    assert other[key] == row[key], (task, role, eid, key)
                if row["loglikelihoods"] is not None:
                    assert other["loglikelihoods"] == pytest.approx(row["loglikelihoods"], abs=1e-5)
    assert (out / "metrics.json").is_file()


def test_resume_refuses_another_config(full_run, eval_config, tmp_path, capsys):
    out = tmp_path / "other"
    shutil.copytree(full_run, out)
    code = main(["eval", str(eval_config), "--out", str(out), "--resume", "tasks.0.metric=acc"])
    assert code == 2
    assert "config.yaml there differs" in capsys.readouterr().err


def test_gate_exit_codes(full_run, eval_config, tmp_path, capsys):
    # Every row is on disk, so --resume only compares and gates (no model is loaded).
    out = tmp_path / "gate"
    shutil.copytree(full_run, out)
    args = ["eval", str(eval_config), "--out", str(out), "--resume"]
    assert main([*args, "--fail-if", "negative_flip_rate>=0"]) == 1
    err = capsys.readouterr().err
    # The wording of `compatlm compare`: condition, then where it held and by how much.
    assert "gate failed: negative_flip_rate>=0: " in err and "old_vs_new" in err
    assert main([*args, "--fail-if", "negative_flip_rate>1"]) == 0
    captured = capsys.readouterr()
    assert (
        "gate passed: negative_flip_rate>1\n" in captured.err and "gate passed" not in captured.out
    )


def test_eval_prints_the_headline_table_before_the_paths(full_run, eval_config, tmp_path, capsys):
    out = tmp_path / "table"
    shutil.copytree(full_run, out)
    assert main(["eval", str(eval_config), "--out", str(out), "--resume"]) == 0
    text = capsys.readouterr().out
    doc = json.loads((out / "metrics.json").read_text())
    first = doc["comparisons"][0]
    # the numbers of metrics.json, as `compatlm compare` prints them, then the written files
    assert "compatlm compare" in text and "old → new" in text and first["task"] in text
    assert f"{100 * first['metrics']['negative_flip_rate']['value']:.2f}%" in text
    assert text.index("old → new") < text.index(str(out / "metrics.json"))


def test_refuses_non_empty_out_and_bad_input(full_run, eval_config, tmp_path, capsys):
    assert main(["eval", str(eval_config), "--out", str(full_run)]) == 2
    assert "not empty" in capsys.readouterr().err
    out = tmp_path / "never"
    assert main(["eval", str(eval_config), "--out", str(out), "tasks.0.path=/missing.jsonl"]) == 2
    assert "tasks[0].path: /missing.jsonl does not exist" in capsys.readouterr().err
    assert not out.exists()
    assert main(["eval", str(eval_config), "--out", str(out), "--fail-if", "nfr>>1"]) == 2
    assert not out.exists()


def test_validate_prints_resolved_config(eval_config, capsys):
    assert main(["validate", str(eval_config), "runtime.batch_size=3"]) == 0
    text = capsys.readouterr().out
    assert "batch_size: 3" in text and "name: demo_gsm8k" in text and "max_new_tokens: 6" in text
    # task defaults are shown, resolved, as comments
    assert '"metric": "acc_norm", "n_examples": 6}' in text
    assert '"extract": "gsm8k", "stop": ["Question:", "</s>", "<|im_end|>"]' in text
    assert main(["validate", str(eval_config), "tasks.0.metric=bleu"]) == 2
    assert "tasks[0].metric: 'bleu' is not a multiple-choice metric" in capsys.readouterr().err
