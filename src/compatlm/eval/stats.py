"""Paired statistics for old-vs-new comparisons: McNemar tests, (cluster) bootstrap, CIs.

* McNemar's exact test: under H0 "old and new are equally accurate", each discordant instance
  (a negative or a positive flip) is equally likely to go either way, so NF ~ Binomial(NF + PF,
  1/2). The two-sided exact p-value is ``scipy.stats.binomtest(NF, NF + PF, 0.5)``.
* Cluster-adjusted McNemar (Durkalski, Palesch, Lipsitz & Rust 2003, "Analysis of clustered
  matched-pair data", Statistics in Medicine 22:2417-2428, building on Obuchowski 1998, "On the
  comparison of correlated proportions for clustered data", Statistics in Medicine
  17:1495-1507): with b_k, c_k the negative and positive flips of cluster k,

      X² = (Σ_k b_k − Σ_k c_k)² / Σ_k (b_k − c_k)²,   X² ~ χ²(1) under H0,

  which is McNemar's uncorrected (B − C)² / (B + C) when every cluster holds one instance.
  Obuchowski's statistic centres the denominator at the pooled difference and scales it by
  K/(K − 1); Durkalski's form is used because it keeps that identity.
* Cluster permutation test: under H0 the labels "old" and "new" are exchangeable within a
  cluster, so swapping them (probability 1/2 per cluster, seeded) flips the sign of
  d_k = b_k − c_k. The p-value is (1 + #{|Σ s_k d_k| ≥ |Σ d_k|}) / (R + 1) over R random sign
  vectors s (Phipson & Smyth 2010: never 0).
* Paired bootstrap: units (instances, or clusters when instances share a source) are resampled
  jointly — old and new outputs of one unit stay together, which makes the interval *paired* —
  B resamples from a seeded ``numpy.random.Generator``, percentile interval at the configured
  confidence.

Memory is O(B·U), never O(B·N). Every metric is a ratio of sums of per-unit columns (M, K), and
a resample of M units with replacement only matters through how often each *distinct* row is
drawn: identical rows are merged (U distinct rows with multiplicities m) and each resample is
one draw of ``Multinomial(M, m / M)`` over them, times the (U, K) distinct rows. Classification
columns have at most ~16 distinct rows, so 1,000 resamples of 2M instances are a (1000, 16)
matrix. When rows barely compress (similarity scores, many clusters), drawing M unit indices per
resample is cheaper than a U-category multinomial (same distribution); either way resamples are
processed in chunks of at most :data:`CHUNK_BYTES` of draws.
"""

from __future__ import annotations

import numpy as np

# Peak extra memory of one chunk of resample draws; 64 MB keeps a 2M-unit bootstrap well
# inside the 1 GB a compare of 2M instances may use.
CHUNK_BYTES = 64 * 2**20
# numpy draws a U-category multinomial as U sequential binomials (~100 ns each), an index draw
# plus bincount costs ~12 ns per unit: multinomial wins while U is below ~M/8.
_INDEX_DRAW_RATIO = 8


def mcnemar_p_value(negative_flips: int, positive_flips: int) -> tuple[float | None, str | None]:
    """Exact two-sided McNemar p-value from the discordant counts; (None, reason) if none."""
    discordant = negative_flips + positive_flips
    if discordant == 0:
        return None, "undefined: no discordant instances (no negative or positive flips)"
    # Imported here: scipy.stats takes over a second to import, and `compatlm report` or the
    # gate never need it.
    from scipy.stats import binomtest

    return float(binomtest(negative_flips, discordant, 0.5).pvalue), None


def cluster_mcnemar(
    differences: np.ndarray,
) -> tuple[float | None, float | None, int, int, str | None]:
    """Durkalski et al. (2003) cluster-adjusted McNemar test from d_k = b_k − c_k per cluster.

    ``differences`` (G,) integer: negative minus positive flips of each cluster. Returns
    (statistic, p-value, numerator (Σ d_k)², denominator Σ d_k², reason); statistic and p are
    None with a reason when the denominator is 0.
    """
    d = np.asarray(differences, dtype=np.int64)  # (G,)
    num, den = int(d.sum()) ** 2, int((d * d).sum())
    if den == 0:
        return None, None, num, den, "undefined: no cluster has more flips one way than the other"
    from scipy.stats import chi2

    stat = num / den
    return stat, float(chi2.sf(stat, df=1)), num, den, None


