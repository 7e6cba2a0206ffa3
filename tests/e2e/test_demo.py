"""`compatlm demo --quick` end to end: family build, adapters, MUSCLE selected on validation,
one test eval, summary, evidence, resume. The quick demo (the ``demo_run`` fixture, shared with
test_configs.py) takes most of a minute: those tests are ``slow``."""

from __future__ import annotations

import json

import pytest

from compatlm.cli import main

TASKS = ("demo_hellaswag", "demo_piqa", "demo_gsm8k", "demo_samsum")


@pytest.mark.slow
def test_quick_demo_tells_the_whole_story(demo_run):
    code, out, _ = demo_run
    assert code == 0
    for name in ("report.md", "report.html", "summary.json", "demo.json", "family.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == {"demo_hellaswag", "demo_piqa", "demo_gsm8k", "demo_samsum"}
    metrics = json.loads((out / "seed0" / "eval" / "metrics.json").read_text())
    pairs = {(c["task"], c["reference"], c["other"]) for c in metrics["comparisons"]}
    for task, roles in summary["tasks"].items():
        assert {"new", "continue_ce", "pct"} <= set(roles), task
        # re-ranking applies to the generation tasks only
        assert ("rerank" in roles) == (task in ("demo_gsm8k", "demo_samsum")), task
        # MUSCLE is there exactly when a point passed the validation floor
        sel = json.loads((out / "seed0" / "selection" / f"{task}.json").read_text())
        assert ("muscle" in roles) == (sel["winner"] is not None), task
        if sel["winner"] is not None:
            acc = roles["muscle"]["acc"]["mean"]
            assert acc is not None and 0.0 <= acc <= 1.0
            assert (task, "new", "muscle") in pairs
        else:
            assert any("no point passed the floor" in n for n in summary["notes"]), task
    assert ("demo_piqa", "old", "new") in pairs and ("demo_piqa", "old", "continue_ce") in pairs
    piqa = out / "seed0" / "adapters" / "demo_piqa"
    budgets = [
        json.loads((d / "budget.json").read_text())
        for d in (piqa / "muscle" / "mask__student_wrong", piqa / "continue_ce")
    ]
    assert budgets[0]["lr_schedule"] == budgets[1]["lr_schedule"]  # the same budget
    assert ("demo_gsm8k", "old", "rerank") in pairs and ("demo_gsm8k", "new", "rerank") in pairs
    cost = json.loads(
        (out / "seed0" / "adapters" / "demo_gsm8k" / "rerank" / "cost.json").read_text()
    )
    assert cost["forward_token_ratio"]["value"] > 1.0  # k samples + scoring cost more than greedy
    html = (out / "report.html").read_text()
    assert "<script" not in html and "muscle" in html
    # The quick recipe has no reference build: the run says so rather than implying a match.
    build = json.loads((out / "family.json").read_text())["build"]
    assert build["status"] == "no_reference" and build["build_platform"]["cpu_capability"]
    assert "- **Family build**: no reference build recorded" in (out / "report.md").read_text()


@pytest.mark.slow
def test_rerun_resumes_without_retraining(demo_run):
    code, out, _ = demo_run
    assert code == 0
    adapter = out / "seed0" / "adapters" / "demo_piqa" / "muscle" / "mask__old_correct" / "adapter"
    before = (adapter / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(["demo", "--quick", "--out", str(out), "runtime.progress=false"]) == 0
    assert (adapter / "adapter_model.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_rerun_with_other_settings_is_refused(demo_run, capsys):
    _, out, _ = demo_run
    code = main(["demo", "--quick", "--out", str(out), "training.epochs=2"])
    assert code == 2
    assert "other settings" in capsys.readouterr().err


def test_unknown_task_fails_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["demo", "--tasks", "demo_nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "demo_nope" in err and "\n" not in err
    assert not out.exists()


@pytest.mark.slow
def test_continued_family_runs_every_alternative(continued_run):
    """Same-shape bases: port, interpolate and merge apply, beside MUSCLE and PCT."""
    code, out = continued_run
    assert code == 0
    family = json.loads((out / "family.json").read_text())
    assert family["alternatives_skipped"] is None
    summary = json.loads((out / "summary.json").read_text())
    for task in ("demo_piqa", "demo_gsm8k"):
        roles = summary["tasks"][task]
        assert {"new", "continue_ce", "port", "interpolate", "merge", "pct"} <= set(roles), task
        assert (out / "seed0" / "selection" / f"{task}.json").is_file(), task
        assert ("rerank" in roles) == (task == "demo_gsm8k"), task
        for role in ("port", "interpolate", "merge", "pct"):
            assert roles[role]["nfr"]["mean"] is not None, (task, role)
    assert "interpolate" in (out / "report.md").read_text()


@pytest.mark.slow
def test_default_family_skips_weight_space_alternatives_with_a_reason(demo_run):
    _, out, _ = demo_run
    family = json.loads((out / "family.json").read_text())
    assert "differ in shape" in family["alternatives_skipped"]
    summary = json.loads((out / "summary.json").read_text())
    roles = set(summary["tasks"]["demo_piqa"])
    assert "pct" in roles and not roles & {"port", "interpolate", "merge"}


@pytest.mark.slow
def test_muscle_is_selected_on_validation_before_test_is_read(demo_run):
    code, out, reads = demo_run
    assert code == 0
    # The trap saw the test files being read (the eval, the re-ranking) ...
    assert {task for task, _ in reads} == set(TASKS)
    # ... and never before that task's winner was on disk.
    assert [r for r in reads if not r[1]] == []
    val = json.loads((out / "seed0" / "validation" / "metrics.json").read_text())
    test = json.loads((out / "seed0" / "eval" / "metrics.json").read_text())
    points = {"muscle.mask__student_wrong", "muscle.mask__old_correct"}
    for task in TASKS:
        sel = json.loads((out / "seed0" / "selection" / f"{task}.json").read_text())
        names = [p["name"] for p in sel["points"]]
        assert names == [*sorted(points, reverse=True), "continue_ce"], task
        for p in sel["points"]:  # every number with its counts, from the validation run
            comp = next(
                c
                for c in val["comparisons"]
                if (c["task"], c["reference"], c["other"]) == (task, "old", p["name"])
            )
            assert p["accuracy"] == comp["metrics"]["accuracy_new"]
            assert p["negative_flip_rate"] == comp["metrics"]["negative_flip_rate"]
            assert p["accuracy"]["denominator"] == 16  # the quick family's validation split
        test_roles = {c["other"] for c in test["comparisons"] if c["task"] == task}
        assert not test_roles & points, task  # unselected points never reach the test split
        if sel["winner"] is None:
            assert sel["status"] == "no_point_passed_the_floor" and "muscle" not in test_roles
        else:
            assert sel["winner"]["role"] in points and "muscle" in test_roles
            muscle = next(
                c
                for c in test["comparisons"]
                if (c["task"], c["reference"], c["other"]) == (task, "old", "muscle")
            )
            assert muscle["files"]["other"].endswith("muscle.jsonl")
    evidence = json.loads((out / "evidence.json").read_text())
    assert evidence["seeds"] == [0] and set(evidence["per_seed"]["0"]) == set(TASKS)
    boot = evidence["averaged_over_tasks"]["cluster_bootstrap"]
    assert set(boot) >= {"muscle_vs_new", "continue_ce_vs_new", "muscle_minus_continue_ce"}
