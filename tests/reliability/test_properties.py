"""Properties of the whole comparison (join + flips + metrics), beyond the metric identities.

tests/unit/test_metrics.py already checks, on random correctness vectors, that
NFR − PFR = acc_old − acc_new, BTC·acc_old = rate of both correct, NFR ≤ 1 − acc_new and that
swapping old/new swaps NFR and PFR. Here the same hold for :func:`compare_sets`, which joins two
prediction sets on example_id: row order does not matter, rows present on one side only are
reported and never counted, and the flips file agrees with the counts.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compatlm.config import CompareConfig
from compatlm.eval.compare import compare_sets
from compatlm.eval.records import Prediction, PredictionSet

CFG = CompareConfig(bootstrap=0)


def pset(name: str, rows: list[tuple[str, bool, int]]) -> PredictionSet:
    preds = {i: Prediction(example_id=i, correct=c, parsed=p) for i, c, p in rows}
    return PredictionSet(
        path=Path(f"{name}.jsonl"),
        rows=preds,
        lines={i: n for n, i in enumerate(preds, start=1)},
        source="foreign",
    )


def val(comp, name: str):
    return comp.metrics[name]["value"]


instances = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.integers(0, 2), st.integers(0, 2)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(instances, st.integers(0, 5), st.integers(0, 5), st.randoms(use_true_random=False))
def test_compare_properties(rows, only_old, only_new, rnd: random.Random):
    old_rows = [(f"e{k}", a, pa) for k, (a, _, pa, _) in enumerate(rows)]
    new_rows = [(f"e{k}", b, pb) for k, (_, b, _, pb) in enumerate(rows)]
    old_rows += [(f"old{k}", True, 0) for k in range(only_old)]
    new_rows += [(f"new{k}", False, 0) for k in range(only_new)]
    shuffled = new_rows[:]
    rnd.shuffle(shuffled)
    old, new = pset("old", old_rows), pset("new", new_rows)
    c = compare_sets(old, new, CFG)
    n = len(rows)
    assert c.n == n  # unmatched rows are reported, never counted
    assert c.unmatched["reference_only"]["count"] == only_old
    assert c.unmatched["other_only"]["count"] == only_new
    nf = sum(a and not b for a, b, _, _ in rows)
    pf = sum(b and not a for a, b, _, _ in rows)
    assert (c.counts["negative_flips"], c.counts["positive_flips"]) == (nf, pf)
    nfr, pfr = val(c, "negative_flip_rate"), val(c, "positive_flip_rate")
    acc_old, acc_new = val(c, "accuracy_old"), val(c, "accuracy_new")
    assert nfr - pfr == pytest.approx(acc_old - acc_new)
    assert nfr <= 1 - acc_new + 1e-12
    if c.counts["old_correct"]:
        both = c.counts["both_correct"] / n
        assert val(c, "backward_trust_compatibility") * acc_old == pytest.approx(both)
    # the flips file: one line per flipped instance, negatives = NF
    kinds = [f["flip_types"] for f in c.flips]
    assert sum("negative" in k for k in kinds) == nf
    assert sum("positive" in k for k in kinds) == pf
    # join on id: the order of the other file's rows does not matter
    again = compare_sets(old, pset("new", shuffled), CFG)
    assert again.counts == c.counts and again.metrics == c.metrics
    # swapping the roles swaps the flip directions
    swapped = compare_sets(new, old, CFG)
    assert val(swapped, "negative_flip_rate") == pytest.approx(pfr)
    assert val(swapped, "positive_flip_rate") == pytest.approx(nfr)
    # a prediction set compared with itself has no flips of any kind
    itself = compare_sets(old, old, CFG)
    assert itself.flips == [] and val(itself, "negative_flip_rate") == 0.0
    assert val(itself, "inconsistency_flip_rate") == 0.0