def cluster_permutation_p_value(
    differences: np.ndarray, n_permutations: int, seed: int
) -> tuple[float | None, int | None, int | None, str | None]:
    """Two-sided sign-flip permutation test on clusters; (p, numerator, denominator, reason).

    ``differences`` (G,) integer d_k per cluster. Clusters with equal |d_k| are exchangeable,
    so a random sign vector is drawn as one Binomial(m_a, 1/2) count of "+" per distinct
    |d_k| = a (m_a clusters): O(R·A) memory and time for A distinct values, whatever G is.
    """
    d = np.asarray(differences, dtype=np.int64)  # (G,)
    if not d.any():
        return None, None, None, "undefined: no cluster has more flips one way than the other"
    if n_permutations <= 0:
        return None, None, None, "not computed: 0 resamples requested"
    observed = abs(int(d.sum()))
    values, counts = np.unique(np.abs(d[d != 0]), return_counts=True)  # (A,), (A,)
    rng = np.random.default_rng([seed, 1])  # a stream of its own, not the bootstrap's
    step = max(1, CHUNK_BYTES // (2 * 8 * values.size))  # the draws and the signed copy
    extreme = 0
    for start in range(0, n_permutations, step):
        size = min(step, n_permutations - start)
        plus = rng.binomial(counts, 0.5, size=(size, values.size))  # (R_chunk, A)
        totals = (2 * plus - counts) @ values  # (R_chunk,) Σ s_k d_k
        extreme += int(np.count_nonzero(np.abs(totals) >= observed))
    num, den = extreme + 1, n_permutations + 1
    return num / den, num, den, None


def compress_rows(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``units`` (M, K) -> ((U, K) float64 distinct rows, (U,) multiplicities)."""
    units = np.ascontiguousarray(units)  # any numeric dtype: int8 0/1 columns stay K bytes a row
    k = units.shape[1]
    # One opaque row-sized item per row: np.unique over those is ~8x faster than axis=0 (which
    # sorts structured records field by field). Rows differing only in the sign of a zero stay
    # apart; that costs one extra category, never a wrong sum.
    packed = units.view(np.dtype((np.void, units.dtype.itemsize * k))).ravel()  # (M,)
    uniq, counts = np.unique(packed, return_counts=True)
    return uniq.view(units.dtype).reshape(-1, k).astype(np.float64), counts


def group_codes(groups: np.ndarray | None) -> tuple[np.ndarray | None, int | None]:
    """Compact codes (N,) in [0, G) of any group labels (N,), and G; (None, None) for none."""
    if groups is None:
        return None, None
    uniq, codes = np.unique(groups, return_inverse=True)
    return codes.astype(np.int64).ravel(), int(uniq.size)


def group_sums(columns: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group column sums: ``columns`` (N, K), ``codes`` (N,) in [0, G) -> (G, K)."""
    out = np.empty((n_groups, columns.shape[1]))  # (G, K)
    for k in range(columns.shape[1]):
        out[:, k] = np.bincount(codes, weights=columns[:, k], minlength=n_groups)
    return out


def _multinomial_sums(
    uniq: np.ndarray, counts: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(B, K) sums when each resample draws M = Σ counts units over the U distinct rows."""
    m = int(counts.sum())
    p = counts / m  # (U,)
    out = np.empty((n_resamples, uniq.shape[1]))  # (B, K)
    # Per resample: U int64 draws and their float64 copy for the product.
    step = max(1, CHUNK_BYTES // (2 * 8 * uniq.shape[0]))
    for start in range(0, n_resamples, step):
        size = min(step, n_resamples - start)
        weights = rng.multinomial(m, p, size=size)  # (B_chunk, U) draws of each distinct row
        out[start : start + size] = weights.astype(np.float64) @ uniq  # (B_chunk, U) @ (U, K)
    return out


def _index_sums(units: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, K) sums from M unit indices drawn per resample (for rows that barely compress)."""
    m = units.shape[0]
    out = np.empty((n_resamples, units.shape[1]))  # (B, K)
    # Per resample: M int64 indices, the M-long count row and its float64 copy.
    step = max(1, CHUNK_BYTES // (3 * 8 * m))
    for start in range(0, n_resamples, step):
        size = min(step, n_resamples - start)
        idx = rng.integers(0, m, size=(size, m))  # (B_chunk, M) unit indices
        idx += (np.arange(size, dtype=np.int64) * m)[:, None]  # each row into its own block
        weights = np.bincount(idx.ravel(), minlength=size * m).reshape(size, m)  # (B_chunk, M)
        del idx
        out[start : start + size] = weights.astype(np.float64) @ units  # (B_chunk, M) @ (M, K)
    return out


def bootstrap_sums(units: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Column sums in every resample of the M units (rows) of ``units`` (M, K) -> (B, K)."""
    rng = np.random.default_rng(seed)
    uniq, counts = compress_rows(units)
    if uniq.shape[0] * _INDEX_DRAW_RATIO <= units.shape[0]:
        return _multinomial_sums(uniq, counts, n_resamples, rng)
    return _index_sums(np.asarray(units, dtype=np.float64), n_resamples, rng)


def percentile_ci(samples: np.ndarray, confidence: float) -> list[float] | None:
    """Percentile interval of the finite entries of ``samples`` (B,); None if there are none.

    Resamples where a ratio is undefined (its denominator drew zero units) are left out:
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
