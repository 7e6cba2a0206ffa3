"""``bench/flip_noise.py``: the retraining-noise NFR and the stable/unstable split of flips,
on a hand-made three-seed demo whose counts are worked out in the comments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import flip_noise as fn

# Four instances a..d; 1 = correct. Per seed: old, new, muscle.
OLD = {0: [1, 1, 1, 0], 1: [1, 1, 0, 0], 2: [1, 0, 1, 1]}
NEW = {0: [0, 1, 0, 1], 1: [1, 0, 0, 1], 2: [1, 1, 1, 1]}
MUSCLE = {0: [1, 1, 0, 1], 1: [0, 1, 0, 1]}  # seed 2 has none: not a role of every seed


def _write(path: Path, correct: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"example_id": f"x{i}", "correct": bool(c)} for i, c in enumerate(correct)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    for role, by_seed in (("old", OLD), ("new", NEW), ("muscle", MUSCLE)):
        for s, correct in by_seed.items():
            _write(tmp_path / f"seed{s}/validation/predictions/t/{role}.jsonl", correct)
    return tmp_path


def test_counts(demo: Path) -> None:
    seeds = fn.seeds_of(demo)
    assert seeds == [0, 1, 2]
    by_role = fn.load(demo, seeds, "t", "validation")
    assert set(by_role) == {"old", "new"}  # muscle is missing in seed 2
    r = fn.task_split(by_role, seeds)
    # Only x0 is right for every old seed.
    assert r["old_stable"] == {"value": 0.25, "numerator": 1, "denominator": 4}
    s0 = r["per_seed"]["0"]
    # seed 0: old right on x0,x1,x2; new wrong on x0 and x2 -> 2 flips of 4.
    assert s0["update"]["numerator"] == 2
    # old1 misses x2 (1), old2 misses x1 (1): 2 flips over 2 pairs x 4 instances.
    assert s0["retrain_old"] == {"value": 0.25, "numerator": 2, "denominator": 8}
    # new0 right on x1,x3; new1 misses x1 (1); new2 misses none -> 1 of 8.
    assert s0["retrain_new"]["numerator"] == 1
    # seed 0's update flips: x0 (stable) and x2 (unstable).
    assert s0["roles"]["new"]["nfr_stable"]["numerator"] == 1
    assert s0["roles"]["new"]["nfr_unstable"]["numerator"] == 1
    # seed 1: old right on x0,x1, new misses x1 only (unstable); seed 2: no flip at all.
    assert r["per_seed"]["1"]["roles"]["new"]["nfr_unstable"]["numerator"] == 1
    assert r["per_seed"]["2"]["update"]["numerator"] == 0
    summary = r["summary"]
    # Stable share of update flips: seed 0 1/2, seed 1 0/1, seed 2 undefined (no flip).
    assert summary["stable_share_of_update_flips"]["mean"] == pytest.approx(0.25)
    assert summary["stable_share_of_update_flips"]["n_seeds"] == 2
    # Ratio retrain/update is undefined for seed 2 (update NFR 0), so two seeds count.
    assert summary["retrain_old_over_update"]["n_seeds"] == 2


def test_missing_old_is_a_clear_error(demo: Path) -> None:
    (demo / "seed1/validation/predictions/t/old.jsonl").unlink()
    with pytest.raises(SystemExit, match="no old.jsonl in some seed"):
        fn.load(demo, [0, 1, 2], "t", "validation")


def test_bad_correct_field_names_file_and_line(demo: Path) -> None:
    path = demo / "seed0/validation/predictions/t/new.jsonl"
    path.write_text('{"example_id": "x0", "correct": "yes"}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"new.jsonl:1: field 'correct'"):
        fn.read_correct(path)
