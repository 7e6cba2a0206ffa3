"""Clustered statistics: cluster-adjusted McNemar, cluster permutation test, cluster bootstrap,
and groups carried from task files and prediction files into metrics.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compatlm.config import CompareConfig
from compatlm.errors import CompatlmError
from compatlm.eval.compare import compare_sets
from compatlm.eval.metrics import measure
from compatlm.eval.records import load_predictions
from compatlm.eval.stats import cluster_mcnemar, cluster_permutation_p_value
from compatlm.tasks.local import load_local_jsonl

# Four clusters (b = negative flips, c = positive flips, plus concordant instances):
#   A: b=3 c=0 + 1 both right -> d=3     B: b=1 c=1 + 1 both wrong -> d=0
#   C: b=0 c=1 + 2 both right -> d=-1    D: b=1 c=0               -> d=1
# B = 5, C = 2: X² = (5 − 2)² / (9 + 0 + 1 + 1) = 9/11; plain McNemar would say 9/7.
OLD = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1], dtype=bool)
NEW = np.array([0, 0, 0, 1, 0, 1, 0, 1, 1, 1, 0], dtype=bool)
GROUPS = np.array(["A", "A", "A", "A", "B", "B", "B", "C", "C", "C", "D"])


def _chi2_1_sf(x: float) -> float:
    """P(χ²₁ > x) = erfc(sqrt(x / 2)), written out so the test does not reuse scipy."""
    return math.erfc(math.sqrt(x / 2))


def test_cluster_adjusted_mcnemar_by_hand():
    stat, p, num, den, reason = cluster_mcnemar(np.array([3, 0, -1, 1]))
    assert (num, den, reason) == (9, 11, None)
    assert stat == pytest.approx(9 / 11) and p == pytest.approx(_chi2_1_sf(9 / 11))
    m = measure(OLD, NEW, groups=GROUPS, bootstrap=0)["metrics"]
    s = m["cluster_adjusted_mcnemar_statistic"]
    assert (s["value"], s["numerator"], s["denominator"]) == (pytest.approx(9 / 11), 9, 11)
    assert m["cluster_adjusted_mcnemar_p_value"]["value"] == pytest.approx(_chi2_1_sf(9 / 11))
    # Without groups it is McNemar's uncorrected chi-square (B − C)² / (B + C) = 9/7.
    flat = measure(OLD, NEW, bootstrap=0)["metrics"]["cluster_adjusted_mcnemar_statistic"]
    assert (flat["value"], flat["numerator"], flat["denominator"]) == (pytest.approx(9 / 7), 9, 7)


def test_cluster_mcnemar_undefined_when_every_cluster_cancels():
    stat, p, num, den, reason = cluster_mcnemar(np.array([0, 0, 0]))
    assert stat is None and p is None and (num, den) == (0, 0) and "no cluster" in reason


pairs = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=80)


@settings(max_examples=100, deadline=None)
@given(pairs)
def test_singleton_clusters_give_plain_mcnemar_chi_square(rows):
    old = np.array([a for a, _ in rows], dtype=bool)
    new = np.array([b for _, b in rows], dtype=bool)
    nf, pf = int((old & ~new).sum()), int((~old & new).sum())
    for groups in (None, np.arange(old.size)):
        obj = measure(old, new, groups=groups, bootstrap=0)["metrics"]
        stat = obj["cluster_adjusted_mcnemar_statistic"]
        if nf + pf == 0:
            assert stat["value"] is None and stat["reason"]
            continue
        assert stat["value"] == pytest.approx((nf - pf) ** 2 / (nf + pf))
        assert obj["cluster_adjusted_mcnemar_p_value"]["value"] == pytest.approx(
            _chi2_1_sf((nf - pf) ** 2 / (nf + pf))
        )


def test_cluster_permutation_matches_the_exact_enumeration():
    # d = (3, 0, −1, 1): T* = ±3 ±1 ±1 over 8 equally likely sign vectors; |T*| ≥ 3 in 6.
    p, num, den, reason = cluster_permutation_p_value(np.array([3, 0, -1, 1]), 20_000, seed=0)
    assert reason is None and den == 20_001 and p == num / den
    assert abs(p - 0.75) < 0.015
    assert (p, num) == cluster_permutation_p_value(np.array([3, 0, -1, 1]), 20_000, seed=0)[:2]
    # Singletons: the sign-flip test is the exact McNemar test, 2 P(Bin(10, ½) ≤ 2) for 8 vs 2.
    single = np.array([1] * 8 + [-1] * 2 + [0] * 30)
    assert abs(cluster_permutation_p_value(single, 40_000, seed=1)[0] - 0.109375) < 0.01
    assert cluster_permutation_p_value(np.zeros(4), 100, 0)[0] is None
    assert "0 resamples" in cluster_permutation_p_value(single, 0, 0)[3]


def test_no_groups_is_each_instance_its_own_group():
    rng = np.random.default_rng(4)
    old = rng.random(300) < 0.7
    new = np.where(rng.random(300) < 0.2, ~old, old)
    scores = (rng.random(300), rng.random(300))
    plain = measure(old, new, inconsistent=old != new, scores=scores, bootstrap=300, seed=2)
    single = measure(
        old, new, inconsistent=old != new, scores=scores, bootstrap=300, seed=2,
        groups=np.arange(300),
    )  # fmt: skip
    assert (plain["clustered"], plain["n_groups"]) == (False, None)
    assert "no groups" in plain["n_groups_reason"]
    assert (single["clustered"], single["n_groups"], single["n_groups_reason"]) == (True, 300, None)
    assert plain["metrics"] == single["metrics"]
    assert plain["similarity"] == single["similarity"]


def test_cluster_bootstrap_widens_intervals_of_correlated_instances():
    """60 sources, each repeated 10 times: the information is that of 60 instances."""
    rng = np.random.default_rng(0)
    old60 = rng.random(60) < 0.6
    new60 = np.where(rng.random(60) < 0.3, ~old60, old60)
    old, new = np.repeat(old60, 10), np.repeat(new60, 10)  # (600,)
    groups = np.repeat(np.arange(60), 10)

    def width(m: dict) -> float:
        lo, hi = m["metrics"]["negative_flip_rate"]["ci"]
        return hi - lo

    naive = measure(old, new, bootstrap=2000, seed=0)
    cluster = measure(old, new, groups=groups, bootstrap=2000, seed=0)
    sixty = measure(old60, new60, bootstrap=2000, seed=0)
    assert cluster["n_groups"] == 60 and cluster["n"] == 600
    assert (
        cluster["metrics"]["negative_flip_rate"]["value"]
        == sixty["metrics"]["negative_flip_rate"]["value"]
    )
    assert width(cluster) > 2.5 * width(naive)  # ~sqrt(10) wider
    assert width(cluster) == pytest.approx(width(sixty), rel=0.25)
    # Ten copies of each cluster scale every d_k by 10: X² = 100 D² / (100 Σ d_k²) is unchanged.
    for name in ("cluster_adjusted_mcnemar_statistic", "cluster_adjusted_mcnemar_p_value"):
        assert cluster["metrics"][name]["value"] == pytest.approx(sixty["metrics"][name]["value"])


# ---------------------------------------------------------------- files and compare


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(correct, groups, slices=None):
    return [
        {"example_id": str(i), "correct": bool(c)}
        | ({} if g is None else {"group": g})
        | ({} if slices is None else {"slice": slices[i]})
        for i, (c, g) in enumerate(zip(correct, groups, strict=True))
    ]


def test_compare_reports_groups_and_clustered_tests(tmp_path):
    labels = GROUPS.tolist()
    slices = ["x"] * 7 + ["y"] * 4  # clusters A, B in x; C, D in y
    old = load_predictions(_write(tmp_path / "old.jsonl", _rows(OLD, labels, slices)))
    new = load_predictions(_write(tmp_path / "new.jsonl", _rows(NEW, [None] * 11, slices)))
    c = compare_sets(old, new, CompareConfig(bootstrap=200))
    doc = c.to_json()
    assert (doc["n"], doc["n_groups"], doc["clustered"]) == (11, 4, True)
    assert doc["metrics"]["cluster_adjusted_mcnemar_statistic"]["value"] == pytest.approx(9 / 11)
    assert (c.slices["x"]["n_groups"], c.slices["y"]["n_groups"]) == (2, 2)
    # slice x: A (d=3), B (d=0) -> 9/9; slice y: C (d=-1), D (d=1) -> 0/2
    assert c.slices["x"]["metrics"]["cluster_adjusted_mcnemar_statistic"]["value"] == 1.0
    assert c.slices["y"]["metrics"]["cluster_adjusted_mcnemar_statistic"]["value"] == 0.0
    flat = compare_sets(new, new, CompareConfig(bootstrap=0))
    assert (flat.n_groups, flat.clustered) == (None, False) and flat.n_groups_reason


def test_integer_groups_are_strings(tmp_path):
    a = load_predictions(_write(tmp_path / "a.jsonl", _rows([1, 0], [7, 7])))
    b = load_predictions(_write(tmp_path / "b.jsonl", _rows([1, 1], ["7", "7"])))
    assert a.rows["0"].group == "7"
    assert compare_sets(a, b, CompareConfig(bootstrap=0)).n_groups == 1


def test_group_differs_between_files(tmp_path):
    a = load_predictions(_write(tmp_path / "a.jsonl", _rows([1, 0, 1], ["g", "g", "h"])))
    b = load_predictions(_write(tmp_path / "b.jsonl", _rows([1, 0, 1], ["g", "g", "k"])))
    with pytest.raises(CompatlmError, match=r"example '2' is in group 'h' in .*a.jsonl:3 but"):
        compare_sets(a, b, CompareConfig(bootstrap=0))


@pytest.mark.parametrize(
    ("value", "found"), [(1.5, "1.5 (float)"), (True, "True (boolean)"), (["g"], "list")]
)
def test_group_of_the_wrong_type(tmp_path, value, found):
    path = _write(tmp_path / "p.jsonl", [{"example_id": "0", "correct": True, "group": value}])
    with pytest.raises(CompatlmError, match=r"p.jsonl:1: field 'group': expected") as err:
        load_predictions(path)
    assert found in str(err.value)


def test_some_rows_without_a_group(tmp_path):
    path = _write(tmp_path / "p.jsonl", _rows([1, 0, 1], ["g", "g", None]))
    with pytest.raises(CompatlmError, match=r"p.jsonl:3: field 'group': this row has no group"):
        load_predictions(path)


def test_task_file_groups(tmp_path):
    rows = [
        {"id": 1, "context": "c", "choices": ["a", "b"], "label": 0, "group": 12},
        {"id": 2, "context": "c", "choices": ["a", "b"], "label": 1, "group": "doc"},
    ]
    _, examples = load_local_jsonl(_write(tmp_path / "t.jsonl", rows))
    assert [e.group for e in examples] == ["12", "doc"]
    bad = _write(tmp_path / "bad.jsonl", [rows[0] | {"group": 2.5}])
    with pytest.raises(CompatlmError, match=r"bad.jsonl:1: field 'group': expected a string"):
        load_local_jsonl(bad)
    mixed = _write(
        tmp_path / "mixed.jsonl", [rows[0], {k: v for k, v in rows[1].items() if k != "group"}]
    )
    with pytest.raises(CompatlmError, match=r"mixed.jsonl:2: field 'group': no group"):
        load_local_jsonl(mixed)


def test_cli_compare_writes_clustered_metrics(tmp_path):
    from compatlm.cli import main

    labels = GROUPS.tolist()
    a = _write(tmp_path / "a.jsonl", _rows(OLD, labels))
    b = _write(tmp_path / "b.jsonl", _rows(NEW, labels))
    out = tmp_path / "out"
    assert main(["-q", "compare", str(a), str(b), "--out", str(out), "--bootstrap", "50"]) == 0
    comp = json.loads((out / "metrics.json").read_text())["comparisons"][0]
    assert (comp["n"], comp["n_groups"], comp["clustered"]) == (11, 4, True)
    perm = comp["metrics"]["cluster_permutation_p_value"]
    assert perm["denominator"] == 51 and perm["value"] == perm["numerator"] / 51
    gate = ["--fail-if", "cluster_adjusted_mcnemar_p_value<0.5", "--overwrite"]
    assert main(["-q", "compare", str(a), str(b), "--out", str(out), *gate]) == 1  # p = 0.37
