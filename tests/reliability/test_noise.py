"""The noise floor: same model, other batch size or dtype; flips below it are labelled."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from compatlm.cli import main
from compatlm.config import RuntimeConfig, TaskConfig
from compatlm.errors import CompatlmError
from compatlm.eval.noise import measure_noise, score_changes
from compatlm.spec import ModelSpec

FIELDS = ("instances", "choice_changes", "max_abs_margin_change", "noise_margin")


def test_score_changes_by_hand():
    reference = {"a": [-1.0, -2.0, -3.0], "b": [-1.0, -1.1]}
    other = {"a": [-1.0, -2.25, -3.0], "b": [-1.2, -0.9], "only_other": [0.0, 1.0]}
    got = score_changes(reference, other)
    assert got["instances"] == 2  # ids in both
    # a keeps choice 0; b moves from choice 0 (-1.0 > -1.1) to choice 1 (-0.9 > -1.2)
    assert got["choice_changes"] == {"count": 1, "ids": ["b"]}
    # largest |Δ| of any choice score: a 0.25, b 0.2 and 0.2
    assert got["noise_margin"] == pytest.approx(0.25)
    # margin of the reference's choice 0: a 1.0 -> 1.25 (0.25); b 0.1 -> -0.3 (0.4)
    assert got["max_abs_margin_change"] == pytest.approx(0.4)
    with pytest.raises(CompatlmError, match="share no example id"):
        score_changes({"x": [0.0, 1.0]}, {"y": [0.0, 1.0]})
    with pytest.raises(CompatlmError, match="'x' has 2 vs 3 choices"):
        score_changes({"x": [0.0, 1.0]}, {"x": [0.0, 1.0, 2.0]})


def _finite_nonneg(doc: dict) -> None:
    for key in ("max_abs_margin_change", "noise_margin"):
        assert isinstance(doc[key], float) and math.isfinite(doc[key]) and doc[key] >= 0, key
    assert 0 <= doc["choice_changes"]["count"] <= doc["instances"]
    # a margin is a difference of two choice scores: it moves at most twice the largest Δ
    assert doc["max_abs_margin_change"] <= 2 * doc["noise_margin"] + 1e-12


def test_measure_noise_batch_sizes_and_dtype(tiny_family, small_eval_config):
    task_path = next(
        line.split("path: ")[1]
        for line in small_eval_config.read_text().splitlines()
        if "path: " in line
    )
    task = TaskConfig(name="tiny_mc", path=task_path, metric="acc_norm")
    spec = ModelSpec.parse(f"{tiny_family['new']}+{tiny_family['new_adapter']}")
    runtime = RuntimeConfig(device="cpu", progress=False)
    doc = measure_noise(spec, task, runtime, batch_sizes=(1, 8))
    assert set(FIELDS) <= set(doc)
    assert doc["instances"] == 16 and doc["batch_sizes"] == [1, 8]
    _finite_nonneg(doc)
    # bf16 rounds every activation: the floor it measures cannot be zero
    low = measure_noise(spec, task, runtime, batch_sizes=(4, 4), dtype="bfloat16")
    assert low["dtypes"] == ["float32", "bfloat16"]
    _finite_nonneg(low)
    assert low["noise_margin"] > 0


def test_measure_noise_refuses_generation(tmp_path):
    gen = tmp_path / "gen.jsonl"
    gen.write_text(json.dumps({"id": "g", "prompt": "2+2=", "reference": "4"}) + "\n")
    with pytest.raises(CompatlmError, match="multiple-choice"):
        measure_noise(ModelSpec("unused"), TaskConfig(name="g", path=str(gen)), RuntimeConfig())


def test_eval_with_noise_batch_size_writes_noise_json(small_eval_config, tmp_path):
    out = tmp_path / "run"
    args = ["eval", str(small_eval_config), "--out", str(out), "compare.noise_batch_size=1"]
    assert main(args) == 0
    noise = json.loads((out / "noise.json").read_text())
    assert noise["role"] == "new" and noise["batch_sizes"] == [8, 1]
    task = noise["tasks"]["tiny_mc"]
    assert set(FIELDS) <= set(task) and task["instances"] == 16
    _finite_nonneg(task)
    assert noise["noise_margin"] == task["noise_margin"]
    metrics = json.loads((out / "metrics.json").read_text())
    for comp in metrics["comparisons"]:
        assert comp["noise"]["noise_margin"] == task["noise_margin"]
        assert comp["noise"]["flips_within_noise"] is not None
    assert "Noise floor" in (out / "report.md").read_text()
    assert "Noise floor" in (out / "report.html").read_text()


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_flip_below_noise_margin_is_within_noise(tmp_path):
    old = _write(
        tmp_path / "old.jsonl",
        [
            {"example_id": "0", "correct": True, "parsed": 0, "margin": 0.1},
            {"example_id": "1", "correct": True, "parsed": 0, "margin": 2.0},
            {"example_id": "2", "correct": False, "parsed": 1, "margin": 0.2},
            {"example_id": "3", "correct": True, "parsed": 0, "margin": 0.01},
        ],
    )
    new = _write(
        tmp_path / "new.jsonl",
        [
            {"example_id": "0", "correct": False, "parsed": 1, "margin": 0.05},  # NF, noisy
            {"example_id": "1", "correct": False, "parsed": 1, "margin": 0.1},  # NF, real
            {"example_id": "2", "correct": True, "parsed": 0, "margin": 0.25},  # PF, noisy
            {"example_id": "3", "correct": True, "parsed": 0, "margin": 0.02},  # no flip
        ],
    )
    out = tmp_path / "cmp"
    args = ["compare", old, new, "--out", str(out), "--bootstrap", "0", "--noise-margin", "0.3"]
    assert main(args) == 0
    flips = {
        f["example_id"]: f
        for f in map(json.loads, (out / "flips/task/old_vs_new.jsonl").read_text().splitlines())
    }
    assert sorted(flips) == ["0", "1", "2"]
    assert [flips[i]["within_noise"] for i in "012"] == [True, False, True]
    assert [flips[i]["flip"] for i in "012"] == ["negative", "negative", "positive"]
    noise = json.loads((out / "metrics.json").read_text())["comparisons"][0]["noise"]
    assert noise == {
        "noise_margin": 0.3,
        "flips_within_noise": 2,
        "negative_flips_within_noise": 1,
    }
    assert "within noise" in (out / "report.html").read_text()
    # without a noise floor nothing is labelled either way
    plain = tmp_path / "plain"
    assert main(["compare", old, new, "--out", str(plain), "--bootstrap", "0"]) == 0
    rows = (plain / "flips/task/old_vs_new.jsonl").read_text().splitlines()
    assert {json.loads(r)["within_noise"] for r in rows} == {None}
