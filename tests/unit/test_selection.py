"""Selection on one split, one look at another: the rule, the config, the splits, and the
guarantee that the test split's labels are not read before the winner is fixed."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from compatlm.config import TaskConfig, build_config
from compatlm.errors import CompatlmError
from compatlm.methods.registry import get_method
from compatlm.methods.selection import Entry, SweepPoint, choose, floor_of, select
from compatlm.methods.sweep_config import (
    SelectConfig,
    SweepConfig,
    grid_points,
    method_configs,
    point_name,
)
from compatlm.methods.sweep_splits import check_selection_split, check_test_split_exists, split_task


def _m(num: int, den: int) -> dict:
    return {"value": num / den, "numerator": num, "denominator": den, "ci": None, "reason": None}


def _p(name: str, nf: int, acc: int, n: int = 20, kind: str = "candidate", btc=None) -> SweepPoint:
    metric = _m(*btc) if btc else None
    return SweepPoint(name, name, f"spec-{name}", _m(nf, n), _m(acc, n), kind=kind, metric=metric)


# ---------------------------------------------------------------- the rule


def test_floor_is_relative_in_points_and_exact():
    new = _p("new", 0, 13)  # 65%
    floor, doc = floor_of(new, points=-5.0, absolute=None, split="validation", field_name="f")
    assert floor == Fraction(12, 20)  # 65% − 5 points, exactly (no float rounding)
    assert doc["source"] == "validation accuracy of the new model − 5 points"
    pts = [_p("a", 1, 11), _p("b", 3, 12)]
    chosen, _ = select(pts, floor)
    assert chosen is pts[1] and [p.eligible for p in pts] == [False, True]  # 12/20 >= 12/20
    up, _ = floor_of(new, points=0.5, absolute=None, split="dev", field_name="f")
    assert up == Fraction(13, 20) + Fraction(1, 200)
    absolute, adoc = floor_of(new, points=None, absolute=0.7, split="v", field_name="f")
    assert absolute == Fraction(7, 10) and adoc["source"] == "accuracy_floor"


def test_floor_relative_to_an_undefined_accuracy_is_refused():
    undefined = {"value": None, "numerator": 0, "denominator": 0, "reason": "no instances"}
    new = SweepPoint("new", None, "s", undefined, undefined)
    with pytest.raises(CompatlmError, match=r"select.accuracy_floor: .*undefined \(no instances\)"):
        floor_of(
            new, points=-0.5, absolute=None, split="validation", field_name="select.accuracy_floor"
        )


def test_every_point_below_the_floor_names_the_best_and_its_gap():
    pts = [_p("kd_0.5", 1, 10), _p("kd_1.0", 0, 12), _p("ctl", 0, 12, kind="control")]
    chosen, reason = select(pts, Fraction(13, 20))
    assert chosen is None and not any(p.eligible for p in pts)
    assert reason == (
        "no candidate reaches the accuracy floor 65.00%: the most accurate, kd_1.0, has accuracy"
        " 60.00% (5.00 points below the floor); lower the accuracy floor or widen the grid"
    )


def test_the_control_competes_unless_told_not_to():
    pts = [_p("a", 3, 14), _p("ctl", 1, 14, kind="control")]
    chosen, reason = select(pts, Fraction(14, 20))
    assert chosen is pts[1]
    assert reason == (
        "lowest negative flip rate (5.00%) among 2 of 2 candidates with accuracy >= 70.00%"
    )
    chosen, reason = select(pts, Fraction(14, 20), control_competes=False)
    assert chosen is pts[0] and not pts[1].eligible
    assert pts[1].pareto  # still drawn on the front: it is the comparison
    assert reason.endswith("among 1 of 1 candidates with accuracy >= 70.00%")


def test_a_higher_is_better_metric_picks_the_highest():
    # backward trust compatibility: both right / old right; higher is better.
    pts = [_p("a", 0, 15, btc=(8, 10)), _p("b", 0, 15, btc=(9, 10)), _p("c", 0, 16, btc=(7, 10))]
    chosen, reason = select(pts, Fraction(15, 20), metric="backward_trust_compatibility")
    assert chosen is pts[1]
    assert reason.startswith("highest backward trust compatibility (90.00%)")
    assert [p.pareto for p in pts] == [False, True, True]  # a is dominated by b


def _metrics_doc(rows: dict[str, tuple[int, int]], n: int = 20) -> dict:
    """A metrics.json with comparisons old vs role: (negative flips, correct of role)."""
    comps = []
    for role, (nf, acc) in rows.items():
        comps.append({
            "task": "toy", "reference": "old", "other": role,
            "metrics": {"negative_flip_rate": _m(nf, n), "accuracy_new": _m(acc, n),
                        "accuracy_old": _m(12, n), "inconsistency_flip_rate": _m(nf, n)},
        })  # fmt: skip
    return {"comparisons": comps}


def test_choose_reads_points_from_the_selection_metrics_only():
    doc = _metrics_doc({"new": (4, 15), "a": (2, 14), "b": (1, 13), "control": (3, 15)})
    entries = [Entry("a", "sa", value=0.5, knobs={"alpha": 0.5}),
               Entry("b", "sb", value=1.0, knobs={"alpha": 1.0}),
               Entry("control", "sc", kind="control")]  # fmt: skip
    sel = choose(doc, "toy", entries, "snew", floor_points=-5.0)  # floor 70%
    assert sel.winner is not None and sel.winner.name == "a"  # b (65%) misses the floor
    assert sel.winner.negative_flip_rate == _m(2, 20) and sel.winner.knobs == {"alpha": 0.5}
    assert sel.floor["value"] == 0.70 and sel.rule["metric"] == "negative_flip_rate"
    assert [p.kind for p in sel.points] == ["candidate", "candidate", "control"]
    with pytest.raises(CompatlmError, match="'similarity_negative_flip_rate' is not measured"):
        choose(doc, "toy", entries, "snew", metric="similarity_negative_flip_rate")
    with pytest.raises(CompatlmError, match="no comparison old vs zzz"):
        choose(doc, "toy", [Entry("zzz", "s")], "snew")


# ---------------------------------------------------------------- config


def _sweep(extra: dict, tmp_path: Path | None = None) -> SweepConfig:
    base = {"method": "interpolate", "config": {"old": "o+oa", "new": "n+na"},
            "knob": "alpha", "values": [0.0, 0.5], "task": {"name": "toy", "path": "d"}}  # fmt: skip
    return build_config(SweepConfig, base | extra)


def test_select_section_defaults_and_strictness():
    cfg = _sweep({})
    assert cfg.rule() == SelectConfig()
    assert (cfg.rule().split, cfg.rule().test_split, cfg.rule().accuracy_floor) == (
        "validation", "test", 0.0)  # fmt: skip
    with pytest.raises(CompatlmError, match=r"unknown key 'select.floor'; valid keys under select"):
        _sweep({"select": {"floor": -0.5}})
    with pytest.raises(CompatlmError, match="'select.metric'"):
        _sweep({"select": {"metric": "nfr"}})
    with pytest.raises(CompatlmError, match="test_split 'validation' is the selection split"):
        _sweep({"select": {"test_split": "validation"}})
    assert _sweep({"select": {"test_split": False}}).rule().test_split is False
    with pytest.raises(Exception, match="frozen"):
        cfg.rule().split = "x"  # type: ignore[misc]


def test_sweep_config_forms_are_exclusive():
    with pytest.raises(CompatlmError, match="either task \\+ select"):
        _sweep({"validation": {"name": "toy", "path": "v.jsonl"}})
    with pytest.raises(CompatlmError, match="either knob \\+ values or grid"):
        _sweep({"grid": {"alpha": [0.1]}})
    with pytest.raises(CompatlmError, match="select names splits of `task`"):
        build_config(SweepConfig, {"method": "port", "config": {}, "knob": "alpha",
                                   "values": [1.0], "select": {}})  # fmt: skip
    with pytest.raises(CompatlmError, match="exactly one of method"):
        _sweep({"control": {"method": "continue_ce", "spec": "n+a"}})


def test_grid_enumerates_every_combination_with_file_safe_names():
    cfg = _sweep({"knob": None, "values": None,
                  "grid": {"alpha": [0.0, 0.5], "output": ["adapter", "merged"]}})  # fmt: skip
    points = grid_points(cfg)
    assert points == [{"alpha": 0.0, "output": "adapter"}, {"alpha": 0.0, "output": "merged"},
                      {"alpha": 0.5, "output": "adapter"}, {"alpha": 0.5, "output": "merged"}]  # fmt: skip
    assert point_name(points[1]) == "alpha_0.0__output__merged"
    assert point_name({"mask": "a_vs_b"}) == "mask__a_vs-b"  # never the flips separator
    configs = method_configs(cfg, get_method("interpolate"))
    assert [(c.alpha, c.output) for _, c in configs] == [
        (0.0, "adapter"), (0.0, "merged"), (0.5, "adapter"), (0.5, "merged")]  # fmt: skip
    assert configs[0][0] == {"alpha": 0.0, "output": "adapter"}


# ---------------------------------------------------------------- splits


def _mc(path: Path, n: int, *, labels: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"q{i}", "context": f"c{i}", "choices": ["a", "b"]} | ({"label": i % 2} if labels else {})
            for i in range(n)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_split_task_finds_each_split_strictly(tmp_path):
    d = tmp_path / "data"
    _mc(d / "validation.jsonl", 3)
    _mc(d / "test.jsonl", 4)
    task = TaskConfig(name="toy", path=str(d))
    assert split_task(task, "validation", "select.split").path == str(d / "validation.jsonl")
    assert split_task(task, "test", "select.test_split").split == "test"
    with pytest.raises(CompatlmError, match=r"select.split 'dev': no data file for this split in"
                       r" task directory .*data \(found: test.jsonl, validation.jsonl\)"):  # fmt: skip
        split_task(task, "dev", "select.split")
    only_test = tmp_path / "only_test"
    _mc(only_test / "test.jsonl", 2)  # one file is never taken for another split
    with pytest.raises(CompatlmError, match="select.split 'validation': no data file"):
        split_task(TaskConfig(name="toy", path=str(only_test)), "validation", "select.split")
    templ = TaskConfig(name="toy", path=str(tmp_path / "data" / "{split}.jsonl"))
    assert split_task(templ, "test", "select.test_split").path == str(d / "test.jsonl")
    with pytest.raises(
        CompatlmError, match=r"select.split 'dev': task file .*dev.jsonl does not exist"
    ):
        split_task(templ, "dev", "select.split")
    with pytest.raises(CompatlmError, match="is one file, so it holds no split 'validation'"):
        split_task(TaskConfig(name="toy", path=str(d / "test.jsonl")), "validation", "select.split")
    with pytest.raises(CompatlmError, match="task.split: 'train' is set"):
        split_task(TaskConfig(name="toy", path=str(d), split="train"), "test", "select.split")


def test_selection_split_needs_labels_but_the_test_split_is_not_read(tmp_path):
    val = _mc(tmp_path / "validation.jsonl", 3, labels=False)
    with pytest.raises(CompatlmError) as err:
        check_selection_split(TaskConfig(name="toy", path=str(val)), "select.split 'validation'")
    assert str(err.value) == (
        f"select.split 'validation': task file {val} has no labels (line 1 has no 'label');"
        " selection needs a labelled split"
    )
    good = _mc(tmp_path / "good.jsonl", 5)
    assert check_selection_split(TaskConfig(name="toy", path=str(good)), "validation") == 5
    # Garbage in the test file passes: only its existence is checked before the winner is fixed.
    garbage = tmp_path / "test.jsonl"
    garbage.write_bytes(b"\xff not json, no labels\n")
    check_test_split_exists(TaskConfig(name="toy", path=str(garbage)), "select.test_split 'test'")
    with pytest.raises(
        CompatlmError, match="select.test_split 'test': task file .* does not exist"
    ):
        check_test_split_exists(
            TaskConfig(name="toy", path=str(tmp_path / "nope.jsonl")), "select.test_split 'test'"
        )


# ---------------------------------------------------------------- end to end (tiny models)


def _words_task(path: Path, n: int, seed: int, *, labels: bool = True) -> Path:
    import random

    rnd = random.Random(seed)
    words = ["cat", "dog", "mat", "park", "sky", "blue", "apple", "jar", "lid", "paper"]
    rows = [{"id": f"q{i}", "context": f"The {rnd.choice(words)} is",
             "choices": rnd.sample(words, 3)} | ({"label": rnd.randrange(3)} if labels else {})
            for i in range(n)]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _split_cfg(fam: dict, data: Path, **select) -> dict:
    return {
        "method": "interpolate",
        "config": {
            "old": f"{fam['old']}+{fam['old_adapter']}",
            "new": f"{fam['new']}+{fam['new_adapter']}",
        },
        "knob": "alpha",
        "values": [0.0, 1.0],
        "task": {"name": "toy", "path": str(data)},
        "select": select,
        "control": {"spec": f"{fam['new']}+{fam['old_adapter']}"},  # the old adapter, ported
        "runtime": {"progress": False, "batch_size": 8},
        "compare": {"bootstrap": 0},
    }


def test_selection_never_reads_test_labels(tiny_family, tmp_path, monkeypatch):
    """The test file is unreadable (trapped) and label-less until the winner is fixed; then the
    real one appears and is evaluated for old, new, the winner and the control only."""
    import builtins

    import compatlm.methods.sweep as sweep_mod
    from compatlm.methods.sweep import run_sweep

    data = tmp_path / "data"
    val = _words_task(data / "validation.jsonl", 16, 0)
    test = _words_task(data / "test.jsonl", 16, 1, labels=False)
    state = {"fixed": False, "reads": []}

    def guard(path, mode: str) -> None:
        p = Path(path).resolve() if isinstance(path, (str, Path)) else None
        if p is not None and p in (val.resolve(), test.resolve()):
            if p == test.resolve() and not state["fixed"]:
                raise AssertionError(f"the test split was opened before the winner was fixed: {p}")
            if "r" in mode and "+" not in mode:
                state["reads"].append((p.name, state["fixed"]))

    real_path_open, real_open = Path.open, builtins.open

    def path_open(self, mode="r", *a, **k):
        guard(self, mode)
        return real_path_open(self, mode, *a, **k)

    def any_open(file, mode="r", *a, **k):
        guard(file, mode)
        return real_open(file, mode, *a, **k)

    real_choose = sweep_mod.choose

    def choose_then_release(*a, **k):
        sel = real_choose(*a, **k)
        assert sel.winner is not None
        state["fixed"] = True
        _words_task(test, 16, 1)  # the labelled test file exists from here on only
        return sel

    monkeypatch.setattr(Path, "open", path_open)
    monkeypatch.setattr(builtins, "open", any_open)
    monkeypatch.setattr(sweep_mod, "choose", choose_then_release)
    cfg = build_config(SweepConfig, _split_cfg(tiny_family, data, accuracy_floor=-100.0))
    result = run_sweep(cfg, tmp_path / "sweep")

    assert ("validation.jsonl", False) in state["reads"]  # the trap sees the task loader's reads
    assert ("test.jsonl", True) in state["reads"]
    assert all(fixed for name, fixed in state["reads"] if name == "test.jsonl")
    doc = json.loads((tmp_path / "sweep" / "selection.json").read_text())
    winner = result.selected
    assert (
        winner is not None and doc["status"] == "selected" and doc["winner"]["name"] == winner.name
    )
    # The winner is the lowest validation NFR (every point clears a floor 100 points down).
    best = min(p["negative_flip_rate"]["numerator"] for p in doc["points"] if p["eligible"])
    assert doc["winner"]["negative_flip_rate"]["numerator"] == best
    assert all(p["negative_flip_rate"]["denominator"] == 16 for p in doc["points"])
    assert [p["kind"] for p in doc["points"]] == ["candidate"] * 2 + ["control"]
    assert doc["rule"]["accuracy_floor"]["points"] == -100.0
    assert doc["splits"]["selection"]["task"]["path"] == str(val)
    roles = {p.stem for p in (tmp_path / "sweep" / "test" / "predictions" / "toy").glob("*.jsonl")}
    assert roles == {"old", "new", winner.name, "control"}
    assert set(doc["test"]["models"]) == {"new", winner.name, "control"}
    assert doc["test"]["models"][winner.name]["winner"] is True
    assert doc["test"]["models"]["control"]["negative_flip_rate"]["denominator"] == 16
    md = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "**(selected)**" in md and "## Test split `test` (one look)" in md and "(control)" in md
    assert (tmp_path / "sweep" / "plots" / "sweep_front.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "sweep" / "sweep.json").exists()  # the original form's file only


def test_cli_no_point_reaches_the_floor_exit_1_and_cleans_up(tiny_family, tmp_path, capsys):
    import yaml

    from compatlm.cli import main

    data = tmp_path / "data"
    _words_task(data / "validation.jsonl", 12, 0)
    _words_task(data / "test.jsonl", 12, 1)
    path = tmp_path / "sweep.yaml"
    cfg = _split_cfg(tiny_family, data)
    del cfg["control"]
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    code = main(["-q", "sweep", str(path), "select.accuracy_floor=50", "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert len(err) == 1, err
    assert err[0].startswith("no candidate selected: no candidate reaches the accuracy floor")
    assert "the most accurate, alpha_" in err[0] and "points below the floor" in err[0]
    doc = json.loads((out / "selection.json").read_text())
    assert doc["status"] == "no_candidate" and doc["winner"] is None and doc["test"] is None
    assert sorted(doc["removed"]) == ["candidates", "validation"]
    assert not (out / "candidates").exists() and not (out / "validation").exists()
    assert not (out / "test").exists()
    assert len(doc["points"]) == 2 and all(
        p["accuracy"]["denominator"] == 12 for p in doc["points"]
    )
    assert "**No candidate selected.**" in (out / "sweep.md").read_text()
    assert not any(p.name.startswith(".compatlm-staging") for p in out.iterdir())


def test_an_error_before_the_winner_removes_the_candidates_it_built(
    tiny_family, tmp_path, monkeypatch
):
    from compatlm.methods import registry
    from compatlm.methods.sweep import run_sweep

    data = tmp_path / "data"
    _words_task(data / "validation.jsonl", 8, 0)
    _words_task(data / "test.jsonl", 8, 1)
    method = registry.get_method("interpolate")
    real_build, calls = method.build, []

    def build_then_fail(cfg, out, *, runtime=None):
        calls.append(out.name)
        if len(calls) == 2:
            raise CompatlmError("simulated failure while building the second point")
        return real_build(cfg, out, runtime=runtime)

    monkeypatch.setattr(method, "build", build_then_fail)
    cfg = build_config(SweepConfig, _split_cfg(tiny_family, data))
    with pytest.raises(CompatlmError, match="simulated failure"):
        run_sweep(cfg, tmp_path / "out")
    assert calls == ["alpha_0.0", "alpha_1.0"]
    assert (tmp_path / "out").is_dir() and not (tmp_path / "out" / "candidates").exists()


def test_an_error_in_the_test_look_keeps_the_selection_for_resume(
    tiny_family, tmp_path, monkeypatch
):
    from compatlm.methods import registry
    from compatlm.methods.sweep import run_sweep

    data = tmp_path / "data"
    _words_task(data / "validation.jsonl", 8, 0)
    test = _words_task(data / "test.jsonl", 8, 1, labels=False)  # found by name, unusable
    cfg = build_config(SweepConfig, _split_cfg(tiny_family, data, accuracy_floor=-100.0))
    out = tmp_path / "out"
    with pytest.raises(CompatlmError, match=r"test.jsonl:1: field 'label'"):
        run_sweep(cfg, out)
    doc = json.loads((out / "selection.json").read_text())
    assert doc["status"] == "winner_fixed" and doc["test"] is None
    assert (out / "candidates" / doc["winner"]["name"] / "candidate.json").is_file()
    _words_task(test, 8, 1)  # fixed; resuming rebuilds nothing

    def trap(*a, **k):
        raise AssertionError("a finished candidate was rebuilt on --resume")

    monkeypatch.setattr(registry.get_method("interpolate"), "build", trap)
    result = run_sweep(cfg, out, resume=True)
    assert result.selected is not None and result.selected.name == doc["winner"]["name"]
    assert json.loads((out / "selection.json").read_text())["status"] == "selected"


def test_report_labels_are_escaped(tmp_path):
    from compatlm.methods.sweep_docs import selection_document
    from compatlm.report.sweep import front_png, sweep_markdown

    doc = _metrics_doc({"new": (4, 15), "p": (2, 15), "control": (3, 15)})
    entries = [Entry("p", "sp", value="x", knobs={"mask": "$\\frac{$ x|y <b>"}),
               Entry("control", "sc", kind="control")]  # fmt: skip
    sel = choose(doc, "toy", entries, "snew", floor_points=-5.0)
    cfg = _sweep({"knob": "mask", "values": ["x"]})
    task = TaskConfig(name="toy", path="d/validation.jsonl")
    out = selection_document(cfg, sel, old="o", control="control", test=None, status="selected",
                             removed=[], splits=("validation", task, None, None))  # fmt: skip
    md = sweep_markdown(json.loads(json.dumps(out)))
    assert r"mask=\$\\frac\{\$ x\|y &lt;b&gt; **(selected)**" in md
    assert "<b>" not in md
    assert front_png(out)[:4] == b"\x89PNG"  # as mathtext `$\frac{$` would not even parse
