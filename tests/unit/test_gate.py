"""``--fail-if`` parsing and evaluation against a metrics.json document."""

from __future__ import annotations

import pytest

from compatlm.errors import CompatlmError
from compatlm.eval.gate import check_gate, parse_condition


def metric(value, reason=None):
    return {"value": value, "numerator": None, "denominator": None, "ci": None, "reason": reason}


def comp(task, ref, other, nfr, btc=0.9, sim=None, rel=None):
    return {
        "task": task,
        "reference": ref,
        "other": other,
        "counts": {"n": 100, "negative_flips": int(nfr * 100)},
        "metrics": {
            "negative_flip_rate": metric(nfr),
            "backward_trust_compatibility": metric(
                btc, None if btc is not None else "no old-correct"
            ),
        },
        "similarity": {
            "metrics": sim,
            "counts": None,
            "reason": None if sim else "multiple choice",
        },
        "relative_to_baseline": rel,
        "noise": {"noise_margin": None},
    }


DOC = {
    "settings": {"reference": "old"},
    "comparisons": [
        comp("piqa", "old", "new", 0.05),
        comp("piqa", "old", "muscle", 0.01, rel={"delta_negative_flip_rate": metric(-0.04)}),
        comp("piqa", "new", "muscle", 0.03),
        comp("gsm8k", "old", "new", 0.015, btc=None, sim={"mean_regression": metric(0.2)}),
    ],
}


def test_parse_condition_forms():
    c = parse_condition("negative_flip_rate>0.02")
    assert (c.task, c.pair, c.name, c.op, c.threshold) == (
        None,
        None,
        "negative_flip_rate",
        ">",
        0.02,
    )
    c = parse_condition("piqa:old_vs_muscle:negative_flip_rate >= 1e-2")
    assert (c.task, c.pair, c.op, c.threshold) == ("piqa", "old_vs_muscle", ">=", 0.01)
    assert parse_condition("old_vs_new:negative_flips!=0").pair == "old_vs_new"
    assert parse_condition("piqa:accuracy_delta<-0.1").task == "piqa"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("negative_flip_rate", "expected name OP number"),
        ("negative_flip_rate=>0.1", "expected name OP number"),
        (
            "negative_flips_rate>0.1",
            "unknown metric 'negative_flips_rate' (did you mean 'negative_flip_rate'?); valid"
            " names: negative_flip_rate, positive_flip_rate",
        ),
        ("negative_flip_rate>abc", "expected a finite number after >, found 'abc'"),
        ("negative_flip_rate>nan", "expected a finite number"),
        ("a:b:c:negative_flip_rate>0", "expected [task:][reference_vs_other:]"),
        (":negative_flip_rate>0", "empty scope"),
    ],
)
def test_bad_conditions(text, fragment):
    with pytest.raises(CompatlmError) as err:
        parse_condition(text)
    assert fragment in str(err.value)


def test_default_scope_is_comparisons_against_old():
    failures = check_gate(DOC, ["negative_flip_rate>0.02"])
    # piqa old->new (0.05) fails; old->muscle 0.01 and gsm8k 0.015 pass; new->muscle not in scope
    assert [(f.task, f.comparison, f.value) for f in failures] == [("piqa", "old_vs_new", 0.05)]
    assert failures[0].message == "piqa: old_vs_new: negative_flip_rate = 0.05 > 0.02"
    assert check_gate(DOC, ["negative_flip_rate>0.06"]) == []


def test_scoped_conditions():
    assert check_gate(DOC, ["gsm8k:negative_flip_rate>0.02"]) == []
    (f,) = check_gate(DOC, ["new_vs_muscle:negative_flip_rate>0.02"])
    assert f.comparison == "new_vs_muscle"
    (f,) = check_gate(DOC, ["piqa:old_vs_muscle:delta_negative_flip_rate>-0.05"])
    assert f.value == pytest.approx(-0.04)
    assert check_gate(DOC, ["negative_flips<=0"]) == []
    assert len(check_gate(DOC, ["negative_flips>=1"])) == 3


def test_undefined_metric_fails_the_gate():
    failures = check_gate(DOC, ["backward_trust_compatibility<0.5"])
    assert [f.task for f in failures] == ["gsm8k"]
    assert "undefined (no old-correct)" in failures[0].message and failures[0].value is None


def test_similarity_metric_only_where_measured():
    (f,) = check_gate(DOC, ["mean_regression>0.1"])
    assert f.task == "gsm8k"


def test_condition_matching_nothing_is_an_error():
    with pytest.raises(
        CompatlmError, match="matches no comparison where negative_flip_rate is defined"
    ):
        check_gate(DOC, ["hellaswag:negative_flip_rate>0.1"])
    with pytest.raises(CompatlmError, match="flips_within_noise"):
        check_gate(DOC, ["flips_within_noise>3"])
