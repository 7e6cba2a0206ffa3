"""``compatlm.demo.stability``: retraining noise (old vs old across seeds) and the stable /
unstable split of each role's negative flips, on a hand-made three-seed demo whose counts are
worked out in the comments; and the section it adds to ``evidence.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compatlm.demo.stability import build_stability, load_task, task_stability
from compatlm.errors import CompatlmError

# Four instances x0..x3; 1 = correct. Per seed: old, new, muscle.
OLD = {0: [1, 1, 1, 0], 1: [1, 1, 0, 0], 2: [1, 0, 1, 1]}
NEW = {0: [0, 1, 0, 1], 1: [1, 0, 0, 1], 2: [1, 1, 1, 1]}
MUSCLE = {0: [1, 1, 0, 1], 1: [0, 1, 0, 1]}  # seed 2 has none: not a role of every seed


def _write(path: Path, correct: list[int], order: list[int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"example_id": f"x{i}", "correct": bool(correct[i])} for i in order or range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    for role, by_seed in (("old", OLD), ("new", NEW), ("muscle", MUSCLE)):
        for s, correct in by_seed.items():
            # seed 1's new file lists its rows in another order: rows are aligned by id
            order = [3, 1, 0, 2] if (role, s) == ("new", 1) else None
            _write(tmp_path / f"seed{s}/eval/predictions/t/{role}.jsonl", correct, order)
    return tmp_path


def test_counts(demo: Path) -> None:
    correct = load_task(demo, [0, 1, 2], "t")
    assert set(correct) == {"old", "new"}  # muscle is missing in seed 2
    assert correct["new"][1].tolist() == [True, False, False, True]
    r = task_stability(correct, [0, 1, 2])
    # Only x0 is right for every old seed.
    assert r["old_stable"] == {"value": 0.25, "numerator": 1, "denominator": 4}
    s0 = r["per_seed"]["0"]
    # seed 0: old right on x0, x1, x2; new wrong on x0 and x2 -> 2 flips of 4.
    assert s0["update"] == {"value": 0.5, "numerator": 2, "denominator": 4}
    # old1 misses x2 (1), old2 misses x1 (1): 2 flips over 2 other seeds x 4 instances.
    assert s0["retrain_old"] == {"value": 0.25, "numerator": 2, "denominator": 8}
    # new0 right on x1, x3; new1 misses x1 (1), new2 misses none -> 1 of 8.
    assert s0["retrain_new"]["numerator"] == 1
    # seed 0's update flips: x0 (stable) and x2 (unstable).
    assert s0["roles"]["new"]["stable"]["numerator"] == 1
    assert s0["roles"]["new"]["unstable"]["numerator"] == 1
    # seed 1: old right on x0, x1; new misses x1 only (unstable). seed 2: no flip.
    assert r["per_seed"]["1"]["roles"]["new"]["unstable"]["numerator"] == 1
    assert r["per_seed"]["2"]["update"]["numerator"] == 0
    level = r["seed_level"]
    # Stable share of update flips: 1/2 (seed 0), 0/1 (seed 1), undefined (seed 2).
    assert level["stable_share_of_update_flips"]["mean"] == pytest.approx(0.25)
    assert level["stable_share_of_update_flips"]["n_seeds"] == 2
    # retrain/update: 0.25/0.5 (seed 0), (1/8)/(1/4) (seed 1), undefined (seed 2).
    assert level["retrain_old_over_update"]["mean"] == pytest.approx(0.5)
    assert level["update"]["mean"] == pytest.approx(100 * (0.5 + 0.25 + 0) / 3)


def test_candidate_split_and_change_vs_new(tmp_path: Path) -> None:
    """Two seeds; a candidate that removes the stable flip and keeps the unstable one."""
    old = {0: [1, 1, 1, 0], 1: [1, 1, 0, 0]}  # stable: x0, x1
    new = {0: [0, 1, 0, 1], 1: [0, 0, 0, 0]}  # flips: seed 0 x0 (s), x2 (u); seed 1 x0, x1 (s)
    cand = {0: [1, 1, 0, 1], 1: [1, 0, 0, 0]}  # flips: seed 0 x2 (u); seed 1 x1 (s)
    for role, by_seed in (("old", old), ("new", new), ("muscle", cand)):
        for s, correct in by_seed.items():
            _write(tmp_path / f"seed{s}/eval/predictions/t/{role}.jsonl", correct)
    r = task_stability(load_task(tmp_path, [0, 1], "t"), [0, 1])
    m = r["seed_level"]["roles"]["muscle"]
    # stable: seed 0 1 -> 0 (−100 %), seed 1 2 -> 1 (−50 %); unstable: seed 0 1 -> 1 (0 %),
    # seed 1 0 -> 0 (undefined: new has no unstable flip there).
    assert m["stable"]["delta_vs_new_percent"]["mean"] == pytest.approx(-75.0)
    assert m["unstable"]["delta_vs_new_percent"]["mean"] == pytest.approx(0.0)
    assert m["unstable"]["delta_vs_new_percent"]["n_seeds"] == 1
    assert "new" not in r["seed_level"]["roles"]  # the reference itself is not listed


def test_one_seed_and_similarity_tasks(demo: Path) -> None:
    assert build_stability(demo, [0], {"t": "negative_flip_rate"}) is None
    doc = build_stability(demo, [0, 1, 2], {"t": "negative_flip_rate", "g": "similarity_x"})
    assert set(doc["tasks"]) == {"t"}
    assert "similarity_x" in doc["left_out"]["g"]


def test_bad_input_names_the_file(demo: Path) -> None:
    (demo / "seed1/eval/predictions/t/old.jsonl").unlink()
    with pytest.raises(CompatlmError, match="no old.jsonl predictions in every seed"):
        load_task(demo, [0, 1, 2], "t")


def test_ids_that_differ_between_seeds(demo: Path) -> None:
    path = demo / "seed2/eval/predictions/t/new.jsonl"
    path.write_text('{"example_id": "y9", "correct": true}\n', encoding="utf-8")
    with pytest.raises(CompatlmError, match=r"seed2/eval/predictions/t/new.jsonl: example ids"):
        load_task(demo, [0, 1, 2], "t")
