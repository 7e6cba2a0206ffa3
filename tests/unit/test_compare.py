"""Joining and comparing prediction sets; flips files; metrics.json; run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compatlm.config import CompareConfig
from compatlm.errors import CompatlmError
from compatlm.eval.compare import compare_sets
from compatlm.eval.compare_io import compare_files, compare_run
from compatlm.eval.records import load_predictions
from compatlm.report import render_report
from helpers import prediction_line as line

# Same 10-instance case as test_metrics: old right on 0-6, new right on 0,1,2,3,7; target 0.
OLD_PARSED = [0, 0, 0, 0, 0, 0, 0, 1, 2, 3]
NEW_PARSED = [0, 0, 0, 0, 1, 2, 1, 0, 2, 1]
CFG = CompareConfig(bootstrap=0)


def write(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def pair_files(tmp_path: Path, old_over=None, new_over=None) -> tuple[Path, Path]:
    old = [line(i, "old", p, **(old_over or {}).get(i, {})) for i, p in enumerate(OLD_PARSED)]
    new = [line(i, "new", p, **(new_over or {}).get(i, {})) for i, p in enumerate(NEW_PARSED)]
    return write(tmp_path / "in" / "old.jsonl", old), write(tmp_path / "in" / "new.jsonl", new)


def test_compare_sets_hand_case(tmp_path):
    a, b = pair_files(tmp_path)
    c = compare_sets(load_predictions(a), load_predictions(b), CFG)
    assert (c.task, c.kind, c.reference, c.other, c.n) == (
        "demo_mc",
        "multiple_choice",
        "old",
        "new",
        10,
    )
    assert c.counts["negative_flips"] == 3 and c.counts["positive_flips"] == 1
    assert c.counts["inconsistency_flips"] == 4
    assert c.metrics["backward_trust_compatibility"]["value"] == pytest.approx(4 / 7)
    assert c.similarity["metrics"] is None and "multiple choice" in c.similarity["reason"]
    by_id = {f["example_id"]: f for f in c.flips}
    assert sorted(by_id) == ["ex4", "ex5", "ex6", "ex7", "ex9"]
    assert by_id["ex4"]["flip"] == "negative" and by_id["ex4"]["flip_types"] == [
        "negative",
        "inconsistency",
    ]
    assert by_id["ex7"]["flip_types"] == ["positive"]
    assert by_id["ex9"]["flip"] == "inconsistency"
    assert by_id["ex4"]["reference"] == {
        "output": "choice 0",
        "parsed": 0,
        "target": 0,
        "correct": True,
        "score": 0.6,
        "margin": 1.0,
    }
    assert by_id["ex4"]["other"]["parsed"] == 1 and by_id["ex4"]["other"]["correct"] is False
    # slices: a = ex0-4 (NF ex4), b = ex5-9 (NF ex5, ex6; PF ex7)
    assert c.slices["a"]["counts"]["negative_flips"] == 1 and c.slices["a"]["n"] == 5
    assert c.slices["b"]["metrics"]["negative_flip_rate"]["value"] == pytest.approx(0.4)
    assert c.slices["b"]["metrics"]["positive_flip_rate"]["value"] == pytest.approx(0.2)
    assert c.unmatched["reference_only"]["count"] == 0 and c.warnings == []


def test_self_comparison_has_no_flips(tmp_path):
    a, _ = pair_files(tmp_path)
    ps = load_predictions(a)
    c = compare_sets(ps, ps, CompareConfig(bootstrap=100))
    assert c.flips == [] and c.counts["negative_flips"] == 0 and c.counts["positive_flips"] == 0
    assert c.metrics["negative_flip_rate"]["value"] == 0.0
    assert c.metrics["backward_trust_compatibility"]["value"] == 1.0
    assert c.metrics["mcnemar_p_value"]["value"] is None


def test_unmatched_rows_are_reported(tmp_path):
    a, b = pair_files(tmp_path)
    old_rows = a.read_text() + json.dumps(line(50, "old", 0)) + "\n"
    new_rows = (
        b.read_text()
        + json.dumps(line(60, "new", 0))
        + "\n"
        + json.dumps(line(61, "new", 1))
        + "\n"
    )
    a.write_text(old_rows)
    b.write_text(new_rows)
    c = compare_sets(load_predictions(a), load_predictions(b), CFG)
    assert c.n == 10
    assert c.unmatched == {
        "reference_only": {"count": 1, "first_ids": ["ex50"]},
        "other_only": {"count": 2, "first_ids": ["ex60", "ex61"]},
    }
    assert any("unmatched rows: 1 only in old" in w for w in c.warnings)


def test_example_hash_mismatch_names_id_and_hashes(tmp_path):
    a, b = pair_files(tmp_path, new_over={3: {"example_hash": "zzz"}})
    with pytest.raises(
        CompatlmError,
        match=r"example 'ex3' differs between the files: example_hash e3 in .*old.jsonl:4 vs zzz in .*new.jsonl:4",
    ):
        compare_sets(load_predictions(a), load_predictions(b), CFG)


def test_prompt_mismatch_refused_unless_allowed(tmp_path):
    a, b = pair_files(tmp_path, new_over={2: {"prompt_hash": "q2"}})
    old, new = load_predictions(a), load_predictions(b)
    with pytest.raises(
        CompatlmError,
        match=r"prompt_hash differs on 1 of 10 matched instances \(first: 'ex2'.*--allow-prompt-mismatch",
    ):
        compare_sets(old, new, CFG)
    c = compare_sets(old, new, CompareConfig(bootstrap=0, allow_prompt_mismatch=True))
    assert any("prompt_hash differs on 1 of 10" in w for w in c.warnings)


def test_nothing_in_common_is_refused(tmp_path):
    a = write(tmp_path / "a.jsonl", [{"example_id": "1", "correct": True}])
    b = write(tmp_path / "b.jsonl", [{"example_id": "2", "correct": True}])
    with pytest.raises(CompatlmError, match="no example_id in common"):
        compare_sets(load_predictions(a), load_predictions(b), CFG)


def test_kind_and_task_mismatch(tmp_path):
    a, _ = pair_files(tmp_path)
    gen = write(tmp_path / "g.jsonl", [line(0, "new", 0, kind="generation")])
    with pytest.raises(CompatlmError, match="cannot compare multiple_choice predictions"):
        compare_sets(load_predictions(a), load_predictions(gen), CFG)
    other_task = write(tmp_path / "t.jsonl", [line(0, "new", 0, task="piqa", example_hash=None)])
    with pytest.raises(CompatlmError, match="task names differ: 'demo_mc'"):
        compare_sets(load_predictions(a), load_predictions(other_task), CFG)


def test_similarity_flips_and_noise(tmp_path):
    def gen(i, role, score, margin=None):
        return {
            "example_id": str(i),
            "correct": score >= 0.5,
            "score": score,
            "output": f"o{i}",
            "parsed": None,
            "margin": margin,
        }

    a = write(
        tmp_path / "a.jsonl",
        [gen(0, "old", 0.5), gen(1, "old", 0.8), gen(2, "old", 0.2), gen(3, "old", 1.0)],
    )
    b = write(
        tmp_path / "b.jsonl",
        [gen(0, "new", 0.7), gen(1, "new", 0.8), gen(2, "new", 0.1), gen(3, "new", 0.4)],
    )
    c = compare_sets(
        load_predictions(a), load_predictions(b), CompareConfig(bootstrap=0, tolerance=0.05)
    )
    assert c.similarity["metrics"]["similarity_negative_flip_rate"]["value"] == pytest.approx(0.5)
    by_id = {f["example_id"]: f for f in c.flips}
    assert by_id["3"]["flip_types"] == ["negative", "similarity_negative"]
    assert by_id["2"]["flip"] == "similarity_negative" and by_id["2"][
        "score_delta"
    ] == pytest.approx(-0.1)
    assert by_id["0"]["flip"] == "similarity_positive"
    assert "1" not in by_id

    m = write(tmp_path / "m_old.jsonl", [gen(0, "old", 1.0, 0.1), gen(1, "old", 1.0, 0.1)])
    n = write(tmp_path / "m_new.jsonl", [gen(0, "new", 0.0, -0.2), gen(1, "new", 0.0, -2.0)])
    c = compare_sets(load_predictions(m), load_predictions(n), CFG, noise_margin=0.5)
    assert {f["example_id"]: f["within_noise"] for f in c.flips} == {"0": True, "1": False}
    assert c.noise == {
        "noise_margin": 0.5,
        "flips_within_noise": 1,
        "negative_flips_within_noise": 1,
    }


BAD_INPUTS = {
    "malformed": '{"example_id": "ex0", ',
    "int_correct": json.dumps({"example_id": "ex0", "correct": 1}),
    "nan_score": '{"example_id": "ex0", "correct": true, "score": NaN}',
    "score_range": json.dumps({"example_id": "ex0", "correct": True, "score": 2.0}),
    "missing_correct": json.dumps({"example_id": "ex0"}),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_compare_files_bad_input_leaves_nothing(tmp_path, case):
    a, _ = pair_files(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(BAD_INPUTS[case] + "\n")
    out = tmp_path / "out"
    with pytest.raises(CompatlmError):
        compare_files(a, bad, out, CFG)
    assert not out.exists()


def test_compare_files_writes_everything(tmp_path):
    a, b = pair_files(tmp_path)
    out = tmp_path / "out"
    doc = compare_files(a, b, out, CompareConfig(bootstrap=200, seed=3), noise_margin=0.5)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == doc
    assert doc["schema_version"] == 1 and doc["generated_by"].startswith("compatlm ")
    assert doc["settings"]["bootstrap"] == 200 and doc["settings"]["noise_margin"] == 0.5
    (comp,) = doc["comparisons"]
    assert set(comp) >= {
        "task",
        "reference",
        "other",
        "files",
        "n",
        "unmatched",
        "counts",
        "metrics",
        "similarity",
        "slices",
        "warnings",
    }
    assert comp["files"]["flips"] == "flips/demo_mc/old_vs_new.jsonl"
    flips = [json.loads(x) for x in (out / comp["files"]["flips"]).read_text().splitlines()]
    assert [f["example_id"] for f in flips] == ["ex4", "ex5", "ex6", "ex7", "ex9"]
    # Evaluation renders nothing by itself: the reports come from the renderer a caller passes.
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert written == ["flips", "metrics.json"]
    with pytest.raises(CompatlmError, match="not empty; pass --overwrite"):
        compare_files(a, b, out, CFG)
    compare_files(a, b, out, CFG, overwrite=True, render=render_report)
    assert json.loads((out / "metrics.json").read_text())["settings"]["bootstrap"] == 0
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert list((out / "plots").glob("*.png"))


def test_compare_files_refuses_to_overwrite_its_inputs(tmp_path):
    a, b = pair_files(tmp_path)
    with pytest.raises(CompatlmError, match="contains the input"):
        compare_files(a, b, a.parent, CFG, overwrite=True)
    assert a.is_file()


def test_compare_run_with_candidate(tmp_path):
    run = tmp_path / "run"
    pred = run / "predictions" / "demo_mc"
    write(pred / "old.jsonl", [line(i, "old", p) for i, p in enumerate(OLD_PARSED)])
    write(pred / "new.jsonl", [line(i, "new", p) for i, p in enumerate(NEW_PARSED)])
    # candidate: like new but ex4 right -> NF {5,6} = 2, acc 0.6
    cand = [*NEW_PARSED]
    cand[4] = 0
    write(pred / "muscle.jsonl", [line(i, "muscle", p) for i, p in enumerate(cand)])
    (run / "flips" / "demo_mc").mkdir(parents=True)
    (run / "flips" / "demo_mc" / "stale_vs_x.jsonl").write_text("")
    doc = compare_run(run, CFG)
    pairs = [(c["reference"], c["other"]) for c in doc["comparisons"]]
    assert pairs == [("old", "new"), ("old", "muscle"), ("new", "muscle")]
    vs_old = doc["comparisons"][1]
    assert vs_old["files"] == {
        "reference": "predictions/demo_mc/old.jsonl",
        "other": "predictions/demo_mc/muscle.jsonl",
        "flips": "flips/demo_mc/old_vs_muscle.jsonl",
    }
    rel = vs_old["relative_to_baseline"]
    assert rel["baseline"] == "new"
    assert rel["delta_negative_flip_rate"]["value"] == pytest.approx(-0.1)
    assert rel["negative_flip_rate_change_percent"]["value"] == pytest.approx(-100 / 3)
    vs_new = doc["comparisons"][2]
    assert vs_new["counts"]["positive_flips"] == 1 and vs_new["counts"]["negative_flips"] == 0
    assert doc["comparisons"][0]["relative_to_baseline"] is None
    assert sorted(p.name for p in (run / "flips" / "demo_mc").iterdir()) == [
        "new_vs_muscle.jsonl",
        "old_vs_muscle.jsonl",
        "old_vs_new.jsonl",
    ]


def test_compare_run_without_renderer_drops_the_reports_of_the_previous_set(tmp_path):
    run = tmp_path / "run"
    pred = run / "predictions" / "demo_mc"
    write(pred / "old.jsonl", [line(i, "old", p) for i, p in enumerate(OLD_PARSED)])
    write(pred / "new.jsonl", [line(i, "new", p) for i, p in enumerate(NEW_PARSED)])
    compare_run(run, CFG, render=render_report)
    assert (run / "report.md").is_file() and list((run / "plots").glob("*.png"))
    compare_run(run, CFG)  # a new set without reports: the old ones would describe another
    assert not (run / "report.md").exists() and not (run / "report.html").exists()
    assert not (run / "plots").exists() and (run / "metrics.json").is_file()


def test_compare_run_needs_reference(tmp_path):
    run = tmp_path / "run"
    write(run / "predictions" / "t" / "new.jsonl", [line(0, "new", 0)])
    with pytest.raises(CompatlmError, match=r"no old.jsonl \(reference role\); roles here: new"):
        compare_run(run, CFG)
    with pytest.raises(CompatlmError, match="no predictions"):
        compare_run(tmp_path / "empty", CFG)


# --- 20k-instance golden cases ---------------------------------------------------------------
# metrics.json and the flips file of three seeded 20k-instance comparisons, saved from the
# row-by-row loader and join this module replaced (tests/fixtures/compare_20k/make_golden.py).
# The compact path must reproduce them byte for byte.
GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "compare_20k"
GOLDEN_N = 20_000


def _golden_rows(case: str, role: str, rng) -> list[dict | str]:
    """One side of a golden case; ``rng`` is shared so the two sides differ where they should."""
    n = GOLDEN_N
    rows: list[dict | str] = []
    for i in range(n):
        eid = f"é-{i}" if i % 97 == 0 else f"q{i:05d}"
        group = i // 13
        right = bool(rng.random() < (0.35 + 0.5 * ((group * 7919) % 11) / 10))
        if case == "generation":
            target = f"t{i % 50}"
            parsed = target if right else (None if rng.random() < 0.3 else f"w{rng.integers(9)}")
            score = float(round(rng.uniform(0.5, 1.0) if right else rng.uniform(0, 0.5), 3))
            row = {
                "schema_version": 1,
                "task": "gen_task",
                "kind": "generation",
                "role": role,
                "model": f"base-{role}",
                "example_id": eid,
                "example_hash": f"{(i * 2654435761) % 2**64:016x}",
                "prompt_hash": f"{(i * 40503) % 2**64:016x}",
                "target": target,
                "output": f"answer {{{parsed}}} ü" if i % 50 == 0 else f"the answer is {parsed}",
                "parsed": parsed,
                "correct": right,
                "score": (1 if right else 0) if i % 101 == 0 else score,
                "margin": None if i % 7 == 0 else float(round(rng.normal(0, 0.5), 4)),
                "loglikelihoods": None,
                "choice_lengths": None,
                "metric": "exact_match",
                "slice": ["math", "text", None][i % 3],
                "group": group if role == "old" else str(group),
            }
        elif case == "mc":
            target = i % 4
            parsed = target if right else int((target + 1 + rng.integers(3)) % 4)
            lls = [float(round(-1.0 - rng.random(), 5)) for _ in range(4)]
            lls[parsed] = -0.5
            row = {
                "schema_version": 1,
                "task": "mc_task",
                "kind": "multiple_choice",
                "role": role,
                "model": f"base+{role}",
                "example_id": eid,
                "example_hash": f"{(i * 2654435761) % 2**64:016x}",
                "prompt_hash": f"{(i * 40503) % 2**64:016x}"
                if role == "old" or i % 1000
                else "changed",
                "target": target,
                "output": f" choice {parsed}",
                "parsed": parsed,
                "correct": right,
                "score": float(round(rng.uniform(0.25, 1.0), 4)),
                "margin": float(round(rng.normal(0, 1.0), 4)),
                "loglikelihoods": lls,
                "choice_lengths": [3, 4, 5, 6],
                "metric": "acc_norm",
                "slice": f"s{i % 4}",
            }
        else:  # minimal foreign lines with extras a harness might write
            parsed = (i % 3) if right else ("x" if i % 2 else int(rng.integers(5)))
            row = {"example_id": eid, "correct": right, "parsed": parsed, "group": f"g{group}"}
            if i % 5:
                row["slice"] = ["a", "b"][i % 2]
            else:
                row["slice"] = None
            if i % 9 == 0:
                row["score"] = float(round(rng.random(), 3))
            row["margin"] = float(round(rng.normal(0, 0.3), 3))
            row["question"] = f"q {i}?"
            if i % 211 == 0:
                row["meta"] = {"source": "x", "k": [1, {"deep": True}]}
        rows.append(row)
    return rows


def golden_inputs(case: str, root: Path) -> tuple[Path, Path, dict]:
    """Write the two files of ``case`` under ``root``; returns them and compare_files options."""
    import numpy as np

    rng = np.random.default_rng({"generation": 1, "mc": 2, "minimal": 3}[case])
    old = _golden_rows(case, "old", rng)
    new = _golden_rows(case, "new", rng)
    # The new file: some rows missing, some only there, shuffled, with blank lines.
    new = [r for k, r in enumerate(new) if k % 211]
    extra = _golden_rows(case, "new", rng)[:40]
    for k, r in enumerate(extra):
        assert isinstance(r, dict)
        r["example_id"] = f"only-new-{k}"
    new += extra
    new = [new[k] for k in rng.permutation(len(new))]
    for k in range(0, len(new), 1000):
        new.insert(k, "")
    old.insert(5, "   ")
    opts: dict = {"noise_margin": 0.3}
    cfg = {"bootstrap": 200, "seed": 11, "allow_prompt_mismatch": case == "mc"}
    return write(root / "old.jsonl", old), write(root / "new.jsonl", new), {**opts, "cfg": cfg}


def golden_outputs(case: str, root: Path) -> dict[str, str]:
    """Run ``case`` through compare_files; metrics.json (paths and git hash masked) and the
    sha256 and line count of the flips file."""
    import hashlib
    import re

    a, b, opts = golden_inputs(case, root / "in")
    cfg = CompareConfig(**opts.pop("cfg"))
    out = root / "out"
    doc = compare_files(a, b, out, cfg, **opts)
    text = (out / "metrics.json").read_text(encoding="utf-8")
    text = text.replace(str((root / "in").resolve()), "<IN>")
    text = re.sub(r'"git_hash": (null|"[0-9a-f]*")', '"git_hash": "<GIT>"', text)
    flips = (out / doc["comparisons"][0]["files"]["flips"]).read_bytes()
    summary = {"sha256": hashlib.sha256(flips).hexdigest(), "lines": flips.count(b"\n")}
    return {"metrics.json": text, "flips.json": json.dumps(summary, indent=1) + "\n"}


@pytest.mark.parametrize("case", ["generation", "mc", "minimal"])
def test_golden_20k_byte_identical(tmp_path, case):
    for name, text in golden_outputs(case, tmp_path).items():
        want = (GOLDEN / f"{case}.{name}").read_text(encoding="utf-8")
        if name != "metrics.json":
            assert text == want, f"{case}.{name} differs from the saved row-by-row result"
            continue
        # Bootstrap CIs are BLAS sums whose order follows the thread count: the last digit of
        # a float may differ between machines (measured: 1 ulp with 1 vs 2 threads). Every
        # count, key and string must match exactly; floats to 1e-12 relative.
        _assert_same_json(json.loads(text), json.loads(want), f"{case}.{name}")


def _assert_same_json(got, want, where: str) -> None:
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, int | float) and isinstance(want, int | float), where
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for key in want:
            _assert_same_json(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same_json(g, w, f"{where}[{i}]")
    else:
        assert got == want and type(got) is type(want), where


def test_file_changed_after_loading_is_refused(tmp_path):
    # Flipped rows' outputs are read back by byte offset when the flips are written.
    a, b = pair_files(tmp_path)
    old, new = load_predictions(a), load_predictions(b)
    c = compare_sets(old, new, CFG)
    b.write_text(b.read_text().replace('"ex1"', '"ex1-renamed"'))
    with pytest.raises(CompatlmError, match=r"new.jsonl:5: the file changed after it was read"):
        list(c.flips)
    with pytest.raises(CompatlmError, match="the file changed after it was read"):
        new.rows  # noqa: B018


def test_flip_rows_read_outputs_back_from_any_line_shape(tmp_path):
    # CRLF line ends, indented lines and a last line without newline: outputs still found.
    a, b = pair_files(tmp_path)
    text = b.read_text().splitlines()
    text[4] = "  " + text[4]
    b.write_bytes(("\r\n".join(text)).encode())
    c = compare_sets(load_predictions(a), load_predictions(b), CFG)
    by_id = {f["example_id"]: f for f in c.flips}
    assert by_id["ex4"]["other"]["output"] == "choice 1"
    assert by_id["ex9"]["other"]["output"] == "choice 1" and len(c.flips) == 5


@pytest.mark.parametrize("long", [False, True])
def test_ids_equal_up_to_a_nul_are_different_ids(tmp_path, long):
    # numpy's variable-width strings compare up to the first NUL; these ids must not merge.
    pad = "x" * 80 if long else ""
    ids = [f"{pad}n\x00b", f"{pad}n\x00c", f"{pad}n\x00", f"{pad}n"]
    a = write(tmp_path / "a.jsonl", [{"example_id": i, "correct": True} for i in ids])
    rows = [{"example_id": i, "correct": k != 1} for k, i in enumerate(ids[::-1])]
    b = write(tmp_path / "b.jsonl", [*rows, {"example_id": f"{pad}n\x00d", "correct": True}])
    c = compare_sets(load_predictions(a), load_predictions(b), CFG)
    assert c.n == 4 and c.unmatched["other_only"]["first_ids"] == [f"{pad}n\x00d"]
    assert [f["example_id"] for f in c.flips] == [f"{pad}n\x00"]
    dup = write(tmp_path / "d.jsonl", [{"example_id": i, "correct": True} for i in [*ids, ids[1]]])
    with pytest.raises(
        CompatlmError, match=r"d.jsonl:5: .*duplicate example_id .* \(first on line 2\)"
    ):
        load_predictions(dup)
