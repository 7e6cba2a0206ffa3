"""Compatibility metrics on hand-computed counts, undefined denominators, and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compatlm.eval.metrics import measure, relative_change

# 10 instances. old right on 0-6; new right on 0,1,2,3,7.
#   both right {0,1,2,3} = 4   negative flips {4,5,6} = 3
#   positive flips {7} = 1     both wrong {8,9} = 2
OLD = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 0], dtype=bool)
NEW = np.array([1, 1, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
# parsed answers differ on 4,5,6 (negative flips), 7 and 9, not on 8 -> new wrong ∧ differ = {4,5,6,9}
DIFFER = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1], dtype=bool)


def val(m: dict, name: str):
    return m["metrics"][name]["value"]


def test_ten_instances_by_hand():
    m = measure(OLD, NEW, inconsistent=DIFFER, bootstrap=0)
    assert m["counts"] == {
        "n": 10,
        "old_correct": 7,
        "new_correct": 5,
        "old_wrong": 3,
        "new_wrong": 5,
        "both_correct": 4,
        "both_wrong": 2,
        "negative_flips": 3,
        "positive_flips": 1,
        "inconsistency_flips": 4,
    }
    expect = {
        "negative_flip_rate": (3, 10),
        "positive_flip_rate": (1, 10),
        "inconsistency_flip_rate": (4, 10),
        "backward_trust_compatibility": (4, 7),
        "backward_error_compatibility": (2, 5),
        "backward_error_compatibility_old": (2, 3),
        "negative_flip_impact": (3, 5),
        "positive_flip_impact": (1, 3),
        "accuracy_old": (7, 10),
        "accuracy_new": (5, 10),
        "accuracy_delta": (-2, 10),
    }
    for name, (num, den) in expect.items():
        obj = m["metrics"][name]
        assert (obj["numerator"], obj["denominator"]) == (num, den), name
        assert obj["value"] == pytest.approx(num / den), name
        assert obj["reason"] is None and obj["ci"] is None
    # McNemar: NF=3, PF=1 -> P(X<=1)+P(X>=3) for Bin(4, 1/2) = (1+4+4+1)/16
    assert val(m, "mcnemar_p_value") == pytest.approx(10 / 16)
    assert m["similarity"]["metrics"] is None and m["similarity"]["reason"]


def test_inconsistency_needs_parsed():
    m = measure(OLD, NEW, inconsistent=None, inconsistency_reason="no parsed", bootstrap=0)
    obj = m["metrics"]["inconsistency_flip_rate"]
    assert obj["value"] is None and obj["reason"] == "no parsed"
    assert m["counts"]["inconsistency_flips"] is None


def test_undefined_denominators_are_null_with_reason():
    old = np.zeros(4, dtype=bool)  # old never right
    new = np.array([1, 1, 1, 1], dtype=bool)  # new never wrong
    m = measure(old, new, bootstrap=50)
    btc = m["metrics"]["backward_trust_compatibility"]
    assert btc["value"] is None and btc["numerator"] == 0 and btc["denominator"] == 0
    assert "old model got no instance right" in btc["reason"] and btc["ci"] is None
    bec = m["metrics"]["backward_error_compatibility"]
    assert bec["value"] is None and "new model got no instance wrong" in bec["reason"]
    assert m["metrics"]["negative_flip_impact"]["value"] is None
    # defined ones stay numbers, with 0 where 0 is the truth
    assert val(m, "negative_flip_rate") == 0.0 and val(m, "positive_flip_rate") == 1.0


def test_no_discordant_pairs_mcnemar_null():
    same = np.array([1, 0, 1], dtype=bool)
    m = measure(same, same, bootstrap=0)
    p = m["metrics"]["mcnemar_p_value"]
    assert p["value"] is None and "no discordant" in p["reason"]


def test_similarity_by_hand():
    s_old = np.array([0.5, 0.8, 0.2, 1.0])
    s_new = np.array([0.7, 0.8, 0.1, 0.4])  # D = +0.2, 0, -0.1, -0.6
    ok = np.ones(4, dtype=bool)
    sim = measure(ok, ok, scores=(s_old, s_new), tolerance=0.05, bootstrap=0)["similarity"]
    m = sim["metrics"]
    assert sim["tolerance"] == 0.05
    assert sim["counts"] == {"similarity_negative_flips": 2, "similarity_positive_flips": 1}
    assert m["similarity_negative_flip_rate"]["value"] == pytest.approx(0.5)
    assert m["similarity_positive_flip_rate"]["value"] == pytest.approx(0.25)
    assert m["mean_gain"]["value"] == pytest.approx(0.2)
    assert m["mean_regression"]["value"] == pytest.approx(0.35)
    assert (m["mean_regression"]["numerator"], m["mean_regression"]["denominator"]) == (
        pytest.approx(0.7),
        2,
    )
    assert m["mean_score_old"]["value"] == pytest.approx(0.625)
    assert m["mean_score_new"]["value"] == pytest.approx(0.5)
    wide = measure(ok, ok, scores=(s_old, s_new), tolerance=0.15, bootstrap=0)["similarity"][
        "metrics"
    ]
    assert wide["similarity_negative_flip_rate"]["value"] == pytest.approx(0.25)
    assert wide["mean_regression"]["value"] == pytest.approx(0.6)
    flat = measure(ok, ok, scores=(s_old, s_old), bootstrap=0)["similarity"]["metrics"]
    assert (
        flat["mean_gain"]["value"] is None and "no instance improved" in flat["mean_gain"]["reason"]
    )


def test_relative_change_vs_baseline():
    base = measure(OLD, NEW, bootstrap=0)  # NFR 0.3, acc_new 0.5
    cand_new = np.array([1, 1, 1, 1, 1, 0, 0, 1, 0, 0], dtype=bool)  # NFR 0.2, acc 0.6
    cand = measure(OLD, cand_new, bootstrap=0)
    rel = relative_change(cand, base, "new")
    assert rel["baseline"] == "new"
    assert rel["delta_negative_flip_rate"]["value"] == pytest.approx(-0.1)
    assert rel["negative_flip_rate_change_percent"]["value"] == pytest.approx(-100 / 3)
    assert rel["delta_accuracy"]["value"] == pytest.approx(0.1)
    assert rel["accuracy_change_percent"]["value"] == pytest.approx(20.0)
    zero = measure(OLD, OLD, bootstrap=0)
    rel0 = relative_change(cand, zero, "new")
    assert rel0["negative_flip_rate_change_percent"]["value"] is None
    assert (
        "baseline's negative_flip_rate is 0" in rel0["negative_flip_rate_change_percent"]["reason"]
    )


bools = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(bools)
def test_invariants(pairs):
    old = np.array([a for a, _ in pairs], dtype=bool)
    new = np.array([b for _, b in pairs], dtype=bool)
    m = measure(old, new, bootstrap=0)
    nfr, pfr = val(m, "negative_flip_rate"), val(m, "positive_flip_rate")
    acc_old, acc_new = val(m, "accuracy_old"), val(m, "accuracy_new")
    assert nfr - pfr == pytest.approx(acc_old - acc_new)
    assert val(m, "accuracy_delta") == pytest.approx(acc_new - acc_old)
    assert nfr <= 1 - acc_new + 1e-12
    both = m["counts"]["both_correct"] / m["n"]
    if m["counts"]["old_correct"]:
        assert val(m, "backward_trust_compatibility") * acc_old == pytest.approx(both)
    swapped = measure(new, old, bootstrap=0)
    assert val(swapped, "negative_flip_rate") == pytest.approx(pfr)
    assert val(swapped, "positive_flip_rate") == pytest.approx(nfr)
    assert (
        swapped["metrics"]["mcnemar_p_value"]["value"] == m["metrics"]["mcnemar_p_value"]["value"]
    )
