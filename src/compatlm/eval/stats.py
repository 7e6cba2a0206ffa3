"""Paired statistics for old-vs-new comparisons.

* McNemar's exact test: under H0 "old and new are equally accurate", each discordant instance
  (a negative or a positive flip) is equally likely to go either way, so NF ~ Binomial(NF + PF,
  1/2). The two-sided exact p-value is ``scipy.stats.binomtest(NF, NF + PF, 0.5)``.
* Paired bootstrap: instances are resampled jointly (old and new outputs of one instance stay
  together, which is what makes the interval *paired*), B resamples from a seeded
  ``numpy.random.Generator``, percentile interval at the configured confidence.

The bootstrap is vectorised: one (B, N) index matrix becomes a (B, N) matrix of how often each
instance was drawn, and every statistic that is a ratio of sums of per-instance columns is then a
single matrix product. N=2000, B=1000 takes a few milliseconds.
"""

from __future__ import annotations

import numpy as np


def mcnemar_p_value(negative_flips: int, positive_flips: int) -> tuple[float | None, str | None]:
    """Exact two-sided McNemar p-value from the discordant counts; (None, reason) if none."""
    discordant = negative_flips + positive_flips
    if discordant == 0:
        return None, "undefined: no discordant instances (no negative or positive flips)"
    # Imported here: scipy.stats takes over a second to import, and `compatlm report` or the
    # gate never need it.
    from scipy.stats import binomtest

    return float(binomtest(negative_flips, discordant, 0.5).pvalue), None


def resample_weights(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(B, N) matrix: how many times each instance appears in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))  # (B, N) instance indices, with replacement
    # Offset each row's indices into its own block so one bincount counts every row at once.
    flat = idx + (np.arange(n_resamples, dtype=np.int64) * n)[:, None]  # (B, N)
    counts = np.bincount(flat.ravel(), minlength=n_resamples * n)  # (B*N,)
    return counts.reshape(n_resamples, n).astype(np.float64)  # (B, N)


def bootstrap_sums(columns: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Column sums in every resample: ``columns`` (N, K) -> (B, K)."""
    n = columns.shape[0]
    weights = resample_weights(n, n_resamples, seed)  # (B, N)
    return weights @ columns  # (B, N) @ (N, K) -> (B, K)


def percentile_ci(samples: np.ndarray, confidence: float) -> list[float] | None:
    """Percentile interval of the finite entries of ``samples`` (B,); None if there are none.

    Resamples where a ratio is undefined (its denominator drew zero instances) are left out:
    they carry no information about the ratio's spread.
    """
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]


def ratio_samples(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator with NaN where the denominator is zero."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out
