"""The demo chooses MUSCLE's knobs on validation, writes the choice, then looks at test once.

The selection file is checked on hand-made validation metrics documents; the order of work of a
seed (every selection on disk before any test file is named, unselected points never tested,
no MUSCLE when no point passes the floor) with the training and evaluation replaced by fakes
that record what they were asked to do.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from compatlm.config import build_config
from compatlm.demo.pipeline import DemoConfig, compat_settings
from compatlm.demo.selection import check_grid, select_task, selection_document
from compatlm.errors import CompatlmError


def _m(num: int, den: int) -> dict:
    return {"value": num / den, "numerator": num, "denominator": den, "ci": None, "reason": None}


def _comp(
    task: str,
    other: str,
    nf: int,
    acc: int,
    n: int = 200,
    *,
    acc_old: int = 140,
    kind: str = "multiple_choice",
    snf: int | None = None,
) -> dict:
    sim = {"metrics": {"similarity_negative_flip_rate": _m(snf, n)}} if snf is not None else {}
    return {
        "task": task,
        "kind": kind,
        "reference": "old",
        "other": other,
        "metrics": {
            "negative_flip_rate": _m(nf, n),
            "accuracy_new": _m(acc, n),
            "accuracy_old": _m(acc_old, n),
        },
        "similarity": sim,
    }


POINTS = [
    ("muscle.mask__student_wrong", {"mask": "student_wrong"}, "new+sw"),
    ("muscle.mask__old_correct", {"mask": "old_correct"}, "new+oc"),
]


def _doc(
    task: str,
    new: tuple[int, int],
    sw: tuple[int, int],
    oc: tuple[int, int],
    ce: tuple[int, int],
    **kw,
) -> dict:
    comps = [_comp(task, "new", *new, **kw), _comp(task, POINTS[0][0], *sw, **kw)]
    comps += [_comp(task, POINTS[1][0], *oc, **kw), _comp(task, "continue_ce", *ce, **kw)]
    return {"comparisons": comps}


def test_selection_file_holds_every_point_the_rule_and_the_winner():
    # new: 150/200 = 75% → floor 74.5% = 149/200. student_wrong: 150/200, 10 flips; old_correct:
    # 148/200 (below the floor) with fewer flips (4); continue_ce: 0 flips but it does not compete.
    doc = _doc("t", new=(20, 150), sw=(10, 150), oc=(4, 148), ce=(0, 160))
    cfg = DemoConfig()
    sel = select_task(doc, "t", POINTS, {"continue_ce": "new+ce"}, "new+n", cfg.select)
    out = selection_document(
        sel,
        task="t",
        seed=3,
        old_spec="old+o",
        val_doc=doc,
        seconds={POINTS[0][0]: 1.5},
        test_control="continue_ce",
    )
    assert out["status"] == "selected" and out["seed"] == 3 and out["split"] == "validation"
    assert out["winner"] == {
        "role": POINTS[0][0],
        "knobs": {"mask": "student_wrong"},
        "spec": "new+sw",
    }
    assert (
        out["rule"]["metric"] == "negative_flip_rate" and out["rule"]["control_competes"] is False
    )
    assert Fraction(out["floor"]["value"]).limit_denominator(1000) == Fraction(149, 200)
    assert out["floor"]["points"] == -0.5
    assert out["old"] == {"spec": "old+o", "accuracy": _m(140, 200)}
    assert out["new"]["accuracy"] == _m(150, 200) and out["new"]["negative_flip_rate"] == _m(
        20, 200
    )
    by_name = {p["name"]: p for p in out["points"]}
    assert list(by_name) == [POINTS[0][0], POINTS[1][0], "continue_ce"]
    sw, oc, ce = (by_name[n] for n in by_name)
    assert (sw["eligible"], oc["eligible"], ce["eligible"]) == (True, False, False)
    assert sw["negative_flip_rate"] == _m(10, 200) and oc["accuracy"] == _m(148, 200)
    assert (sw["kind"], ce["kind"]) == ("candidate", "control") and sw["knobs"] == POINTS[0][1]
    assert sw["train_seconds"] == 1.5 and oc["train_seconds"] is None
    assert out["test_roles"] == {"muscle": POINTS[0][0], "continue_ce": "continue_ce"}
    assert "1 of 2 candidates" in out["reason"]
    json.dumps(out)  # a JSON document as it stands


def test_no_point_passing_the_floor_is_said_not_papered_over():
    doc = _doc("t", new=(20, 150), sw=(10, 140), oc=(4, 146), ce=(0, 160))
    sel = select_task(doc, "t", POINTS, {"continue_ce": "new+ce"}, "new+n", DemoConfig().select)
    out = selection_document(
        sel, task="t", seed=0, old_spec="o", val_doc=doc, seconds={}, test_control="continue_ce"
    )
    assert out["status"] == "no_point_passed_the_floor" and out["winner"] is None
    assert out["test_roles"]["muscle"] is None
    # the most accurate MUSCLE point is named, not the control (it does not compete)
    assert "mask__old_correct" in out["reason"] and "73.00%" in out["reason"]


def test_generative_tasks_are_selected_on_similarity_flips():
    # Correctness flips favour student_wrong, similarity flips (the task's NFR) old_correct.
    comps = [
        _comp("g", "new", 20, 150, kind="generation", snf=30),
        _comp("g", POINTS[0][0], 5, 150, kind="generation", snf=25),
        _comp("g", POINTS[1][0], 9, 150, kind="generation", snf=12),
        _comp("g", "continue_ce", 9, 150, kind="generation", snf=40),
    ]
    sel = select_task(
        {"comparisons": comps}, "g", POINTS, {"continue_ce": "c"}, "n", DemoConfig().select
    )
    assert sel.rule["metric"] == "similarity_negative_flip_rate"
    assert sel.winner is not None and sel.winner.name == POINTS[1][0]


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"mask": ["nope"]}, "field 'mask'"),
        ({"kd_weight": [0.0]}, "kd_weight 0 is continue_ce"),
        ({"mask": ["new_only"]}, "mask new_only is kd_new"),
        ({"temperature": [-1.0]}, r"select\.grid\.temperature: Input should be greater than 0"),
    ],
)
def test_bad_grid_values_are_refused_before_training(grid, message):
    cfg = build_config(DemoConfig, {"select": {"grid": grid}}, "demo")
    with pytest.raises(CompatlmError, match=message):
        check_grid(cfg, compat_settings)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"lr": [1.0]}, "unknown knob 'lr'"),
        ({}, "grid is empty"),
        ({"mask": []}, "no values"),
        ({"kd_weight": [0.5, 0.5]}, "repeated"),
    ],
)
def test_bad_grid_shapes_are_config_errors(grid, message):
    with pytest.raises(CompatlmError, match=message):
        build_config(DemoConfig, {"select": {"grid": grid}}, "demo")


# ---------------------------------------------------------------- the order of a seed's work


class _Family:
    def __init__(self, root: Path) -> None:
        self.root, self.old_dir, self.new_dir = root, root / "old", root / "new"

    def task_dir(self, task: str) -> Path:
        return self.root / "tasks" / task

    def task_kind(self, task: str) -> str:
        return "multiple_choice"


# Validation numbers per (task, role): (negative flips, accuracy) of 200; the floor is new's
# 150 − 0.5 points = 149. Task b: no point reaches it, so it gets no MUSCLE.
VAL = {
    "a": {"new": (20, 150), "mask__student_wrong": (12, 151), "mask__old_correct": (8, 148)},
    "b": {"new": (20, 150), "mask__student_wrong": (5, 140), "mask__old_correct": (4, 130)},
}


@pytest.fixture
def seed_flow(tmp_path, monkeypatch):
    import compatlm.demo.seed_run as sr
    import compatlm.eval.pipeline as ep

    calls: list[tuple[str, dict]] = []
    out = tmp_path / "seed0"

    def fake_eval(ecfg, run_dir, *, resume=False, **_):
        run_dir = Path(run_dir)
        split = ecfg.tasks[0].split
        # What each task's selection file said when this evaluation was asked for.
        seen = {t.name: (out / "selection" / f"{t.name}.json").is_file() for t in ecfg.tasks}
        specs = {t.name: {r: m.format() for r, m in t.models.items()} for t in ecfg.tasks}
        calls.append((split, specs, seen))
        comps = []
        for t in ecfg.tasks:
            assert Path(t.path).name == f"{split}.jsonl"
            for role in t.models:
                if role == "old":
                    continue
                key = role.removeprefix("muscle.")
                nf, acc = VAL[t.name].get(key, (15, 155))
                comps.append(_comp(t.name, role, nf, acc))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps({"comparisons": comps}))
        return run_dir

    monkeypatch.setattr(ep, "run_eval", fake_eval)
    # The fake metrics.json holds only what selection reads; the seed renders each eval run.
    rendered: list[Path] = []
    monkeypatch.setattr("compatlm.report.render_report", lambda run, **_: rendered.append(run))
    monkeypatch.setattr(sr, "train_task_adapter", lambda cfg, f, base, t, s, o: f"{o}/adapter")
    monkeypatch.setattr(sr, "train_muscle", lambda cfg, f, old, new, t, s, o: f"{o}/adapter")
    monkeypatch.setattr(sr, "train_control", lambda name, mcfg, o: f"nb+{o}/adapter")
    cfg = DemoConfig(alternatives=["continue_ce", "kd_new"])
    points = check_grid(cfg, compat_settings)
    result = sr.run_seed(
        cfg, _Family(tmp_path / "fam"), ["a", "b"], cfg.alternatives, 0, out, points
    )
    assert rendered == [out / "validation", out / "eval"]  # eval renders nothing itself
    return result, calls, out


def test_every_selection_is_written_before_test_is_named(seed_flow):
    _, calls, _ = seed_flow
    assert [c[0] for c in calls] == ["validation", "test"]
    val_seen, test_seen = calls[0][2], calls[1][2]
    assert val_seen == {"a": False, "b": False}  # selecting: nothing chosen yet
    assert test_seen == {"a": True, "b": True}  # the test look: every choice already on disk


def test_test_look_holds_the_winner_as_muscle_and_never_the_other_points(seed_flow):
    result, calls, out = seed_flow
    val_models, test_models = calls[0][1], calls[1][1]
    assert set(val_models["a"]) == {
        "old",
        "new",
        "muscle.mask__student_wrong",
        "muscle.mask__old_correct",
        "continue_ce",
    }
    a = out / "adapters" / "a"
    assert test_models["a"]["muscle"].endswith(f"+{a}/muscle/mask__student_wrong/adapter")
    assert set(test_models["a"]) == {"old", "new", "muscle", "continue_ce", "kd_new"}
    assert not any(r.startswith("muscle.") for r in test_models["a"])
    # task b: no point passed the floor — no muscle, no kd_new (a control of nothing), a note
    assert set(test_models["b"]) == {"old", "new", "continue_ce"}
    assert result.notes and "b: MUSCLE — no point passed the floor" in result.notes[0]
    sel_b = json.loads((out / "selection" / "b.json").read_text())
    assert sel_b["status"] == "no_point_passed_the_floor"
    sel_a = json.loads((out / "selection" / "a.json").read_text())
    # old_correct has fewer flips but 148/200 < the floor 149/200
    assert sel_a["winner"]["role"] == "muscle.mask__student_wrong"
    assert result.selections["a"] == sel_a


def test_compat_mask_prompt_is_a_budget_knob_so_each_value_gets_its_own_control():
    from compatlm.demo.selection import budget_of, budgets, control_role, grid_points, point_config

    cfg = DemoConfig(
        select={
            "grid": {"mask": ["student_wrong", "old_correct"], "compat_mask_prompt": [True, False]}
        }
    )
    points = check_grid(cfg, compat_settings)
    assert len(points) == 4
    assert budgets(grid_points(cfg.select)) == [
        {"compat_mask_prompt": True},
        {"compat_mask_prompt": False},
    ]
    for knobs in points:
        control = point_config(cfg, budget_of(knobs))  # what continue_ce is trained with
        muscle = point_config(cfg, knobs)
        assert compat_settings(control)["mask_prompt"] == compat_settings(muscle)["mask_prompt"]
        assert compat_settings(muscle)["mask_prompt"] is knobs["compat_mask_prompt"]
    assert control_role({"compat_mask_prompt": False}) == "continue_ce.compat_mask_prompt_false"


def test_compat_init_is_a_budget_knob_that_reaches_every_compat_run():
    from compatlm.demo.selection import budget_of, budgets, control_role, grid_points, point_config

    cfg = DemoConfig(select={"grid": {"compat_init": ["new_adapter", "fresh"]}})
    points = check_grid(cfg, compat_settings)
    assert budgets(grid_points(cfg.select)) == [
        {"compat_init": "new_adapter"},
        {"compat_init": "fresh"},
    ]
    for knobs in points:
        control = compat_settings(point_config(cfg, budget_of(knobs)))
        assert control["student_init"] == compat_settings(point_config(cfg, knobs))["student_init"]
        assert control["student_init"] == knobs["compat_init"]
    assert control_role({"compat_init": "fresh"}) == "continue_ce.compat_init__fresh"
    assert compat_settings(DemoConfig())["student_init"] == "new_adapter"  # the paper's A.1
    with pytest.raises(CompatlmError, match="compat_init"):
        point_config(cfg, {"compat_init": "scratch"})


def test_pct_has_its_own_temperature_apart_from_muscles(monkeypatch, tmp_path):
    """The temperature study measured MUSCLE only: PCT trains at ``pct_temperature``, MUSCLE's
    compat settings at ``temperature``."""
    import compatlm.train.recipes.compat as compat_recipe
    from compatlm.config import TaskConfig
    from compatlm.demo.alternatives import train_pct

    seen = {}

    def fake_train(ccfg, out, resume):
        seen["cfg"] = ccfg
        return out

    monkeypatch.setattr(compat_recipe, "train_compat", fake_train)
    cfg = DemoConfig(temperature=1.0, pct_temperature=3.0)
    task = TaskConfig(name="t", kind="multiple_choice", path=str(tmp_path / "t.jsonl"))
    train_pct(cfg, task, "old+a", "new+b", 0, tmp_path / "pct")
    assert seen["cfg"].temperature == 3.0
    assert DemoConfig().pct_temperature == 2.0 and DemoConfig().temperature == 1.0
    assert compat_settings(cfg)["temperature"] == 1.0
