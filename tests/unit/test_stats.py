"""McNemar's exact test, the O(B)-memory paired bootstrap and the multi-seed summary."""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np
import pytest

from compatlm.errors import CompatlmError
from compatlm.eval import stats
from compatlm.eval.metrics import PAIRED_TESTS, classification_columns, measure
from compatlm.eval.seeds import seed_difference_test, summarise_seeds
from compatlm.eval.stats import (
    bootstrap_sums,
    compress_rows,
    group_sums,
    mcnemar_p_value,
    percentile_ci,
    ratio_samples,
)


def test_mcnemar_hand_case():
    # NF=8, PF=2: 2 * P(X <= 2 | Bin(10, 1/2)) = 2 * (1 + 10 + 45) / 1024 = 0.109375
    p, reason = mcnemar_p_value(8, 2)
    assert p == pytest.approx(0.109375) and reason is None
    assert mcnemar_p_value(2, 8)[0] == pytest.approx(0.109375)
    assert mcnemar_p_value(3, 3)[0] == pytest.approx(1.0)


def test_mcnemar_undefined_without_discordant_pairs():
    p, reason = mcnemar_p_value(0, 0)
    assert p is None and "no discordant" in reason


def test_compress_rows_by_hand():
    units = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0.5, 2]])  # (5, 2)
    uniq, counts = compress_rows(units)
    got = {tuple(r): int(c) for r, c in zip(uniq.tolist(), counts, strict=True)}
    assert got == {(1.0, 0.0): 3, (0.0, 1.0): 1, (0.5, 2.0): 1}
    assert np.allclose(counts @ uniq, units.sum(axis=0))


def test_group_sums_by_hand():
    cols = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # (4, 2)
    codes = np.array([2, 0, 2, 0])
    assert group_sums(cols, codes, 3).tolist() == [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]]


def _columns(n: int, distinct: bool, seed: int = 0) -> np.ndarray:
    """(n, 3) units: 0/1 columns that compress to 8 rows, or float columns that do not."""
    rng = np.random.default_rng(seed)
    if distinct:
        return np.column_stack([np.ones(n), rng.random(n), rng.random(n)])
    return np.column_stack([np.ones(n), rng.random(n) < 0.3, rng.random(n) < 0.6]).astype(float)


@pytest.mark.parametrize("distinct", [False, True], ids=["multinomial", "index-draws"])
def test_bootstrap_sums_resample_m_units_and_are_seeded(distinct):
    units = _columns(400, distinct)
    sums = bootstrap_sums(units, 50, seed=3)  # (B, K)
    assert sums.shape == (50, 3) and np.all(sums[:, 0] == 400)  # every resample draws M units
    assert np.array_equal(sums, bootstrap_sums(units, 50, seed=3))
    assert not np.array_equal(sums, bootstrap_sums(units, 50, seed=4))


@pytest.mark.parametrize("distinct", [False, True], ids=["multinomial", "index-draws"])
def test_bootstrap_sums_have_the_resampling_mean_and_covariance(distinct):
    # Sums of M draws with replacement: mean M·mean(x), covariance M·Cov(x) (population).
    units = _columns(300, distinct, seed=1)[:, 1:]  # (M, 2)
    b = 6000
    sums = bootstrap_sums(units, b, seed=9)  # (B, 2)
    m = units.shape[0]
    mean = m * units.mean(axis=0)
    cov = m * np.cov(units, rowvar=False, ddof=0)
    se = np.sqrt(np.diag(cov) / b)
    assert np.all(np.abs(sums.mean(axis=0) - mean) < 4 * se)
    assert np.allclose(np.cov(sums, rowvar=False), cov, rtol=0.1, atol=0.1 * cov.max())


@pytest.mark.parametrize("distinct", [False, True], ids=["multinomial", "index-draws"])
def test_bootstrap_sums_do_not_depend_on_the_chunk_size(distinct, monkeypatch):
    units = _columns(500, distinct, seed=2)
    whole = bootstrap_sums(units, 200, seed=1)
    monkeypatch.setattr(stats, "CHUNK_BYTES", 1)  # one resample per chunk
    # Same draws; only the matrix product's summation order may differ (~1e-13).
    assert np.allclose(whole, bootstrap_sums(units, 200, seed=1), rtol=0, atol=1e-9)


def test_bootstrap_memory_does_not_grow_with_resamples_times_instances():
    """1M instances x 1,000 resamples: a (B, N) weight matrix would need 8 GB."""
    rng = np.random.default_rng(0)
    old = rng.random(1_000_000) < 0.7
    new = np.where(rng.random(old.size) < 0.1, ~old, old)
    cols = classification_columns(old, new, old != new)
    matrix = np.stack(list(cols.values()), axis=1)  # (N, K)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        sums = bootstrap_sums(matrix, 1000, seed=0)  # (B, K)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    assert sums.shape == (1000, matrix.shape[1])
    # Compressing the rows sorts one packed copy of the (N, K) matrix; nothing is (B, N).
    assert peak < 2.5 * matrix.nbytes, f"peak {peak / 2**20:.0f} MB"
    assert elapsed < 10.0


