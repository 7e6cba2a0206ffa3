"""The rules two bench studies apply to validation numbers: the mask ablation's verdicts
(``bench/muscle_masks.py``, reading cells through ``bench/knob_study.py``) and the real-base study's MUSCLE row when no grid point passes the
accuracy floor (``bench/real_update.py``). Both read validation data only; the inputs here are
hand-made selection documents whose expected outcome is worked out in the comments."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import knob_study as ks
import muscle_masks as mm


def _metric(num: int, den: int = 200) -> dict:
    return {"value": num / den, "numerator": num, "denominator": den}


def _selection(points: list[dict], new=(20, 150)) -> dict:
    """A demo selection file: new with 20 negative flips and 150 of 200 right (floor 149/200)."""
    return {
        "new": {"negative_flip_rate": _metric(new[0]), "accuracy": _metric(new[1])},
        "floor": {"value": (new[1] - 1) / 200},
        "points": points,
    }


def _point(mask: str | None, prompt: bool, nfr: int, acc: int, eligible: bool) -> dict:
    if mask is None:
        name, knobs, kind = f"continue_ce.compat_mask_prompt_{str(prompt).lower()}", None, "control"
    else:
        name, kind = f"muscle.mask_{mask}__compat_mask_prompt_{str(prompt).lower()}", "candidate"
        knobs = {"mask": mask, "compat_mask_prompt": prompt}
    return {
        "name": name,
        "knobs": knobs,
        "kind": kind,
        "spec": "base",  # no adapter: no diagnostics
        "negative_flip_rate": _metric(nfr),
        "accuracy": _metric(acc),
        "eligible": eligible,
    }


def _demo(tmp_path: Path, per_seed_nfr: dict[str, list[int]], acc: dict[str, int]) -> Path:
    """Two seeds, one task; ``per_seed_nfr[point]`` = negative flips of that point per seed."""
    for seed in (0, 1):
        points = []
        for key, flips in per_seed_nfr.items():
            mask, prompt = key.split("/")
            value = prompt == "prompt_true"
            m = None if mask == "continue_ce" else mask
            points.append(
                _point(m, value, flips[seed], acc.get(key, 150), acc.get(key, 150) >= 149)
            )
        d = tmp_path / f"seed{seed}" / "selection"
        d.mkdir(parents=True, exist_ok=True)
        (d / "t.json").write_text(json.dumps(_selection(points)))
    return tmp_path


def _verdicts(tmp_path, nfr, acc=None):
    cells = ks.point_cells(_demo(tmp_path, nfr, acc or {}), [0, 1], ["t"], key=mm.point_key)
    return mm.verdicts(ks.summarize_points(cells, [0, 1]), -0.5), cells


BASE = {f"{m}/prompt_{p}": [20, 20] for m in mm.MASKS for p in ("true", "false")}
BASE |= {"continue_ce/prompt_true": [20, 20], "continue_ce/prompt_false": [20, 20]}


def test_cells_hold_relative_change_accuracy_points_and_the_floor(tmp_path):
    nfr = BASE | {"student_wrong/prompt_false": [10, 15]}
    _, cells = _verdicts(tmp_path, nfr, {"old_only/prompt_false": 140})
    sw = cells["t"]["student_wrong/prompt_false"]
    assert [sw[s]["delta_nfr_percent"] for s in (0, 1)] == pytest.approx([-50.0, -25.0])
    oo = cells["t"]["old_only/prompt_false"][0]
    assert oo["accuracy_change_points"] == pytest.approx(-5.0) and oo["passed_floor"] is False
    assert cells["t"]["continue_ce/prompt_true"][0]["passed_floor"] is True


def test_the_paper_mask_ranks_first_only_when_strictly_best_within_the_floor(tmp_path):
    # student_wrong: -50/-25 %; old_correct cuts more (-75 %) but loses 5 points: not a rival
    nfr = BASE | {"student_wrong/prompt_false": [10, 15], "old_correct/prompt_false": [5, 5]}
    v, _ = _verdicts(tmp_path / "a", nfr, {"old_correct/prompt_false": 140})
    rank = v["paper_mask_ranks_first"]
    assert rank["verdict"] == "confirmed"
    assert [r["mask"] for r in rank["ranking_by_delta_nfr_percent"]][:2] == [
        "old_correct",
        "student_wrong",
    ]
    assert rank["vs_best_other_mask"]["difference_points"]["mean"] == pytest.approx(-37.5)
    # every mask tied at 0 %: no ranking, so not confirmed
    v, _ = _verdicts(tmp_path / "b", BASE)
    assert v["paper_mask_ranks_first"]["verdict"] == "not confirmed"
    assert v["mask_prompt"]["lower_delta_nfr"] == "tie"


def test_beating_the_control_needs_a_seed_level_interval_below_zero(tmp_path):
    # best mask -50 / -25 %, control -10 / -10 %: differences -40 / -15, t-interval on 1 df
    # is mean ± 12.71 · 17.68 / sqrt(2) = -27.5 ± 158.9: includes 0, so not confirmed
    nfr = BASE | {"student_wrong/prompt_false": [10, 15], "continue_ce/prompt_false": [18, 18]}
    v, _ = _verdicts(tmp_path, nfr)
    row = v["beats_control"]["by_mask_prompt"]["false"]
    assert row["best_point"] == "student_wrong/prompt_false"
    assert row["muscle_minus_control_points"]["mean"] == pytest.approx(-27.5)
    assert row["beats_control"] is False and v["beats_control"]["verdict"] == "not confirmed"
    assert v["mask_prompt"]["lower_delta_nfr"] == "false"


# ---------------------------------------------------------------- real_update: MUSCLE row


def _real_selection(work: Path, points: list[dict]) -> None:
    d = work / "seed0" / "sweep"
    d.mkdir(parents=True)
    new = {"name": "new", "value": None, "spec": "new", "kind": "new"}
    new |= {"negative_flip_rate": _metric(20, 160), "accuracy": _metric(100, 160)}
    (d / "selection.json").write_text(json.dumps({"points": points, "new": new}))


def _sweep_point(name: str, nfr: int, acc: int, kind: str = "candidate") -> dict:
    return {
        "name": name,
        "value": name,
        "spec": f"base+{name}",
        "negative_flip_rate": _metric(nfr, 160),
        "accuracy": _metric(acc, 160),
        "knobs": None if kind == "control" else {"mask": name},
        "kind": kind,
    }


def test_real_update_keeps_a_muscle_row_below_the_floor_chosen_on_validation(tmp_path):
    import real_update as ru

    # floor = 100/160 - 0.5 points = 99.2/160: no MUSCLE point reaches it, the control does
    # (but the control is not MUSCLE). The most accurate point (99) is kept, ties by lower NFR.
    pts = [
        _sweep_point("student_wrong", 15, 98),
        _sweep_point("old_correct", 18, 99),
        _sweep_point("old_only", 12, 99),
        _sweep_point("continue_ce", 10, 104, kind="control"),
    ]
    _real_selection(tmp_path, pts)
    row = ru.muscle_winner(SimpleNamespace(work=tmp_path), 0)
    assert row["spec"] is None and "no candidate reaches the accuracy floor" in row["reason"]
    assert row["below_floor"] == {"name": "old_only", "knobs": {"mask": "old_only"}}


def test_real_update_selects_muscle_when_a_point_passes(tmp_path):
    import real_update as ru

    _real_selection(tmp_path, [_sweep_point("student_wrong", 15, 101)])
    row = ru.muscle_winner(SimpleNamespace(work=tmp_path), 0)
    assert row["spec"] == "base+student_wrong" and "below_floor" not in row
