"""`compatlm demo --quick` end to end: family build, adapters, MUSCLE, eval, summary, resume."""

from __future__ import annotations

import json

import pytest

from compatlm.cli import main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    mp.setenv("COMPATLM_CACHE", str(root / "cache"))
    out = root / "out"
    code = main(["demo", "--quick", "--out", str(out), "runtime.progress=false"])
    yield code, out
    mp.undo()


def test_quick_demo_tells_the_whole_story(demo_run):
    code, out = demo_run
    assert code == 0
    for name in ("report.md", "report.html", "summary.json", "demo.json", "family.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == {"demo_hellaswag", "demo_piqa", "demo_gsm8k", "demo_samsum"}
    for task, roles in summary["tasks"].items():
        assert {"new", "muscle", "pct"} <= set(roles), task
        # re-ranking applies to the generation tasks only
        assert ("rerank" in roles) == (task in ("demo_gsm8k", "demo_samsum")), task
        acc = roles["muscle"]["acc"]["mean"]
        assert acc is not None and 0.0 <= acc <= 1.0
    metrics = json.loads((out / "seed0" / "eval" / "metrics.json").read_text())
    pairs = {(c["task"], c["reference"], c["other"]) for c in metrics["comparisons"]}
    assert ("demo_piqa", "old", "new") in pairs and ("demo_piqa", "new", "muscle") in pairs
    assert ("demo_gsm8k", "old", "rerank") in pairs and ("demo_gsm8k", "new", "rerank") in pairs
    cost = json.loads(
        (out / "seed0" / "adapters" / "demo_gsm8k" / "rerank" / "cost.json").read_text()
    )
    assert cost["forward_token_ratio"]["value"] > 1.0  # k samples + scoring cost more than greedy
    html = (out / "report.html").read_text()
    assert "<script" not in html and "muscle" in html


def test_rerun_resumes_without_retraining(demo_run):
    code, out = demo_run
    assert code == 0
    adapter = out / "seed0" / "adapters" / "demo_piqa" / "muscle" / "adapter"
    before = (adapter / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(["demo", "--quick", "--out", str(out), "runtime.progress=false"]) == 0
    assert (adapter / "adapter_model.safetensors").stat().st_mtime_ns == before


def test_rerun_with_other_settings_is_refused(demo_run, capsys):
    _, out = demo_run
    code = main(["demo", "--quick", "--out", str(out), "training.epochs=2"])
    assert code == 2
    assert "other settings" in capsys.readouterr().err


def test_unknown_task_fails_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["demo", "--tasks", "demo_nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "demo_nope" in err and "\n" not in err
    assert not out.exists()


def test_continued_family_runs_every_alternative(tmp_path, monkeypatch):
    """Same-shape bases: port, interpolate and merge apply, beside MUSCLE and PCT."""
    monkeypatch.setenv("COMPATLM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = ["demo", "--quick", "--family", "continued", "--out", str(out)]
    assert main([*argv, "--tasks", "demo_piqa", "demo_gsm8k", "runtime.progress=false"]) == 0
    family = json.loads((out / "family.json").read_text())
    assert family["alternatives_skipped"] is None
    summary = json.loads((out / "summary.json").read_text())
    for task in ("demo_piqa", "demo_gsm8k"):
        roles = summary["tasks"][task]
        assert {"new", "muscle", "port", "interpolate", "merge", "pct"} <= set(roles), task
        assert ("rerank" in roles) == (task == "demo_gsm8k"), task
        for role in ("port", "interpolate", "merge", "pct"):
            assert roles[role]["nfr"]["mean"] is not None, (task, role)
    assert "interpolate" in (out / "report.md").read_text()


def test_default_family_skips_weight_space_alternatives_with_a_reason(demo_run):
    _, out = demo_run
    family = json.loads((out / "family.json").read_text())
    assert "differ in shape" in family["alternatives_skipped"]
    summary = json.loads((out / "summary.json").read_text())
    roles = set(summary["tasks"]["demo_piqa"])
    assert "pct" in roles and not roles & {"port", "interpolate", "merge"}
