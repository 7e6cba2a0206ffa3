"""Sweep: selection rule on hand-made points, grid validation, and one end-to-end run."""

from __future__ import annotations

import json
import random
from fractions import Fraction

import pytest

from compatlm.config import build_config
from compatlm.errors import CompatlmError
from compatlm.methods.config import SweepConfig
from compatlm.methods.registry import get_method
from compatlm.methods.sweep import SweepPoint, method_configs, role_name, run_sweep, select


def _m(num: int, den: int) -> dict:
    return {"value": num / den, "numerator": num, "denominator": den, "ci": None, "reason": None}


def _p(name: str, nf: int, acc: int, n: int = 20) -> SweepPoint:
    return SweepPoint(name, name, f"spec-{name}", _m(nf, n), _m(acc, n))


def test_select_lowest_nfr_above_floor_ties_by_accuracy_then_order():
    pts = [_p("a", 1, 10), _p("b", 2, 14), _p("c", 2, 15), _p("d", 2, 15), _p("e", 5, 16)]
    chosen, reason = select(pts, Fraction(14, 20))  # floor 0.70: "a" (0.50) is below
    assert chosen is pts[2]  # b, c, d share NFR 2/20; c and d have 15/20; c comes first
    assert [p.eligible for p in pts] == [False, True, True, True, True]
    # Front: a (lowest NFR), c/d (best accuracy at NFR 2 — equal points do not dominate), e.
    assert [p.pareto for p in pts] == [True, False, True, True, True]
    assert reason == (
        "lowest negative flip rate (10.00%) among 4 of 5 candidates with accuracy >= 70.00%"
    )


def test_select_floor_is_inclusive_and_exact():
    pts = [_p("a", 3, 7, n=10)]
    assert select(pts, Fraction(7, 10))[0] is pts[0]  # 0.7 >= 0.7 with exact fractions


def test_select_says_when_nothing_meets_the_floor():
    pts = [_p("a", 1, 10), _p("b", 0, 12)]
    chosen, reason = select(pts, Fraction(13, 20))
    assert chosen is None and not any(p.eligible for p in pts)
    assert reason == (
        "no candidate reaches the accuracy floor 65.00%: the most accurate, b, has accuracy"
        " 60.00% (5.00 points below the floor); lower the accuracy floor or widen the grid"
    )
    assert select([], Fraction(0))[0] is None


def test_select_skips_undefined_metrics():
    undefined = {"value": None, "numerator": 0, "denominator": 0, "ci": None, "reason": "no n"}
    pts = [SweepPoint("u", 0, "s", undefined, undefined), _p("b", 3, 10)]
    chosen, _ = select(pts, Fraction(0))
    assert chosen is pts[1] and not pts[0].eligible and not pts[0].pareto


def _sweep_cfg(data: dict) -> SweepConfig:
    base = {
        "method": "interpolate",
        "config": {"old": "o+oa", "new": "n+na"},
        "knob": "alpha",
        "values": [0.0, 0.5],
        "validation": {"name": "toy", "path": "val.jsonl"},
    }
    return build_config(SweepConfig, base | data)


def test_grid_is_validated_before_any_work():
    method = get_method("interpolate")
    with pytest.raises(CompatlmError, match="the grid is empty"):
        method_configs(_sweep_cfg({"values": []}), method)
    with pytest.raises(CompatlmError, match=r"alpha=1.5.*\[0, 1\]"):
        method_configs(_sweep_cfg({"values": [0.5, 1.5]}), method)
    with pytest.raises(CompatlmError, match="unknown key 'beta'"):
        method_configs(_sweep_cfg({"knob": "beta"}), method)
    grid = method_configs(_sweep_cfg({}), method)
    assert [(v, c.alpha) for v, c in grid] == [(0.0, 0.0), (0.5, 0.5)]
    assert role_name("vectors.1.weight", -0.5) == "vectors.1.weight_-0.5"


def _mc_file(path, n, seed):
    rnd = random.Random(seed)
    words = ["cat", "dog", "mat", "park", "sky", "blue", "apple", "jar", "lid", "paper"]
    rows = [
        {
            "id": f"q{i}",
            "context": f"The {rnd.choice(words)} is",
            "choices": rnd.sample(words, 3),
            "label": rnd.randrange(3),
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_sweep_end_to_end(tiny_family, tmp_path):
    cfg = build_config(
        SweepConfig,
        {
            "method": "interpolate",
            "config": {
                "old": f"{tiny_family['old']}+{tiny_family['old_adapter']}",
                "new": f"{tiny_family['new']}+{tiny_family['new_adapter']}",
            },
            "knob": "alpha",
            "values": [0.0, 0.5, 1.0],
            "validation": {"name": "toy", "path": str(_mc_file(tmp_path / "v.jsonl", 24, 0))},
            "test": {"name": "toy", "path": str(_mc_file(tmp_path / "t.jsonl", 24, 1))},
            "runtime": {"progress": False},
            "compare": {"bootstrap": 0},
        },
    )
    result = run_sweep(cfg, tmp_path / "sweep")
    doc = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    # alpha=0 is the new adapter exactly, so it scores like the vanilla new model.
    assert doc["points"][0]["accuracy"] == doc["new"]["accuracy"]
    assert doc["points"][0]["negative_flip_rate"] == doc["new"]["negative_flip_rate"]
    assert doc["floor"]["value"] == doc["new"]["accuracy"]["value"]
    eligible = [p for p in doc["points"] if p["eligible"]]
    best = min(p["negative_flip_rate"]["numerator"] for p in eligible)
    assert result.selected is not None
    assert doc["selected"]["negative_flip_rate"]["numerator"] == best
    assert set(doc["test"]) == {"new", result.selected.name}
    assert (tmp_path / "sweep" / "plots" / "sweep_front.png").read_bytes()[:4] == b"\x89PNG"
    assert "**(selected)**" in (tmp_path / "sweep" / "sweep.md").read_text()
    assert not (tmp_path / "sweep" / "test" / "predictions" / "toy" / "alpha_1.0.jsonl").exists()


def test_cli_sweep_exit_code_when_nothing_is_selected(tmp_path, monkeypatch, capsys):
    import yaml

    import compatlm.methods.sweep as sweep_mod
    from compatlm.cli import main
    from compatlm.methods.sweep import SweepResult

    seen = {}

    def fake(cfg, out, *, overwrite, resume):
        seen["values"] = cfg.values
        reason = "no candidate reaches the accuracy floor 0.9000 (best candidate accuracy: 0.5)"
        return SweepResult([], _p("new", 0, 10), {}, None, reason, None, [out / "sweep.json"])

    monkeypatch.setattr(sweep_mod, "run_sweep", fake)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_sweep_cfg({}).model_dump(mode="json")))
    code = main(["sweep", str(path), "values=[0.25]", "--out", str(tmp_path / "o")])
    assert code == 1 and seen["values"] == [0.25]
    captured = capsys.readouterr()
    assert f"wrote {tmp_path / 'o' / 'sweep.json'}" in captured.out
    assert "no candidate selected: no candidate reaches the accuracy floor 0.9000" in captured.err