def test_ratio_and_percentile_helpers():
    r = ratio_samples(np.array([1.0, 2.0, 3.0]), np.array([2.0, 0.0, 4.0]))
    assert r[0] == 0.5 and np.isnan(r[1]) and r[2] == 0.75
    assert percentile_ci(np.array([np.nan, np.nan]), 0.95) is None
    lo, hi = percentile_ci(np.arange(101, dtype=float), 0.9)
    assert (lo, hi) == (pytest.approx(5.0), pytest.approx(95.0))


def _case(n: int = 200):
    rng = np.random.default_rng(1)
    old = rng.random(n) < 0.7
    new = np.where(rng.random(n) < 0.15, ~old, old)
    return old, new


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    old, new = _case()
    a = measure(old, new, bootstrap=500, confidence=0.95, seed=11)
    b = measure(old, new, bootstrap=500, confidence=0.95, seed=11)
    c = measure(old, new, bootstrap=500, confidence=0.95, seed=12)
    for name, obj in a["metrics"].items():
        if name in PAIRED_TESTS or obj["value"] is None:
            continue
        lo, hi = obj["ci"]
        assert lo <= obj["value"] <= hi, name
        assert obj["ci"] == b["metrics"][name]["ci"], name
    assert a["metrics"]["negative_flip_rate"]["ci"] != c["metrics"]["negative_flip_rate"]["ci"]
    narrow = measure(old, new, bootstrap=500, confidence=0.5, seed=11)["metrics"][
        "negative_flip_rate"
    ]["ci"]
    wide = a["metrics"]["negative_flip_rate"]["ci"]
    assert wide[0] <= narrow[0] and narrow[1] <= wide[1]


def test_bootstrap_is_fast():
    old, new = _case(2000)
    scores = (np.where(old, 0.9, 0.1), np.where(new, 0.8, 0.2))
    start = time.perf_counter()
    measure(old, new, inconsistent=old != new, scores=scores, bootstrap=1000, seed=0)
    assert time.perf_counter() - start < 1.0


def test_summarise_seeds_by_hand():
    # 1, 2, 3, 4: mean 2.5, sd sqrt(5/3); t_{0.975, 3} = 3.182446305284263
    s = summarise_seeds([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(5 / 3)
    half = 3.182446305284263 * sd / 2
    assert s["n_seeds"] == 4 and s["mean"] == pytest.approx(2.5)
    assert s["sd"] == pytest.approx(sd)
    assert s["ci"] == [pytest.approx(2.5 - half), pytest.approx(2.5 + half)]
    one = summarise_seeds([0.3])
    assert one["mean"] == 0.3 and one["sd"] is None and one["ci"] is None and one["reason"]


def test_seed_difference_test_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3 on 2 df.
    # With 2 df, P(|T| > t) = 1 - t / sqrt(t^2 + 2) = 1 - sqrt(12 / 14); t_{0.975, 2} = 0.95 *
    # sqrt(2 / (4 * 0.975 * 0.025)).
    r = seed_difference_test([0.10, 0.20, 0.30], [1.10, 2.20, 3.30])
    assert r["mean"] == pytest.approx(2.0) and r["sd"] == pytest.approx(1.0)
    assert r["t_statistic"] == pytest.approx(2 * math.sqrt(3)) and r["df"] == 2
    assert r["p_value"] == pytest.approx(1 - math.sqrt(12 / 14))
    half = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025)) / math.sqrt(3)
    assert r["ci"] == [pytest.approx(2 - half), pytest.approx(2 + half)]
    same = seed_difference_test([0.1, 0.2], [0.2, 0.3])
    assert same["p_value"] is None and "same difference" in same["reason"]
    with pytest.raises(CompatlmError, match="seed by seed"):
        seed_difference_test([0.1, 0.2], [0.2])
    with pytest.raises(CompatlmError, match="finite"):
        summarise_seeds([0.1, float("nan")])


def test_summarise_defined_skips_undefined_seeds_and_names_the_empty_case():
    from compatlm.eval.seeds import summarise_defined

    assert summarise_defined([1.0, None, 3.0]) == summarise_seeds([1.0, 3.0])
    empty = summarise_defined([None, None], reason="undefined")
    assert empty == {"n_seeds": 0, "mean": None, "sd": None, "ci": None, "reason": "undefined"}
    assert summarise_defined([])["reason"] == "undefined in every seed"
