"""``bench/real_update_regimes.py``: two real-base studies compared seed by seed, on hand-made
result documents whose every expected number is worked out in the comments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import real_update_regimes as rr

N = 400  # test questions


def _rate(k: int) -> dict:
    return {"value": k / N, "numerator": k, "denominator": N, "ci": None, "reason": None}


def _doc(prune: float, cells: dict[str, tuple[int, int, int, int, int]], **settings) -> dict:
    """cells: seed -> (old correct, new correct, flips of new, of MUSCLE, of continue_ce)."""
    seeds = {}
    for s, (old, new, f_new, f_muscle, f_ctrl) in cells.items():
        methods = {
            "new": {"accuracy_old": _rate(old), "accuracy_new": _rate(new)},
            rr.METHOD: {},
            rr.CONTROL: {},
        }
        for role, f in (("new", f_new), (rr.METHOD, f_muscle), (rr.CONTROL, f_ctrl)):
            methods[role]["negative_flip_rate"] = _rate(f)
        seeds[s] = {"methods": methods}
    base = {"seeds": len(cells), "prune": prune, "rank": 0, "lr": 5e-4, "smoke": False}
    return {"benchmark": "real_update", "command": f"p{prune}", "smoke": False,
            "settings": base | settings, "seeds": seeds}  # fmt: skip


# Mild: gaps 1.0, 1.5, 0.5 points; MUSCLE Δ% −30, −25, −35; control −10, −10, −5.
MILD = {"0": (260, 256, 40, 28, 36), "1": (260, 254, 40, 30, 36), "2": (260, 258, 40, 26, 38)}
# Harsh: gaps 8.0, 8.5, 7.5; MUSCLE Δ% −10, −12, −8; control −4, −6, −2.
HARSH = {"0": (260, 228, 50, 45, 48), "1": (260, 226, 50, 44, 47), "2": (260, 230, 50, 46, 49)}


def test_mild_regime_cut_more_is_confirmed_and_the_control_gap_is_not():
    out = rr.compare({"harsh": _doc(0.5, HARSH), "mild": _doc(0.3, MILD)})
    assert (out["mild"], out["harsh"]) == ("mild", "harsh")  # ordered by gap, not by argument
    assert out["ordered_by_gap_every_seed"] and out["old_identical"]
    assert out["per_seed"]["mild"]["1"]["gap_points"] == pytest.approx(1.5)
    assert out["per_seed"]["mild"]["1"]["delta_nfr_percent"][rr.METHOD] == pytest.approx(-25.0)
    assert out["per_study"]["harsh"]["muscle_delta_nfr_percent"]["mean"] == pytest.approx(-10.0)
    # mild − harsh, MUSCLE Δ%: −20, −13, −27: mean −20, sd 7, t(2) 4.303 · 7 / √3 = 17.39.
    diff = out["mild_minus_harsh"]["muscle_delta_nfr_percent"]
    assert diff["mean"] == pytest.approx(-20.0)
    assert diff["ci"] == pytest.approx([-37.39, -2.61], abs=0.01)
    # MUSCLE − control: mild −20, −15, −30; harsh −6 each: differences −14, −9, −24 (mean
    # −15.67, sd 7.64, half-width 18.97): the interval holds 0.
    gain = out["mild_minus_harsh"]["muscle_minus_control_points"]
    assert gain["mean"] == pytest.approx(-47 / 3)
    assert gain["ci"][0] < 0 < gain["ci"][1]
    assert out["verdicts"] == {
        "muscle_helps_most_when_acc_old_near_acc_new": "confirmed",
        "gain_beyond_extra_training_larger_when_near": "not shown",
    }


def test_reversed_effect_is_contradicted():
    # Swap which study cuts more: the small-gap one now cuts least.
    mild = {s: (o, n, fn, fc + 2, fc) for s, (o, n, fn, _, fc) in MILD.items()}  # Δ% ≥ −5
    out = rr.compare({"mild": _doc(0.3, mild), "harsh": _doc(0.5, HARSH)})
    assert out["verdicts"]["muscle_helps_most_when_acc_old_near_acc_new"] == "contradicted"


def test_studies_not_ordered_by_gap_in_every_seed_are_untestable():
    mild = dict(MILD) | {"2": (260, 200, 40, 26, 38)}  # seed 2: a 15-point gap, > harsh's 7.5
    out = rr.compare({"mild": _doc(0.3, mild), "harsh": _doc(0.5, HARSH)})
    assert not out["ordered_by_gap_every_seed"]
    assert set(out["verdicts"].values()) == {
        "untestable: the studies are not ordered by gap in every seed"
    }


def test_a_seed_where_new_never_flips_is_undefined_and_left_out_of_the_pairs():
    mild = dict(MILD) | {"2": (260, 258, 0, 0, 0)}
    out = rr.compare({"mild": _doc(0.3, mild), "harsh": _doc(0.5, HARSH)})
    assert out["per_seed"]["mild"]["2"]["delta_nfr_percent"][rr.METHOD] is None
    assert out["per_study"]["mild"]["muscle_delta_nfr_percent"]["n_seeds"] == 2
    assert out["mild_minus_harsh"]["muscle_delta_nfr_percent"]["n_seeds"] == 2
    assert out["mild_minus_harsh"]["muscle_delta_nfr_percent"]["mean"] == pytest.approx(-16.5)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (_doc(0.5, HARSH, lr=1e-3), "setting 'lr' is 0.001, but 0.0005"),
        (_doc(0.3, HARSH), "have the same new base"),
        (
            _doc(0.5, {"0": HARSH["0"], "1": HARSH["1"], "3": HARSH["2"]}),
            r"seeds \['0', '1', '3'\] != \['0', '1', '2'\]",
        ),
    ],
)
def test_studies_that_differ_in_more_than_the_new_base_are_refused(other, message):
    mild = _doc(0.3, MILD)
    with pytest.raises(SystemExit, match=message):
        rr.compare({"mild": mild, "other": other})


def test_a_study_without_the_control_names_the_study_seed_and_role():
    harsh = _doc(0.5, HARSH)
    del harsh["seeds"]["1"]["methods"][rr.CONTROL]
    with pytest.raises(SystemExit, match="harsh, seed 1: continue_ce has no negative_flip_rate"):
        rr.compare({"mild": _doc(0.3, MILD), "harsh": harsh})


def test_main_writes_the_comparison_and_refuses_a_smoke_result(tmp_path):
    a, b = tmp_path / "mild.json", tmp_path / "harsh.json"
    a.write_text(json.dumps(_doc(0.3, MILD)))
    b.write_text(json.dumps(_doc(0.5, HARSH)))
    out = tmp_path / "cmp.json"
    assert rr.main([str(a), str(b), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["studies"] == {"mild": "p0.3", "harsh": "p0.5"}
    assert doc["verdicts"]["muscle_helps_most_when_acc_old_near_acc_new"] == "confirmed"
    b.write_text(json.dumps(_doc(0.5, HARSH) | {"smoke": True}))
    with pytest.raises(SystemExit, match="harsh.json: expected a full"):
        rr.main([str(a), str(b), "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
