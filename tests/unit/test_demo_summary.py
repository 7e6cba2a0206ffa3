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


def test_summary_html_escapes_role_names(tmp_path):
    run = _seed(tmp_path, 0, 0.1, 0.1, 1.0)
    data = json.loads((run / "metrics.json").read_text())
    for c in data["comparisons"]:
        c["other"] = c["other"].replace("cand", "<b>x")
    (run / "metrics.json").write_text(json.dumps(data))
    write_summary(tmp_path, {0: run}, ["t"])
    page = (tmp_path / "report.html").read_text()
    assert "<b>x" not in page and "&lt;b&gt;x" in page
