"""The typed schema of metrics.json: real compare outputs validate, drifted or doctored ones fail
with one line naming the file and the field, and metrics.json needs no matplotlib."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import compatlm.eval.compare_io as compare_io
from compatlm.config import CompareConfig
from compatlm.errors import CompatlmError
from compatlm.eval.compare_io import compare_files, compare_run
from compatlm.eval.metrics import COUNT_NAMES, RELATIVE_METRICS, SIMILARITY_COUNT_NAMES
from compatlm.eval.result_schema import (
    Counts,
    MetricsDocument,
    RelativeChange,
    SimilarityCounts,
    check_document,
    load_metrics,
)


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(correct: list[bool], scores: list[float] | None = None, **extra) -> list[dict]:
    out = []
    for i, c in enumerate(correct):
        row = {"example_id": str(i), "correct": c, "parsed": int(c), "slice": "ab"[i % 2]}
        if scores is not None:
            row["score"] = scores[i]
        out.append(row | extra)
    return out


OLD = [True, True, True, True, False, False]
NEW = [True, False, True, False, True, False]


def test_counts_and_relative_change_use_the_names_of_metrics_py():
    assert tuple(Counts.model_fields) == COUNT_NAMES
    assert tuple(SimilarityCounts.model_fields) == SIMILARITY_COUNT_NAMES
    assert tuple(RelativeChange.model_fields)[1:] == RELATIVE_METRICS


def test_a_two_file_compare_with_similarity_and_slices_validates(tmp_path):
    a = write(tmp_path / "old.jsonl", rows(OLD, [0.9, 0.8, 0.7, 0.9, 0.1, 0.2]))
    b = write(tmp_path / "new.jsonl", rows(NEW, [0.9, 0.2, 0.7, 0.3, 0.8, 0.2]))
    doc = compare_files(a, b, tmp_path / "out", CompareConfig(bootstrap=20), noise_margin=0.1)
    model = load_metrics(tmp_path / "out" / "metrics.json")
    (comp,) = model.comparisons
    assert comp.counts.negative_flips == 2 and comp.counts.positive_flips == 1
    assert comp.metrics["negative_flip_rate"].numerator == 2
    assert comp.metrics["negative_flip_rate"].denominator == 6
    assert comp.similarity.counts is not None and comp.similarity.reason is None
    assert sorted(comp.slices) == ["a", "b"] and comp.slices["a"].n == 3
    assert model.settings.noise_margin == 0.1 and model.settings.lmeval_filter is None
    assert model.schema_note == doc["schema"] and model.gate.passed is None


def test_a_run_directory_compare_with_a_candidate_validates(tmp_path):
    run = tmp_path / "run"
    for role, correct in (("old", OLD), ("new", NEW), ("muscle", OLD)):
        write(run / "predictions" / "t" / f"{role}.jsonl", rows(correct, role=role))
    compare_run(run, CompareConfig(bootstrap=0, fail_if=["negative_flip_rate>0.1"]))
    model = load_metrics(run / "metrics.json")
    pairs = [(c.reference, c.other) for c in model.comparisons]
    assert pairs == [("old", "new"), ("old", "muscle"), ("new", "muscle")]
    rel = model.comparisons[1].relative_to_baseline
    assert rel is not None and rel.baseline == "new"
    assert rel.delta_negative_flip_rate.value == pytest.approx(-2 / 6)
    # An undefined metric is null with its reason (bootstrap 0: no permutation p-value).
    perm = model.comparisons[0].metrics["cluster_permutation_p_value"]
    assert perm.value is None and perm.reason == "not computed: 0 resamples requested"
    assert model.settings.baseline == "new" and model.diagnostics == {}
    assert model.gate.passed is False and model.gate.failures[0].task == "t"


@pytest.fixture
def metrics_file(tmp_path) -> Path:
    a = write(tmp_path / "old.jsonl", rows(OLD))
    b = write(tmp_path / "new.jsonl", rows(NEW))
    compare_files(a, b, tmp_path / "out", CompareConfig(bootstrap=0))
    return tmp_path / "out" / "metrics.json"


def mutate(path: Path, change) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return path


def _del(d: dict, key: str) -> None:
    del d[key]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["comparisons"][0].update(n="6"),
            r"field 'comparisons\.0\.n': Input should be a valid integer, found '6'",
        ),
        (
            lambda d: d["comparisons"][0]["counts"].update(negative_flips=True),
            r"field 'comparisons\.0\.counts\.negative_flips': Input should be a valid integer",
        ),
        (
            lambda d: _del(d["comparisons"][0]["counts"], "both_wrong"),
            r"field 'comparisons\.0\.counts\.both_wrong': Field required",
        ),
        (
            lambda d: _del(d["comparisons"][0]["metrics"], "negative_flip_rate"),
            r"field 'comparisons\.0\.metrics': classification metrics: missing"
            r" \['negative_flip_rate'\]",
        ),
        (
            lambda d: d["comparisons"][0]["metrics"]["accuracy_old"].update(
                reason=None, value=None
            ),
            r"field 'comparisons\.0\.metrics\.accuracy_old': value is null without a reason",
        ),
        (
            lambda d: d["comparisons"][0].update(surprise=1),
            r"field 'comparisons\.0\.surprise': Extra inputs are not permitted",
        ),
        (lambda d: d.update(schema_version=2), r"field 'schema_version': Input should be 1"),
    ],
)
def test_a_doctored_metrics_json_is_refused_naming_file_and_field(metrics_file, change, message):
    load_metrics(metrics_file)  # valid as written
    mutate(metrics_file, change)
    with pytest.raises(CompatlmError, match=message) as err:
        load_metrics(metrics_file)
    assert str(err.value).startswith(f"{metrics_file}: ") and "\n" not in str(err.value)


def test_unreadable_metrics_json_is_one_line(tmp_path):
    with pytest.raises(CompatlmError, match="metrics.json: not found"):
        load_metrics(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text("{")
    with pytest.raises(CompatlmError, match="metrics.json: not valid JSON"):
        load_metrics(tmp_path / "metrics.json")


def test_a_document_that_drifted_from_the_schema_fails_before_anything_is_written(
    tmp_path, monkeypatch
):
    real = compare_io.metrics_document

    def drifted(*args, **kwargs):
        doc = real(*args, **kwargs)
        doc["comparisons"][0]["counts"]["n"] = float(doc["comparisons"][0]["counts"]["n"]) + 0.5
        return doc

    monkeypatch.setattr(compare_io, "metrics_document", drifted)
    a = write(tmp_path / "old.jsonl", rows(OLD))
    b = write(tmp_path / "new.jsonl", rows(NEW))
    with pytest.raises(RuntimeError, match=r"result_schema: field 'comparisons\.0\.counts\.n'"):
        compare_files(a, b, tmp_path / "out", CompareConfig(bootstrap=0))
    assert not (tmp_path / "out").exists()


def test_check_document_returns_the_model_of_what_goes_to_disk(metrics_file):
    doc = json.loads(metrics_file.read_text())
    model = check_document(doc)
    assert isinstance(model, MetricsDocument)
    assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == doc


def test_metrics_json_is_written_without_importing_matplotlib_or_the_report(tmp_path):
    a = write(tmp_path / "old.jsonl", rows(OLD))
    b = write(tmp_path / "new.jsonl", rows(NEW))
    code = (
        "import sys\n"
        "from compatlm.config import CompareConfig\n"
        "from compatlm.eval.compare_io import compare_files\n"
        f"compare_files({str(a)!r}, {str(b)!r}, {str(tmp_path / 'out')!r},"
        " CompareConfig(bootstrap=10))\n"
        "print(sorted(m for m in ('matplotlib', 'compatlm.report') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]"
    assert load_metrics(tmp_path / "out" / "metrics.json").comparisons[0].n == 6
