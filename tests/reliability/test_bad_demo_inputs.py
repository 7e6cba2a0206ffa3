"""Bad demo selection settings: exit code 2, ONE ``error: ...`` line naming the knob, nothing
written, no family built (``build_or_load_family`` is a trap: a check that only fires after the
family exists would fail here)."""

from __future__ import annotations

import pytest

from compatlm.cli import main

CASES = [
    ("unknown-knob", "select.grid={lr: [0.1]}", ("'select.grid'", "unknown knob 'lr'", "mask")),
    ("empty-grid", "select.grid={}", ("'select.grid'", "grid is empty")),
    ("no-values", "select.grid={mask: []}", ("'select.grid'", "mask: no values")),
    ("repeated", "select.grid={kd_weight: [1, 1]}", ("kd_weight", "repeated")),
    ("bad-mask", "select.grid={mask: [nope]}", ("mask__nope", "field 'mask'", "'nope'")),
    ("kd-weight-range", "select.grid={kd_weight: [1.5]}", ("kd_weight_1.5", "less than or equal to 1")),
    ("control-in-grid", "select.grid={kd_weight: [0]}", ("kd_weight 0 is continue_ce",)),
    ("epochs-zero", "select.grid={compat_epochs: [0]}", ("compat_epochs", "greater than or equal to 1")),
    ("floor-range", "select.accuracy_floor=500", ("'select.accuracy_floor'", "100")),
    ("floor-nan", "select.accuracy_floor=.nan", ("'select.accuracy_floor'",)),
]  # fmt: skip


@pytest.mark.parametrize(("override", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_selection_setting_is_one_line_and_writes_nothing(
    override, expect, tmp_path, monkeypatch, capsys
):
    import compatlm.demo.family as family

    def trap(*a, **k):
        raise AssertionError("the family was built before the settings were checked")

    monkeypatch.setattr(family, "build_or_load_family", trap)
    monkeypatch.setenv("COMPATLM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    code = main(["demo", "--quick", "--out", str(out), override])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in expect:
        assert part in lines[0], (part, lines[0])
    assert "Traceback" not in err
    assert not out.exists() and not (tmp_path / "cache").exists()
