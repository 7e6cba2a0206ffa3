"""Compatibility metrics from dataset-level counts over N matched instances.

Every metric is an object ``{"value", "numerator", "denominator", "ci", "reason"}``: a rate is
stored with the counts it came from, and an undefined rate is ``null`` with the reason, never 0.

Classification (``correct`` on both sides), "old" = the reference, "new" = the other model:

* negative_flip_rate       NF / N, NF = #(old correct ∧ new wrong)           (Yan et al. 2021)
* positive_flip_rate       PF / N, PF = #(old wrong ∧ new correct)
* inconsistency_flip_rate  #(new wrong ∧ old parsed ≠ new parsed) / N   (MUSCLE's NFR_mc,
  Echterhoff et al. 2024, arXiv 2407.09435: the answer changed *and* the new one is wrong)
* backward_trust_compatibility  #(both correct) / #(old correct)     (Srivastava et al. 2020)
* backward_error_compatibility  #(both wrong) / #(new wrong)         (Srivastava et al. 2020)
* backward_error_compatibility_old  #(both wrong) / #(old wrong)     (the BCML library's variant)
* negative_flip_impact NF / #(new wrong), positive_flip_impact PF / #(old wrong)
* accuracy_old, accuracy_new, accuracy_delta = (PF − NF) / N = accuracy_new − accuracy_old
* mcnemar_p_value (exact), cluster_adjusted_mcnemar_statistic / _p_value (Durkalski et al.
  2003) and cluster_permutation_p_value (see :mod:`compatlm.eval.stats`)

Similarity (generation, both sides carry a per-instance ``score`` S in [0, 1]; MUSCLE §3):
D = S_new − S_old; similarity_negative_flip_rate #(D < −τ)/N, similarity_positive_flip_rate
#(D > τ)/N, mean_gain = mean D over D > τ, mean_regression = mean |D| over D < −τ,
mean_score_old, mean_score_new; τ = the tolerance.

Each metric is a ratio of sums of per-instance columns, so the paired bootstrap CI is computed
from the very same definition (see :func:`compute`). Instances that share a ``group`` (a fact,
a source document) are correlated: with groups, the columns are summed per group and the
bootstrap resamples groups (cluster bootstrap), and the cluster-adjusted tests use per-group
flip counts. Without groups every instance is its own group (``clustered: false``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from compatlm import __version__
from compatlm.eval.stats import (
    bootstrap_sums,
    cluster_mcnemar,
    cluster_permutation_p_value,
    group_codes,
    group_sums,
    mcnemar_p_value,
    percentile_ci,
    ratio_samples,
)

if TYPE_CHECKING:
    from compatlm.config import CompareConfig


def metric_obj(
    value: float | None = None,
    numerator: float | None = None,
    denominator: int | None = None,
    ci: list[float] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "value": value,
        "numerator": numerator,
        "denominator": denominator,
        "ci": ci,
        "reason": reason,
    }


@dataclass(frozen=True)
class Ratio:
    """metric = sum(numerator column) / sum(denominator column); ``undefined`` if that is 0."""

    name: str
    numerator: str
    denominator: str
    undefined: str


_NO_N = "undefined: no matched instances"
CLASSIFICATION_RATIOS = (
    Ratio("negative_flip_rate", "negative_flip", "n", _NO_N),
    Ratio("positive_flip_rate", "positive_flip", "n", _NO_N),
    Ratio("inconsistency_flip_rate", "inconsistency_flip", "n", _NO_N),
    Ratio(
        "backward_trust_compatibility",
        "both_correct",
        "old_correct",
        "undefined: the old model got no instance right",
    ),
    Ratio(
        "backward_error_compatibility",
        "both_wrong",
        "new_wrong",
        "undefined: the new model got no instance wrong",
    ),
    Ratio(
        "backward_error_compatibility_old",
        "both_wrong",
        "old_wrong",
        "undefined: the old model got no instance wrong",
    ),
    Ratio(
        "negative_flip_impact",
        "negative_flip",
        "new_wrong",
        "undefined: the new model got no instance wrong",
    ),
    Ratio(
        "positive_flip_impact",
        "positive_flip",
        "old_wrong",
        "undefined: the old model got no instance wrong",
    ),
    Ratio("accuracy_old", "old_correct", "n", _NO_N),
    Ratio("accuracy_new", "new_correct", "n", _NO_N),
    Ratio("accuracy_delta", "flip_balance", "n", _NO_N),
)
SIMILARITY_RATIOS = (
    Ratio("similarity_negative_flip_rate", "similarity_negative_flip", "n", _NO_N),
    Ratio("similarity_positive_flip_rate", "similarity_positive_flip", "n", _NO_N),
    Ratio(
        "mean_gain",
        "gain",
        "similarity_positive_flip",
        "undefined: no instance improved by more than the tolerance",
    ),
    Ratio(
        "mean_regression",
        "regression",
        "similarity_negative_flip",
        "undefined: no instance regressed by more than the tolerance",
    ),
    Ratio("mean_score_old", "score_old", "n", _NO_N),
    Ratio("mean_score_new", "score_new", "n", _NO_N),
)
PAIRED_TESTS = (
    "mcnemar_p_value",
    "cluster_adjusted_mcnemar_statistic",
    "cluster_adjusted_mcnemar_p_value",
    "cluster_permutation_p_value",
)
CLASSIFICATION_METRICS = (*(r.name for r in CLASSIFICATION_RATIOS), *PAIRED_TESTS)
SIMILARITY_METRICS = tuple(r.name for r in SIMILARITY_RATIOS)
COUNT_NAMES = (
    "n",
    "old_correct",
    "new_correct",
    "old_wrong",
    "new_wrong",
    "both_correct",
    "both_wrong",
    "negative_flips",
    "positive_flips",
    "inconsistency_flips",
)
SIMILARITY_COUNT_NAMES = ("similarity_negative_flips", "similarity_positive_flips")


def classification_columns(
    old_correct: np.ndarray, new_correct: np.ndarray, inconsistent: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Per-instance 0/1 columns (each (N,) int8) from the two correctness vectors (N,) bool.

    int8, not float: 2M instances x 12 columns are 24 MB instead of 192 MB, and the bootstrap
    compresses K-byte rows. Sums accumulate in int64 (numpy's default for small integers).
    """
    oc = old_correct.astype(bool)
    nc = new_correct.astype(bool)
    cols = {
        "n": np.ones(oc.shape, dtype=np.int8),
        "old_correct": oc,
        "new_correct": nc,
        "old_wrong": ~oc,
        "new_wrong": ~nc,
        "both_correct": oc & nc,
        "both_wrong": ~oc & ~nc,
        "negative_flip": oc & ~nc,
        "positive_flip": ~oc & nc,
    }
    cols["flip_balance"] = cols["positive_flip"].astype(np.int8) - cols["negative_flip"]
    if inconsistent is not None:
        cols["inconsistency_flip"] = inconsistent.astype(bool) & ~nc
    return {k: v.astype(np.int8) for k, v in cols.items()}


