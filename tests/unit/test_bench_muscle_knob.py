"""``bench/muscle_knob.py``: how a grid point and its control are named (one shared control for
a knob that leaves the budget alone, one per value for a budget knob, named as the demo names
them) and the per-value verdicts, on hand-made selection files worked out in the comments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import knob_study as ks
import muscle_knob as mk

from compatlm.demo.selection import control_role, role_of


def _metric(num: int, den: int = 200) -> dict:
    return {"value": num / den, "numerator": num, "denominator": den}


def _point(name: str, knobs: dict | None, nfr: int) -> dict:
    return {
        "name": name,
        "knobs": knobs,
        "kind": "control" if knobs is None else "candidate",
        "spec": "base",  # no adapter: no diagnostics
        "negative_flip_rate": _metric(nfr),
        "accuracy": _metric(150),
        "eligible": True,
    }


def _demo(tmp_path: Path, points_per_seed: list[list[dict]]) -> Path:
    """One task ``t``; new has 20 negative flips and 150 of 200 right in every seed."""
    for seed, points in enumerate(points_per_seed):
        d = tmp_path / f"seed{seed}" / "selection"
        d.mkdir(parents=True)
        sel = {
            "new": {"negative_flip_rate": _metric(20), "accuracy": _metric(150)},
            "floor": {"value": 149 / 200},
            "points": points,
        }
        (d / "t.json").write_text(json.dumps(sel))
    return tmp_path


def test_budget_knob_pairs_each_value_with_its_own_control(tmp_path: Path) -> None:
    values = [1, 2]
    seeds = []
    # Seed 0: MUSCLE 18 / 22 flips at 1 / 2 epochs, controls 20 / 16. Seed 1: 16 / 24, 20 / 18.
    for m1, m2, c1, c2 in ((18, 22, 20, 16), (16, 24, 20, 18)):
        seeds.append(
            [
                _point(role_of({"compat_epochs": 1}), {"compat_epochs": 1}, m1),
                _point(role_of({"compat_epochs": 2}), {"compat_epochs": 2}, m2),
                _point(control_role({"compat_epochs": 1}), None, c1),
                _point(control_role({"compat_epochs": 2}), None, c2),
            ]
        )
    key = mk.make_point_key("compat_epochs", values, budget=True)
    cells = ks.point_cells(_demo(tmp_path, seeds), [0, 1], ["t"], key=key)
    assert set(cells["t"]) == {
        "compat_epochs/1",
        "compat_epochs/2",
        "continue_ce/1",
        "continue_ce/2",
    }
    v = mk.verdicts(ks.summarize_points(cells, [0, 1]), "compat_epochs", values, budget=True)
    # Δ%NFR vs new (20): 1 epoch MUSCLE −10, −20 (mean −15); its control 0, 0 -> −15 points.
    one = v["by_value"]["1"]
    assert one["muscle_delta_nfr_percent"] == pytest.approx(-15.0)
    assert one["muscle_minus_control_delta_nfr_points"]["mean"] == pytest.approx(-15.0)
    # 2 epochs MUSCLE +10, +20; control −20, −10 -> +30 points, in both seeds.
    two = v["by_value"]["2"]
    assert two["muscle_minus_control_delta_nfr_points"]["mean"] == pytest.approx(30.0)
    assert two["verdict"] == "worse than its control"
    # 2 minus 1: +20 and +40 points -> mean +30.
    assert v["minus_1"]["2"]["delta_nfr_points"]["mean"] == pytest.approx(30.0)


def test_other_knob_shares_one_control(tmp_path: Path) -> None:
    values = [1.0, 2.0]
    seeds = [
        [
            _point(role_of({"temperature": 1.0}), {"temperature": 1.0}, 18),
            _point(role_of({"temperature": 2.0}), {"temperature": 2.0}, 20),
            _point(control_role({}), None, 19),
        ]
    ] * 2
    key = mk.make_point_key("temperature", values, budget=False)
    cells = ks.point_cells(_demo(tmp_path, seeds), [0, 1], ["t"], key=key)
    assert set(cells["t"]) == {"temperature/1.0", "temperature/2.0", "continue_ce"}
    v = mk.verdicts(ks.summarize_points(cells, [0, 1]), "temperature", values, budget=False)
    # −10 % vs −5 % for the control in both seeds: −5 points with no spread.
    assert v["by_value"]["1.0"]["muscle_minus_control_delta_nfr_points"]["mean"] == pytest.approx(
        -5
    )
    assert v["by_value"]["2.0"]["control_delta_nfr_percent"] == pytest.approx(-5.0)


def test_values_from_the_command_line() -> None:
    assert [mk.parse_value(x) for x in ("1", "2.5", "true", "fresh")] == [1, 2.5, True, "fresh"]
    assert mk.value_key(True) == "true" and mk.value_key(2.0) == "2.0"


def test_fixed_point_test_picks_the_point_and_its_own_control() -> None:
    """The test look evaluates the named point with the control of *its* budget."""
    import fixed_point_test as fpt

    def spec(name: str) -> dict:
        return {"name": name, "spec": f"spec:{name}", "knobs": None, "kind": "control"}

    one, two = {"compat_epochs": 1}, {"compat_epochs": 2}
    sel = {
        "task": "t",
        "old": {"spec": "spec:old"},
        "new": {"spec": "spec:new"},
        "points": [
            {"name": role_of(one), "spec": "spec:m1", "knobs": one, "kind": "candidate"},
            {"name": role_of(two), "spec": "spec:m2", "knobs": two, "kind": "candidate"},
            spec(control_role(one)),
            spec(control_role(two)),
        ],
    }
    models = fpt.look_models(sel, role_of(two))
    assert models == {
        "old": "spec:old",
        "new": "spec:new",
        "muscle": "spec:m2",
        "continue_ce": f"spec:{control_role(two)}",
    }
    with pytest.raises(SystemExit, match="no point 'muscle.nope'"):
        fpt.look_models(sel, "muscle.nope")
