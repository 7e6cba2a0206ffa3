"""Results over training seeds, summarised as a level rather than a list.

A method's effect (say ΔNFR of a compatibility adapter vs the vanilla update) varies with the
training seed; one seed's instance-level bootstrap CI says nothing about that variation. Given
one number per seed:

* :func:`summarise_seeds` — mean, sample sd (ddof 1) and the 95% Student-t interval
  mean ± t_{1−α/2, n−1} · sd/√n over seeds (:func:`summarise_defined`: over the seeds where a
  value is defined);
* :func:`seed_difference_test` — per-seed paired differences (b − a, seed by seed) summarised
  the same way plus a one-sample t-test of "mean difference = 0" (``scipy.stats.ttest_1samp``).

The test is over per-seed *values*: a mean of per-seed p-values is not a p-value and is never
computed. Fewer than two seeds, or differences without spread, give nulls with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from compatlm.errors import CompatlmError


def _values(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)  # (S,) one value per seed
    if arr.ndim != 1 or arr.size == 0:
        raise CompatlmError(f"{what}: expected a non-empty list of per-seed numbers")
    if not np.all(np.isfinite(arr)):
        raise CompatlmError(f"{what}: per-seed values must be finite numbers, found {arr.tolist()}")
    return arr


def summarise_seeds(
    values: Sequence[float], *, confidence: float = 0.95, what: str = "per-seed values"
) -> dict[str, Any]:
    """``{n_seeds, mean, sd, ci, reason}`` of one number per seed (t-interval over seeds)."""
    arr = _values(values, what)
    n = int(arr.size)
    out: dict[str, Any] = {"n_seeds": n, "mean": float(arr.mean()), "sd": None, "ci": None}
    if n < 2:
        out["reason"] = "undefined: one seed has no spread (sd and interval need two or more)"
        return out
    from scipy.stats import t

    sd = float(arr.std(ddof=1))
    half = float(t.ppf(0.5 + confidence / 2.0, df=n - 1)) * sd / math.sqrt(n)
    out |= {"sd": sd, "ci": [out["mean"] - half, out["mean"] + half], "reason": None}
    return out


def summarise_defined(
    values: Sequence[float | None], *, reason: str = "undefined in every seed"
) -> dict[str, Any]:
    """:func:`summarise_seeds` of the seeds where the value is defined (not None); with none,
    the same fields null and ``reason``."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"n_seeds": 0, "mean": None, "sd": None, "ci": None, "reason": reason}
    return summarise_seeds(vals)


def seed_difference_test(
    a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95
) -> dict[str, Any]:
    """Summary of the per-seed differences b − a and a one-sample t-test of their mean = 0.

    ``a`` and ``b`` are paired by position (the same seed). Returns the :func:`summarise_seeds`
    fields of the differences plus ``t_statistic``, ``df`` and ``p_value`` (two-sided).
    """
    xa, xb = _values(a, "first per-seed list"), _values(b, "second per-seed list")
    if xa.size != xb.size:
        raise CompatlmError(
            f"per-seed lists must pair up seed by seed: {xa.size} values vs {xb.size}"
        )
    diff = xb - xa  # (S,)
    out = summarise_seeds(diff, confidence=confidence, what="per-seed differences")
    out |= {"t_statistic": None, "df": None, "p_value": None}
    if out["sd"] is None:
        return out
    out["df"] = int(diff.size - 1)
    # Equal up to rounding (0.3 − 0.2 vs 0.2 − 0.1): the t statistic would be rounding noise.
    if np.allclose(diff, diff[0], rtol=1e-12, atol=0.0):
        out["reason"] = "undefined: every seed gives the same difference (no spread to test)"
        return out
    from scipy.stats import ttest_1samp

    res = ttest_1samp(diff, 0.0)
    out |= {"t_statistic": float(res.statistic), "p_value": float(res.pvalue)}
    return out