def similarity_columns(
    score_old: np.ndarray, score_new: np.ndarray, tolerance: float
) -> dict[str, np.ndarray]:
    """Columns for similarity flips from per-instance scores (N,) in [0, 1]."""
    delta = score_new - score_old  # (N,) D = S_new − S_old
    neg = delta < -tolerance
    pos = delta > tolerance
    return {
        "n": np.ones(delta.shape),
        "similarity_negative_flip": neg.astype(np.float64),
        "similarity_positive_flip": pos.astype(np.float64),
        "gain": np.where(pos, delta, 0.0),
        "regression": np.where(neg, -delta, 0.0),
        "score_old": score_old.astype(np.float64),
        "score_new": score_new.astype(np.float64),
    }


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def compute(
    columns: dict[str, np.ndarray],
    ratios: tuple[Ratio, ...],
    *,
    bootstrap: int,
    confidence: float,
    seed: int,
    missing: dict[str, str] | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """Point estimates and paired-bootstrap CIs of ``ratios`` over ``columns``.

    ``missing`` maps a column that could not be built to the reason (e.g. no parsed answers);
    ratios needing it come out null with that reason. ``groups`` (N,) int codes in [0, G)
    make the bootstrap resample whole groups (the columns summed per group) instead of
    instances.
    """
    missing = missing or {}
    names = sorted(columns)
    matrix = np.stack([columns[k] for k in names], axis=1)  # (N, K)
    totals = dict(zip(names, matrix.sum(axis=0), strict=True))
    samples = None
    if bootstrap > 0 and matrix.shape[0] > 0:
        units = matrix if groups is None else group_sums(matrix, groups, int(groups.max()) + 1)
        sums = bootstrap_sums(units, bootstrap, seed)  # (B, K)
        samples = {k: sums[:, i] for i, k in enumerate(names)}
    out: dict[str, dict[str, Any]] = {}
    for r in ratios:
        if r.numerator in missing:
            out[r.name] = metric_obj(reason=missing[r.numerator])
            continue
        num, den = totals[r.numerator], totals[r.denominator]
        if den == 0:
            out[r.name] = metric_obj(numerator=_number(num), denominator=0, reason=r.undefined)
            continue
        ci = None
        if samples is not None:
            ci = percentile_ci(
                ratio_samples(samples[r.numerator], samples[r.denominator]), confidence
            )
        out[r.name] = metric_obj(float(num / den), _number(num), int(den), ci)
    return out


def paired_tests(
    cols: dict[str, np.ndarray], groups: np.ndarray | None, *, permutations: int, seed: int
) -> dict[str, dict[str, Any]]:
    """McNemar's exact test and the cluster-adjusted tests on per-group flip differences."""
    nf, pf = int(cols["negative_flip"].sum()), int(cols["positive_flip"].sum())
    p, reason = mcnemar_p_value(nf, pf)
    d = cols["negative_flip"] - cols["positive_flip"]  # (N,) b − c of each instance
    if groups is not None:
        d = np.bincount(groups, weights=d)  # (G,) b_k − c_k of each group
    d = np.rint(d).astype(np.int64)
    stat, cp, num, den, why = cluster_mcnemar(d)
    perm, pnum, pden, pwhy = cluster_permutation_p_value(d, permutations, seed)
    return {
        "mcnemar_p_value": metric_obj(value=p, reason=reason),
        "cluster_adjusted_mcnemar_statistic": metric_obj(stat, num, den, reason=why),
        "cluster_adjusted_mcnemar_p_value": metric_obj(value=cp, reason=why),
        "cluster_permutation_p_value": metric_obj(perm, pnum, pden, reason=pwhy),
    }


NO_GROUPS = "no groups given: every instance is its own group"


def measure(
    old_correct: np.ndarray,
    new_correct: np.ndarray,
    *,
    inconsistent: np.ndarray | None = None,
    inconsistency_reason: str | None = None,
    scores: tuple[np.ndarray, np.ndarray] | None = None,
    similarity_reason: str | None = None,
    tolerance: float = 0.0,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Counts, classification metrics and (when ``scores`` is given) similarity metrics.

    ``groups`` (N,) labels (ints or strings) of the unit that makes instances correlated: CIs
    come from a cluster bootstrap over groups and the cluster-adjusted tests use per-group
    counts. Without them every instance is its own group.
    """
    codes, n_groups = group_codes(groups)
    cols = classification_columns(old_correct, new_correct, inconsistent)
    missing = {}
    if inconsistent is None:
        missing["inconsistency_flip"] = inconsistency_reason or "parsed answers are missing"
    boot = {"bootstrap": bootstrap, "confidence": confidence, "seed": seed, "groups": codes}
    metrics = compute(cols, CLASSIFICATION_RATIOS, missing=missing, **boot)
    counts: dict[str, int | None] = {
        "n": int(cols["n"].sum()),
        **{k: int(cols[k].sum()) for k in COUNT_NAMES[1:7]},
        "negative_flips": int(cols["negative_flip"].sum()),
        "positive_flips": int(cols["positive_flip"].sum()),
        "inconsistency_flips": None
        if inconsistent is None
        else int(cols["inconsistency_flip"].sum()),
    }
    metrics.update(paired_tests(cols, codes, permutations=bootstrap, seed=seed))
    similarity: dict[str, Any]
    if scores is None:
        similarity = {"tolerance": tolerance, "counts": None, "metrics": None}
        similarity["reason"] = similarity_reason or "no per-instance scores on both sides"
    else:
        scols = similarity_columns(scores[0], scores[1], tolerance)
        similarity = {
            "tolerance": tolerance,
            "counts": {
                "similarity_negative_flips": int(scols["similarity_negative_flip"].sum()),
                "similarity_positive_flips": int(scols["similarity_positive_flip"].sum()),
            },
            "metrics": compute(scols, SIMILARITY_RATIOS, **boot),
            "reason": None,
        }
    return {
        "n": counts["n"],
        "n_groups": n_groups,
        "n_groups_reason": None if codes is not None else NO_GROUPS,
        "clustered": codes is not None,
        "counts": counts,
        "metrics": metrics,
        "similarity": similarity,
    }


def relative_change(
    candidate: dict[str, Any], baseline: dict[str, Any], baseline_role: str
) -> dict[str, Any]:
    """ΔNFR and Δ%NFR (and the same for accuracy) of a candidate vs the vanilla new model.

    Both arguments are comparison dicts against the same reference (old). As in MUSCLE's
    Tables 4–6 the change is candidate − baseline; the percent change is relative to the
    baseline's value (negative = fewer negative flips than the vanilla new model).
    """
    out: dict[str, Any] = {"baseline": baseline_role}
    for name, key in (("negative_flip_rate", "negative_flip_rate"), ("accuracy", "accuracy_new")):
        cand = candidate["metrics"][key]["value"]
        base = baseline["metrics"][key]["value"]
        if cand is None or base is None:
            why = "undefined: the rate is undefined for the candidate or the baseline"
            out[f"delta_{name}"] = metric_obj(reason=why)
            out[f"{name}_change_percent"] = metric_obj(reason=why)
            continue
        delta = cand - base
        out[f"delta_{name}"] = metric_obj(value=delta)
        if base == 0:
            out[f"{name}_change_percent"] = metric_obj(
                reason=f"undefined: the baseline's {key} is 0"
            )
        else:
            out[f"{name}_change_percent"] = metric_obj(value=100.0 * delta / base)
    return out


RELATIVE_METRICS = (
    "delta_negative_flip_rate",
    "negative_flip_rate_change_percent",
    "delta_accuracy",
    "accuracy_change_percent",
)


METRICS_SCHEMA_VERSION = 1
SCHEMA_NOTE = (
    "compatlm comparison metrics, schema_version 1: one entry per (task, reference, other); "
    "every metric is {value, numerator, denominator, ci, reason} (null value = undefined, see "
    "reason); 'old'/'new' in metric names mean reference/other. See README section 'metrics.json'."
)


def metrics_document(
    comparisons: list[dict[str, Any]], cfg: CompareConfig, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The metrics.json document: settings (the CompareConfig ``cfg`` plus ``settings``) and
    one entry per comparison."""
    return {
        "schema_version": METRICS_SCHEMA_VERSION,
        "generated_by": f"compatlm {__version__}",
        "settings": {**cfg.model_dump(mode="json"), **(settings or {})},
        "comparisons": comparisons,
        "schema": SCHEMA_NOTE,
    }
