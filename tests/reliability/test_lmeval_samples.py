"""Files written by lm-eval 0.4.13 itself are read as what they are.

The fixtures in ``tests/fixtures/lmeval_0.4.13/`` were produced by running ``lm_eval --model hf
--log_samples`` on two tiny local models (see ``make_fixtures.py`` there). Real files hold
``filtered_resps`` as strings (``[["-87.74", "False"], ...]``) and ``target`` as a string
(``"0"``): a reader tested only on hand-written numbers took every multiple-choice file for a
generation task. Expected values here are recomputed from the raw JSON, never hard-coded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compatlm.cli import main
from compatlm.eval.lmeval_logs import _as_bool, _as_float
from compatlm.eval.records import load_predictions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lmeval_0.4.13"
OLD = next((FIXTURES / "old").glob("samples_tinymc_*.jsonl"))
NEW = next((FIXTURES / "new").glob("samples_tinymc_*.jsonl"))
OURS_OLD = FIXTURES / "compatlm_old.jsonl"  # compatlm's own scoring of the old model


def raw(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def test_fixtures_are_real_lmeval_string_format():
    """Guards the premise: if someone regenerates these by hand with numbers, this fails."""
    for path in (OLD, NEW):
        rows = raw(path)
        assert 10 <= len(rows) <= 50
        assert all(isinstance(r["target"], str) for r in rows)
        assert all(isinstance(x, str) for r in rows for pair in r["filtered_resps"] for x in pair)


@pytest.mark.parametrize("path", [OLD, NEW], ids=["old", "new"])
def test_real_file_is_multiple_choice_with_per_doc_acc(path):
    ps = load_predictions(path)
    assert (ps.kind, ps.metric, ps.filter, ps.task) == ("multiple_choice", "acc", "none", "tinymc")
    rows = raw(path)
    assert len(ps) == len(rows)
    for r in rows:
        p = ps.rows[str(r["doc_id"])]
        lls = [float(x[0]) for x in r["filtered_resps"]]
        assert p.loglikelihoods == lls
        assert p.parsed == argmax(lls)
        assert p.target == int(r["target"])
        assert p.correct is (r["acc"] == 1.0)
        # lm-eval's own acc is the argmax rule on these log-likelihoods: the reading is coherent
        assert (argmax(lls) == int(r["target"])) is p.correct


def test_compare_two_real_files(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", str(OLD), str(NEW), "--out", str(out), "--bootstrap", "0"]) == 0
    comp = json.loads((out / "metrics.json").read_text())["comparisons"][0]
    assert comp["kind"] == "multiple_choice"
    old = {r["doc_id"]: r for r in raw(OLD)}
    new = {r["doc_id"]: r for r in raw(NEW)}
    n = len(old)
    nf = sum(old[i]["acc"] == 1 and new[i]["acc"] == 0 for i in old)
    pf = sum(old[i]["acc"] == 0 and new[i]["acc"] == 1 for i in old)
    choice = {  # the answer each model picked, from its log-likelihoods
        i: (argmax([float(x[0]) for x in old[i]["filtered_resps"]]),
            argmax([float(x[0]) for x in new[i]["filtered_resps"]]))
        for i in old
    }  # fmt: skip
    inconsistent = sum(a != b and new[i]["acc"] == 0 for i, (a, b) in choice.items())
    assert (comp["n"], comp["counts"]["negative_flips"], comp["counts"]["positive_flips"]) == (
        n,
        nf,
        pf,
    )
    rate = comp["metrics"]["inconsistency_flip_rate"]
    assert (rate["numerator"], rate["denominator"]) == (inconsistent, n)
    assert rate["value"] == pytest.approx(inconsistent / n)
    assert inconsistent < n / 4  # a "generation" misreading makes nearly every parse differ


def test_compatlm_file_against_real_lmeval_file(tmp_path):
    """Same old model scored by compatlm and by lm-eval: comparable, and zero flips."""
    ours = load_predictions(OURS_OLD)
    theirs = load_predictions(OLD)
    assert ours.kind == theirs.kind == "multiple_choice"
    for i, p in ours.rows.items():
        assert (p.correct, p.parsed, p.target) == (
            theirs.rows[i].correct,
            theirs.rows[i].parsed,
            theirs.rows[i].target,
        )
    out = tmp_path / "same"
    assert main(["compare", str(OURS_OLD), str(OLD), "--out", str(out), "--bootstrap", "0"]) == 0
    comp = json.loads((out / "metrics.json").read_text())["comparisons"][0]
    assert comp["counts"]["negative_flips"] == comp["counts"]["positive_flips"] == 0
    assert comp["metrics"]["inconsistency_flip_rate"]["numerator"] == 0
    assert not any("target differs" in w for w in comp["warnings"])
    out = tmp_path / "update"
    assert main(["compare", str(OURS_OLD), str(NEW), "--out", str(out), "--bootstrap", "0"]) == 0
    comp = json.loads((out / "metrics.json").read_text())["comparisons"][0]
    new = {str(r["doc_id"]): r["acc"] for r in raw(NEW)}
    want = sum(p.correct and new[i] == 0 for i, p in ours.rows.items())
    assert comp["counts"]["negative_flips"] == want


def test_metric_mismatch_refused_then_recorded_when_allowed(tmp_path, capsys):
    args = ["compare", str(OURS_OLD), str(NEW), "--metric", "acc_norm", "--bootstrap", "0"]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "'acc'" in err[0] and "'acc_norm'" in err[0] and "--allow-metric-mismatch" in err[0]
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "allowed"
    assert main([*args, "--out", str(out), "--allow-metric-mismatch"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["settings"]["allow_metric_mismatch"] is True
    warnings = doc["comparisons"][0]["warnings"]
    assert any("metric differs: 'acc'" in w and "'acc_norm'" in w for w in warnings)
    assert "metric differs" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("text", "want"),
    [("-87.74736022949219", -87.74736022949219), ("0", 0.0), ("1e-5", 1e-5), ("-.5", -0.5),
     ("nan", None), ("-inf", None), ("1e400", None), (" 1.0", None), ("1_0", None),
     ("0x10", None), ("", None), (True, None), (-2, -2.0), ("\u0663", None)],
)  # fmt: skip
def test_numbers_are_parsed_strictly(text, want):
    assert _as_float(text) == want


def test_booleans_as_lmeval_writes_them():
    assert [_as_bool(x) for x in ("True", "False", True, False)] == [True, False, True, False]
    assert [_as_bool(x) for x in ("true", "1", 1, None)] == [None, None, None, None]
