"""Determinism: the same config and seed give byte-identical outputs, run after run."""

from __future__ import annotations

from compatlm.cli import main


def test_same_config_twice_is_byte_identical(small_eval_config, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        assert main(["eval", str(small_eval_config), "--out", str(out)]) == 0
    a, b = runs
    # metrics.json holds bootstrap CIs too (seeded), so equal bytes mean equal resampling.
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    for rel in ("predictions/tiny_mc/old.jsonl", "predictions/tiny_mc/new.jsonl"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    flips = sorted(p.relative_to(a) for p in (a / "flips").rglob("*.jsonl"))
    assert flips, "no flips file written"
    for rel in flips:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    # Identical but for the header's date line: it says when each run started.
    reports = [
        [x for x in (r / "report.md").read_text().splitlines() if not x.startswith("- **Date**:")]
        for r in runs
    ]
    lines = (a / "report.md").read_text().splitlines()
    assert reports[0] == reports[1] and len(reports[0]) == len(lines) - 1


def test_compare_is_deterministic_for_a_seed(tmp_path):
    """The paired bootstrap depends on the seed only: equal for equal seeds, and it is used."""
    import json

    old = tmp_path / "old.jsonl"
    new = tmp_path / "new.jsonl"
    pattern_old = [i % 3 != 0 for i in range(60)]
    pattern_new = [i % 4 != 0 for i in range(60)]
    for path, pattern in ((old, pattern_old), (new, pattern_new)):
        path.write_text(
            "".join(
                json.dumps({"example_id": str(i), "correct": c}) + "\n"
                for i, c in enumerate(pattern)
            )
        )
    outs = {}
    for name, seed in (("s1", "1"), ("s1b", "1"), ("s2", "2")):
        out = tmp_path / name
        args = ["compare", str(old), str(new), "--out", str(out), "--bootstrap", "300"]
        assert main([*args, "--seed", seed]) == 0
        outs[name] = (out / "metrics.json").read_bytes()
    assert outs["s1"] == outs["s1b"]
    ci = json.loads(outs["s1"])["comparisons"][0]["metrics"]["negative_flip_rate"]["ci"]
    ci2 = json.loads(outs["s2"])["comparisons"][0]["metrics"]["negative_flip_rate"]["ci"]
    assert ci is not None and ci2 is not None and ci != ci2
