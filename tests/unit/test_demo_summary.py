"""The demo's multi-seed summary: means, t-intervals, Δ%NFR against new, cost per candidate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from compatlm.demo.summary import write_summary


def _comp(ref: str, other: str, *, acc_old, acc, nfr, pfr, p=None) -> dict:
    metrics = {
        "accuracy_old": {"value": acc_old},
        "accuracy_new": {"value": acc},
        "negative_flip_rate": {"value": nfr},
        "positive_flip_rate": {"value": pfr},
        "mcnemar_p_value": {"value": p},
    }
    return {
        "task": "t",
        "kind": "multiple_choice",
        "reference": ref,
        "other": other,
        "metrics": metrics,
    }


def _seed(root: Path, seed: int, new_nfr: float, cand_nfr: float, seconds: float) -> Path:
    run = root / f"seed{seed}" / "eval"
    run.mkdir(parents=True)
    comps = [
        _comp("old", "new", acc_old=0.6, acc=0.8, nfr=new_nfr, pfr=0.3),
        _comp("old", "cand", acc_old=0.6, acc=0.79, nfr=cand_nfr, pfr=0.28),
        _comp("new", "cand", acc_old=0.8, acc=0.79, nfr=0.0, pfr=0.0, p=0.5),
    ]
    (run / "metrics.json").write_text(json.dumps({"comparisons": comps}))
    (run / "report.html").write_text("<p>seed</p>")
    step = root / f"seed{seed}" / "adapters" / "t" / "cand"
    step.mkdir(parents=True)
    (step / "done.json").write_text(json.dumps({"result": "x", "seconds": seconds}))
    return run


def test_summary_means_intervals_and_relative_change(tmp_path):
    runs = {0: _seed(tmp_path, 0, 0.10, 0.05, 10.0), 1: _seed(tmp_path, 1, 0.10, 0.07, 14.0)}
    write_summary(tmp_path, runs, ["t"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    cand = summary["tasks"]["t"]["cand"]
    assert cand["nfr"]["mean"] == pytest.approx(0.06)
    # two seeds: t(0.975, 1) = 12.706, sd = 0.01414 -> half-width 12.706 * 0.01414 / sqrt(2)
    half = cand["nfr"]["ci"][1] - 0.06
    assert half == pytest.approx(12.7062 * math.sqrt(2e-4) / math.sqrt(2), rel=1e-3)
    assert cand["delta_nfr_percent"] == pytest.approx(-40.0)
    assert cand["seconds"]["mean"] == pytest.approx(12.0)
    assert summary["tasks"]["t"]["new"]["seconds"]["mean"] is None  # no done.json for new
    assert summary["overall"]["cand"]["mean_delta_nfr_percent"] == pytest.approx(-40.0)
    assert summary["overall"]["cand"]["min_accuracy_change_points"] == pytest.approx(-1.0)
    md = (tmp_path / "report.md").read_text()
    assert "Cost s" in md and "| t | cand |" in md and "-40.0" in md


def test_a_candidate_missing_from_a_seed_is_compared_with_new_in_its_own_seeds(tmp_path):
    # seed 1 has no candidate (no grid point passed the floor): new's NFR there (0.30) must
    # not enter the candidate's baseline, or a 0.10 -> 0.08 change would read as -60 %.
    runs = {0: _seed(tmp_path, 0, 0.10, 0.08, 10.0), 1: _seed(tmp_path, 1, 0.30, 0.0, 1.0)}
    doc = json.loads((runs[1] / "metrics.json").read_text())
    doc["comparisons"] = [c for c in doc["comparisons"] if c["other"] != "cand"]
    (runs[1] / "metrics.json").write_text(json.dumps(doc))
    write_summary(tmp_path, runs, ["t"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    task = summary["tasks"]["t"]
    assert task["cand"]["seeds"] == 1 and task["new"]["seeds"] == 2
    assert task["new"]["nfr"]["mean"] == pytest.approx(0.20)
    assert task["cand"]["new_same_seeds"] == {"nfr": pytest.approx(0.10), "acc": 0.8, "n": 1}
    assert task["cand"]["delta_nfr_percent"] == pytest.approx(-20.0)
    assert summary["overall"]["cand"]["min_accuracy_change_points"] == pytest.approx(-1.0)


def test_summary_html_escapes_role_names(tmp_path):
    run = _seed(tmp_path, 0, 0.1, 0.1, 1.0)
    data = json.loads((run / "metrics.json").read_text())
    for c in data["comparisons"]:
        c["other"] = c["other"].replace("cand", "<b>x")
    (run / "metrics.json").write_text(json.dumps(data))
    write_summary(tmp_path, {0: run}, ["t"])
    page = (tmp_path / "report.html").read_text()
    assert "<b>x" not in page and "&lt;b&gt;x" in page


def _sim_comp(ref: str, other: str, *, s_old, s_new, snfr, spfr, m_g, m_r) -> dict:
    sim = {
        "similarity_negative_flip_rate": {"value": snfr},
        "similarity_positive_flip_rate": {"value": spfr},
        "mean_gain": {"value": m_g},
        "mean_regression": {"value": m_r},
        "mean_score_old": {"value": s_old},
        "mean_score_new": {"value": s_new},
    }
    comp = _comp(ref, other, acc_old=1.0, acc=1.0, nfr=0.0, pfr=0.0)
    comp |= {
        "task": "sum",
        "kind": "generation",
        "similarity": {"tolerance": 0.0, "metrics": sim},
        "scoring": {"reference": {"metric": "rouge1"}, "other": {"metric": "rouge1"}},
    }
    return comp


def test_similarity_task_gets_s_and_snfr_columns_header_and_diagnostics(tmp_path):
    run = _seed(tmp_path, 0, 0.10, 0.05, 10.0)
    doc = json.loads((run / "metrics.json").read_text())
    doc["comparisons"] += [
        _sim_comp("old", "new", s_old=0.4, s_new=0.45, snfr=0.2, spfr=0.5, m_g=0.1, m_r=0.05),
        _sim_comp("old", "cand", s_old=0.4, s_new=0.44, snfr=0.15, spfr=0.45, m_g=0.1, m_r=0.04),
    ]
    share = {"value": 0.031, "numerator": 31, "denominator": 1000}
    doc["diagnostics"] = {
        "sum": {"cand": {"objective": "muscle", "old_share": share, "verdict": "only 3.1%"}}
    }
    doc["git_hash"] = "feedfacefeedfacefeedface"
    (run / "metrics.json").write_text(json.dumps(doc))
    env = {
        "created": "2025-06-02T08:00:00+00:00",
        "tasks": [{"name": "sum", "pass_threshold": 0.5}],
    }
    (run / "env.json").write_text(json.dumps(env))
    write_summary(tmp_path, {0: run}, ["t", "sum"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    cand = summary["tasks"]["sum"]["cand"]
    assert cand["similarity"] is True and cand["primary_nfr"]["mean"] == pytest.approx(0.15)
    assert cand["delta_nfr_percent"] == pytest.approx(-25.0)  # sNFR 0.15 vs new's 0.20
    assert cand["old_share"]["mean"] == pytest.approx(0.031)
    md = (tmp_path / "report.md").read_text()
    cls = md.split("## Classification tasks")[1].split("##")[0]
    assert "| t | cand |" in cls and "| sum |" not in cls  # no accuracy or p row for sum
    sim = md.split("## Similarity tasks")[1].split("##")[0]
    assert "| sum | cand | 0.400 | 0.440 | 15.00 | -5.00 | -25.0 | 45.00 | 0.100 | 0.040 |" in sim
    assert "sum: correct = rouge1 ≥ 0.5 (pass_threshold); old passes 100.00% and new 100.00%" in md
    assert "accuracy, quadrants and p are not shown for this task" in md
    assert "➖ **No gate: the demo checks no --fail-if condition**" in md
    assert (
        "- sum: new lowers the rouge1 score of 20.00% of all instances by more than τ=0"
        " compared with old (sNFR; 1 seed); candidate cand cuts that to 15.00% (-25.0% vs new;"
        " 1 seed)." in md
    )
    assert "- **Code**: compatlm, git feedfacefeed" in md
    assert "- **Date**: 2025-06-02 08:00 UTC" in md
    assert "| sum | cand | muscle | 3.10% | only 3.1% |" in md
    assert (tmp_path / "plots" / "nfr_vs_accuracy.png").stat().st_size > 1000
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 1 and "<script" not in page


def test_p_vs_new_is_a_test_over_seeds_never_a_mean_of_per_seed_p_values(tmp_path):
    new, cand = (0.10, 0.12, 0.11), (0.05, 0.08, 0.06)
    runs = {s: _seed(tmp_path, s, new[s], cand[s], 1.0) for s in range(3)}
    write_summary(tmp_path, runs, ["t"])
    p = json.loads((tmp_path / "summary.json").read_text())["tasks"]["t"]["cand"]["p_vs_new"]
    # paired differences -0.05, -0.04, -0.05: t = -14 on 2 df, whose two-sided p has the
    # closed form 1 - |t| / sqrt(2 + t^2)
    assert p["test"] == "paired_t_over_seeds" and p["n_seeds"] == 3
    assert p["value"] == pytest.approx(1 - 14 / math.sqrt(2 + 14**2), rel=1e-6)
    assert p["per_seed"] == [0.5, 0.5, 0.5]  # kept, not averaged into the p-value


def test_p_vs_new_with_one_seed_is_mcnemar_and_undefined_without_spread(tmp_path):
    write_summary(tmp_path, {0: _seed(tmp_path, 0, 0.10, 0.05, 1.0)}, ["t"])
    p = json.loads((tmp_path / "summary.json").read_text())["tasks"]["t"]["cand"]["p_vs_new"]
    assert (p["test"], p["value"]) == ("mcnemar_exact", 0.5)
    other = tmp_path / "same"
    runs = {s: _seed(other, s, 0.10 + s / 100, 0.05 + s / 100, 1.0) for s in range(2)}
    write_summary(other, runs, ["t"])
    p = json.loads((other / "summary.json").read_text())["tasks"]["t"]["cand"]["p_vs_new"]
    assert p["value"] is None and "same in every seed" in p["reason"]


def test_stability_table_in_both_pages_escaped(tmp_path):
    """The stability section (built by compatlm.demo.stability from two seeds' predictions)
    becomes a table: update NFR 50 % in both seeds, old vs old 0 %, every update flip stable,
    and a candidate named like markup with −50 % of the stable flips."""
    from compatlm.demo.stability import build_stability

    runs = {s: _seed(tmp_path, s, 0.10, 0.05, 1.0) for s in (0, 1)}
    for run in runs.values():
        for role, correct in (("old", [1, 1, 0, 0]), ("new", [0, 0, 0, 1]), ("<b>c", [1, 0, 0, 1])):
            path = run / "predictions" / "t" / f"{role}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = [{"example_id": f"x{i}", "correct": bool(c)} for i, c in enumerate(correct)]
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stability = build_stability(tmp_path, [0, 1], {"t": "negative_flip_rate"})
    write_summary(tmp_path, runs, ["t"], stability=stability)
    md = (tmp_path / "report.md").read_text()
    assert "## Retraining noise and stable flips" in md
    assert (
        "| t | 50.00 ± 0.00 | 0.00 ± 0.00 | 0.00 ± 0.00 | 100 ± 0 % | &lt;b&gt;c -50.0 ± 0.0 % / n/a |"
        in md
    )
    page = (tmp_path / "report.html").read_text()
    assert "Retraining noise and stable flips" in page
    assert "<b>c" not in page and "&lt;b&gt;c" in page
    assert json.loads((tmp_path / "summary.json").read_text())["stability"] == stability


def test_one_seed_has_no_stability_table(tmp_path):
    write_summary(tmp_path, {0: _seed(tmp_path, 0, 0.1, 0.05, 1.0)}, ["t"], stability=None)
    assert "Retraining noise" not in (tmp_path / "report.md").read_text()
