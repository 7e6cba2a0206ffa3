"""McNemar's exact test and the vectorised paired bootstrap."""

from __future__ import annotations

import time

import numpy as np
import pytest

from compatlm.eval.metrics import measure
from compatlm.eval.stats import (
    bootstrap_sums,
    mcnemar_p_value,
    percentile_ci,
    ratio_samples,
    resample_weights,
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


def test_resample_weights_rows_sum_to_n_and_are_seeded():
    w = resample_weights(7, 50, seed=3)
    assert w.shape == (50, 7) and np.all(w.sum(axis=1) == 7)
    assert np.array_equal(w, resample_weights(7, 50, seed=3))
    assert not np.array_equal(w, resample_weights(7, 50, seed=4))


def test_bootstrap_sums_match_a_loop():
    rng = np.random.default_rng(0)
    cols = rng.integers(0, 2, size=(30, 3)).astype(float)  # (N, K)
    sums = bootstrap_sums(cols, 20, seed=5)  # (B, K)
    idx = np.random.default_rng(5).integers(0, 30, size=(20, 30))  # same draws as the matrix
    expected = np.stack([cols[row].sum(axis=0) for row in idx])
    assert np.allclose(sums, expected)


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
        if name == "mcnemar_p_value" or obj["value"] is None:
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
