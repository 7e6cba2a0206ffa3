"""evidence.json on hand-made eval runs: exact per-seed, per-task and task-averaged numbers.

Two seeds, two tasks. Task a (multiple choice, 10 rows in 5 groups of 2), old right on e0–e5:

    seed 0: new wrong on e0–e3 (NF 4), muscle on e0–e1 (NF 2), continue_ce on e0–e2 (NF 3)
    seed 1: new wrong on e0–e1 (NF 2), muscle on e0 (NF 1),    continue_ce on e0–e1 (NF 2)

Task b (generation with scores, 8 rows, no groups): similarity flips (score below old's):

    seed 0: new 2, muscle 1, continue_ce 2
    seed 1: new 3, continue_ce 1, and no muscle (no point passed the floor)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from compatlm.config import CompareConfig
from compatlm.demo.evidence import build_evidence, write_evidence
from compatlm.errors import CompatlmError
from compatlm.eval.compare_io import compare_run

OLD_A = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
OLD_B = [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0]


def _wrong_on(k: int) -> list[int]:
    return [0] * k + OLD_A[k:]


A = {
    0: {"new": _wrong_on(4), "muscle": _wrong_on(2), "continue_ce": _wrong_on(3)},
    1: {"new": _wrong_on(2), "muscle": _wrong_on(1), "continue_ce": _wrong_on(2)},
}
B = {
    0: {
        "new": [0, 1, 1, 1, 0.5, 0.2, 1, 0],
        "muscle": [1, 1, 1, 1, 0.5, 0.2, 1, 0],
        "continue_ce": [0, 0, 1, 1, 0.5, 0.5, 1, 0],
    },
    1: {"new": [0, 0, 0, 1, 0.5, 0.5, 1, 1], "continue_ce": [0, 1, 1, 1, 0.5, 0.5, 1, 1]},
}


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _mc_rows(correct: list[int]) -> list[dict]:
    return [
        {
            "example_id": f"a{i}",
            "task": "a",
            "kind": "multiple_choice",
            "correct": bool(c),
            "group": f"g{i // 2}",
        }
        for i, c in enumerate(correct)
    ]


def _gen_rows(scores: list[float]) -> list[dict]:
    return [
        {
            "example_id": f"b{i}",
            "task": "b",
            "kind": "generation",
            "correct": s == 1.0,
            "score": float(s),
        }
        for i, s in enumerate(scores)
    ]


def _diagnostics(run: Path, num: int, den: int) -> None:
    share = {"value": num / den, "numerator": num, "denominator": den, "ci": None, "reason": None}
    run.mkdir(parents=True, exist_ok=True)
    (run / "diagnostics.json").write_text(
        json.dumps({"schema_version": 1, "total": {"old_share": share}, "verdict": "v"})
    )


def _selection(root: Path, seed: int, task: str, winner_run: Path | None) -> None:
    if winner_run is None:
        doc = {
            "status": "no_point_passed_the_floor",
            "winner": None,
            "points": [],
            "reason": "no candidate reaches the accuracy floor 74.50%",
        }
    else:
        spec = f"newbase+{winner_run}/adapter"
        point = {"name": "muscle.x", "spec": spec, "kind": "candidate"}
        doc = {
            "status": "selected",
            "winner": {"role": "muscle.x", "knobs": {"mask": "m"}, "spec": spec},
            "points": [point],
            "reason": "lowest",
        }
    _write(root / f"seed{seed}" / "selection" / f"{task}.json", [doc])


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evidence")
    for seed in (0, 1):
        run = root / f"seed{seed}" / "eval"
        preds = run / "predictions"
        _write(preds / "a" / "old.jsonl", _mc_rows(OLD_A))
        _write(preds / "b" / "old.jsonl", _gen_rows(OLD_B))
        for role, correct in A[seed].items():
            _write(preds / "a" / f"{role}.jsonl", _mc_rows(correct))
        for role, scores in B[seed].items():
            _write(preds / "b" / f"{role}.jsonl", _gen_rows(scores))
        compare_run(run, CompareConfig(bootstrap=200))
        for task in ("a", "b"):
            winner = root / f"seed{seed}" / "adapters" / task / "muscle" / "x"
            has_muscle = task == "a" or seed == 0
            if has_muscle:
                _diagnostics(winner, 10 + 20 * seed, 100)
            _selection(root, seed, task, winner if has_muscle else None)
    return root


@pytest.fixture(scope="module")
def evidence(demo_root) -> dict:
    path = write_evidence(demo_root, [0, 1], ["a", "b"], bootstrap=400)
    return json.loads(path.read_text())


def test_per_seed_cells_carry_metrics_json_numbers(evidence, demo_root):
    a0 = evidence["per_seed"]["0"]["a"]
    metrics = json.loads((demo_root / "seed0" / "eval" / "metrics.json").read_text())
    comp = next(
        c
        for c in metrics["comparisons"]
        if (c["task"], c["other"]) == ("a", "muscle") and c["reference"] == "old"
    )
    assert a0["roles"]["muscle"]["nfr"] == comp["metrics"]["negative_flip_rate"]  # CI included
    assert a0["roles"]["muscle"]["nfr"]["numerator"] == 2
    assert (a0["roles"]["new"]["n_groups"], a0["roles"]["new"]["clustered"]) == (5, True)
    assert a0["roles"]["new"]["accuracy"]["numerator"] == 2  # e4, e5
    assert a0["accuracy_old"]["numerator"] == 6
    assert a0["delta_nfr_percent"]["muscle_vs_new"]["value"] == -50.0
    assert a0["delta_nfr_percent"]["continue_ce_vs_new"]["value"] == -25.0
    assert a0["delta_nfr_percent"]["muscle_vs_continue_ce"]["value"] == pytest.approx(-100 / 3)
    assert a0["diagnostics"]["muscle"]["old_share"]["numerator"] == 10
    assert a0["selection"]["winner"] == {"role": "muscle.x", "knobs": {"mask": "m"}}
    b0, b1 = evidence["per_seed"]["0"]["b"], evidence["per_seed"]["1"]["b"]
    assert b0["roles"]["new"]["nfr_metric"] == "similarity_negative_flip_rate"
    assert [b0["roles"][r]["nfr"]["numerator"] for r in ("new", "muscle", "continue_ce")] == [
        2,
        1,
        2,
    ]
    assert b0["roles"]["new"]["clustered"] is False
    assert "muscle" not in b1["roles"] and b1["selection"]["status"] == "no_point_passed_the_floor"
    assert b1["delta_nfr_percent"]["continue_ce_vs_new"]["value"] == pytest.approx(-200 / 3)


def test_per_task_levels_over_seeds(evidence):
    a = evidence["per_task"]["a"]
    assert a["roles"]["new"]["nfr"]["mean"] == pytest.approx(0.3)  # (0.4 + 0.2) / 2
    assert a["delta_nfr_percent"]["muscle_vs_new"]["mean"] == -50.0
    assert a["delta_nfr_percent"]["muscle_vs_new"]["sd"] == 0.0
    assert a["delta_nfr_percent"]["continue_ce_vs_new"]["mean"] == -12.5
    # NFR muscle − new per seed: −0.2, −0.1 → mean −0.15
    assert a["nfr_tests"]["muscle_vs_new"]["mean"] == pytest.approx(-0.15)
    assert a["muscle_old_share"]["mean"] == pytest.approx(0.2)  # 0.1 and 0.3
    b = evidence["per_task"]["b"]
    assert b["delta_nfr_percent"]["muscle_vs_new"]["n_seeds"] == 1  # only seed 0 has MUSCLE


def test_averages_over_tasks_use_only_complete_tasks(evidence):
    avg = evidence["averaged_over_tasks"]
    assert avg["tasks"]["muscle_vs_new"] == ["a"]  # b lacks MUSCLE in seed 1
    assert avg["tasks"]["continue_ce_vs_new"] == ["a", "b"]
    assert avg["excluded_tasks"]["muscle_vs_new"] == [
        {"task": "b", "reason": "muscle_vs_new undefined in seed 1: a role was not evaluated"}
    ]
    assert avg["delta_nfr_percent"]["muscle_vs_new"]["mean"] == -50.0
    # seed 0: (−25 + 0)/2 = −12.5; seed 1: (0 − 66.67)/2 = −33.33
    dc = avg["delta_nfr_percent"]["continue_ce_vs_new"]
    assert dc["mean"] == pytest.approx((-12.5 - 100 / 3) / 2)
    diff = avg["delta_nfr_percent_muscle_minus_continue_ce"]  # on task a: −25, −50
    assert diff["mean"] == pytest.approx(-37.5)
    assert diff["p_value"] == pytest.approx(1 - 2 * math.atan(3) / math.pi)  # t = −3, df 1
    # old: 6/10 on a, 4/8 correct on b (score 1.0 on rows 0-3): (0.6 + 0.5) / 2 in both seeds
    assert avg["accuracy_old"]["mean"] == pytest.approx(0.55)
    # accuracy change vs new in points: muscle on a: seed 0 +20, seed 1 +10
    assert avg["accuracy_change_points"]["muscle"]["mean"] == pytest.approx(15.0)
    assert evidence["missing"] == [
        {
            "seed": 1,
            "task": "b",
            "role": "muscle",
            "reason": "no point passed the floor: no candidate reaches the accuracy floor 74.50%",
        }
    ]
    pooled = evidence["diagnostics"]["muscle_old_share_pooled"]
    assert (pooled["numerator"], pooled["denominator"]) == (10 + 30 + 10, 300)


def test_cluster_bootstrap_point_values_and_intervals(evidence):
    boot = evidence["averaged_over_tasks"]["cluster_bootstrap"]
    assert boot["muscle_vs_new"]["value"] == pytest.approx(-50.0)
    assert boot["muscle_vs_new"]["tasks"] == ["a"]
    assert boot["continue_ce_vs_new"]["value"] == pytest.approx((-12.5 - 100 / 3) / 2)
    assert boot["muscle_minus_continue_ce"]["value"] == pytest.approx(-37.5)
    for key in ("muscle_vs_new", "continue_ce_vs_new", "muscle_minus_continue_ce"):
        lo, hi = boot[key]["ci"]
        assert lo <= hi and boot[key]["resamples"] == 400
    # the muscle flips (e0, e1) are a subset of new's in both seeds: never more flips than new
    assert boot["muscle_vs_new"]["ci"][1] <= 0.0


def test_identical_groups_give_a_point_interval(tmp_path):
    # Every group: old right on both rows, new wrong on one, muscle and continue_ce on the same
    # one: Δ%NFR is 0 in every resample.
    run = tmp_path / "seed0" / "eval"
    old = [
        {"example_id": f"x{i}", "task": "t", "correct": True, "group": f"g{i // 2}"}
        for i in range(8)
    ]
    new = [dict(r, correct=i % 2 == 1) for i, r in enumerate(old)]
    for role, rows in {"old": old, "new": new, "muscle": new, "continue_ce": new}.items():
        _write(run / "predictions" / "t" / f"{role}.jsonl", rows)
    compare_run(run, CompareConfig(bootstrap=50))
    doc = build_evidence(tmp_path, [0], ["t"], bootstrap=100)
    boot = doc["averaged_over_tasks"]["cluster_bootstrap"]["muscle_vs_new"]
    assert boot["value"] == 0.0 and boot["ci"] == [0.0, 0.0]
    assert doc["missing"] == [] and doc["per_seed"]["0"]["t"]["selection"] is None


def test_a_task_without_flips_of_new_is_left_out_of_the_average_with_the_reason(tmp_path):
    # Task z: new is right wherever old is (no negative flips: nothing to cut); task t as above.
    run = tmp_path / "seed0" / "eval"
    for task, new_right in (("t", lambda i: i % 2 == 1), ("z", lambda i: True)):
        old = [
            {"example_id": f"{task}{i}", "task": task, "correct": True, "group": f"g{i // 2}"}
            for i in range(8)
        ]
        new = [dict(r, correct=new_right(i)) for i, r in enumerate(old)]
        muscle = [dict(r, correct=i != 1) for i, r in enumerate(old)]
        for role, rows in {"old": old, "new": new, "muscle": muscle, "continue_ce": new}.items():
            _write(run / "predictions" / task / f"{role}.jsonl", rows)
    compare_run(run, CompareConfig(bootstrap=50))
    doc = build_evidence(tmp_path, [0], ["t", "z"], bootstrap=50)
    avg = doc["averaged_over_tasks"]
    assert avg["tasks"]["muscle_vs_new"] == ["t"]
    assert avg["excluded_tasks"]["muscle_vs_new"] == [
        {
            "task": "z",
            "reason": "muscle_vs_new undefined in seed 0: undefined: the reference"
            " role has no negative flips",
        }
    ]
    # t: new wrong on the even rows (4 flips), muscle only on row 1 (1 flip): −75%
    assert avg["delta_nfr_percent"]["muscle_vs_new"]["mean"] == -75.0
    assert avg["cluster_bootstrap"]["muscle_vs_new"]["value"] == -75.0
    assert avg["cluster_bootstrap"]["muscle_vs_new"]["tasks"] == ["t"]


def test_predictions_that_disagree_with_metrics_are_refused(tmp_path, demo_root):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    path = root / "seed0" / "eval" / "predictions" / "a" / "muscle.jsonl"
    _write(path, _mc_rows(_wrong_on(5)))  # 5 flips; metrics.json still says 2
    with pytest.raises(CompatlmError, match=r"muscle\.jsonl: 5 negative flips vs old, but"):
        build_evidence(root, [0, 1], ["a", "b"], bootstrap=10)


def test_a_missing_eval_run_is_named(tmp_path):
    with pytest.raises(CompatlmError, match=r"seed3/eval/metrics.json: missing"):
        build_evidence(tmp_path, [3], ["a"])


def test_stability_section_over_seeds(evidence):
    """Both seeds share one old adapter's predictions here, so retraining flips nothing and
    every instance old gets right (a0..a5) is stable; task b is judged by similarity flips."""
    st = evidence["stability"]
    assert set(st["tasks"]) == {"a"} and "similarity" in st["left_out"]["b"]
    a = st["tasks"]["a"]
    assert a["old_stable"] == {"value": 0.6, "numerator": 6, "denominator": 10}
    s0, s1 = a["per_seed"]["0"], a["per_seed"]["1"]
    assert s0["retrain_old"] == {"value": 0.0, "numerator": 0, "denominator": 10}
    # new wrong on a0..a3 (seed 0) and a0..a1 (seed 1): all on stable instances
    assert [s["roles"]["new"]["stable"]["numerator"] for s in (s0, s1)] == [4, 2]
    assert s0["roles"]["new"]["unstable"]["numerator"] == 0
    # muscle 2 and 1 stable flips: −50 % vs new in both seeds
    muscle = a["seed_level"]["roles"]["muscle"]["stable"]["delta_vs_new_percent"]
    assert (muscle["mean"], muscle["n_seeds"]) == (-50.0, 2)


def test_one_seed_has_no_stability_section(tmp_path):
    run = tmp_path / "seed0" / "eval"
    for role, correct in (("old", OLD_A), ("new", _wrong_on(4))):
        _write(run / "predictions" / "a" / f"{role}.jsonl", _mc_rows(correct))
    compare_run(run, CompareConfig(bootstrap=20))
    assert build_evidence(tmp_path, [0], ["a"], bootstrap=20)["stability"] is None
