"""The report a person reads at a glance: header block, gate banner and its record in
metrics.json, similarity tasks shown by their own numbers, the flip viewer, and the noise
floor surviving ``compare RUN_DIR``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from compatlm.cli import main
from compatlm.eval.examples import attach_texts, write_examples
from compatlm.tasks.base import GenExample, MCExample

# Per instance (old, new, muscle, continue_ce) correctness of the MC task, 10 instances:
# old right on 0-5; new wrong on 0, 1 (2 negative flips) and right on 6 (1 positive);
# muscle wrong on 0 only; continue_ce wrong on 0, 1, 2.
MC = {
    "old": [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
    "new": [0, 0, 1, 1, 1, 1, 1, 0, 0, 0],
    "muscle": [0, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "continue_ce": [0, 0, 0, 1, 1, 1, 1, 0, 0, 0],
}
# ROUGE-like scores of the generation task, 4 instances: every output passes 0.3.
GEN = {
    "old": [0.5, 0.5, 0.5, 0.5],
    "new": [0.4, 0.5, 0.9, 0.5],
    "muscle": [0.5, 0.45, 0.9, 0.5],
    "continue_ce": [0.3, 0.5, 0.9, 0.5],
}
CHOICES = ["twist the lid", "hit it with a hammer"]


def _row(task: str, kind: str, role: str, i: int, **fields) -> dict:
    return {
        "schema_version": 1,
        "task": task,
        "kind": kind,
        "role": role,
        "model": f"/bases/{role}+/runs/{role}/adapter",
        "example_id": str(i),
        "example_hash": f"{task}-{i}",
        "prompt_hash": None,
        "metric": "acc" if kind == "multiple_choice" else "rouge1",
        **fields,
    }


def make_run(root: Path, *, examples: bool = True) -> Path:
    run = root / "run"
    for role, flags in MC.items():
        rows = [
            _row("mc", "multiple_choice", role, i, target=0, output=CHOICES[1 - c],
                 parsed=1 - c, correct=bool(c), margin=0.01 * (i + 1) * (1 if c else -1))
            for i, c in enumerate(flags)
        ]  # fmt: skip
        _write(run / "predictions" / "mc" / f"{role}.jsonl", rows)
    for role, scores in GEN.items():
        rows = [
            _row("gen", "generation", role, i, target="A and B greet.", output=f"out {s}",
                 parsed=f"out {s}", correct=s >= 0.3, score=s, margin=None)
            for i, s in enumerate(scores)
        ]  # fmt: skip
        _write(run / "predictions" / "gen" / f"{role}.jsonl", rows)
    env = {
        "git_hash": "0123456789abcdef0123456789abcdef01234567",
        "created": "2025-06-01T14:03:11+00:00",
        "tasks": [
            {"name": "mc", "kind": "multiple_choice", "metric": "acc"},
            {"name": "gen", "kind": "generation", "metric": "rouge1", "pass_threshold": 0.3},
        ],
    }
    (run / "env.json").write_text(json.dumps(env))
    if examples:
        mc = [MCExample(str(i), f"Goal {i}: open a jar", tuple(CHOICES), 0) for i in range(10)]
        gen = [GenExample(str(i), f"Dialogue {i}:", "A and B greet.") for i in range(4)]
        tasks = [_Task("mc", mc), _Task("gen", gen)]
        write_examples(run, tasks, {t.name: {x.id: f"{t.name}-{x.id}" for x in t.examples}
                                    for t in tasks})  # fmt: skip
    return run


class _Task:
    def __init__(self, name: str, examples: list) -> None:
        self.name, self.examples = name, examples


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def compare(run: Path, *extra: str) -> int:
    return main(["compare", str(run), "--bootstrap", "0", *extra])


@pytest.fixture
def run(tmp_path) -> Path:
    run = make_run(tmp_path)
    assert compare(run) == 0
    return run


def test_header_names_models_metric_code_date_and_verdicts(run):
    md = (run / "report.md").read_text()
    assert "- **Compared**: old: /bases/old+/runs/old/adapter; new: /bases/new+/runs/new/" in md
    assert "continue\\_ce (same-budget control): /bases/continue\\_ce+" in md
    assert (
        "- **Decision metric**: gen: rouge1 (similarity task; correct = score ≥ pass_threshold"
        " 0.3); mc: acc\n" in md
    )
    assert "- **Code**: compatlm " in md and ", git 0123456789ab\n" in md
    assert "- **Date**: 2025-06-01 14:03 UTC (run started, env.json)" in md
    assert "➖ **No gate: no --fail-if condition was given**" in md
    # NF: new 2 of 10 (ids 0, 1); muscle 1 (-50%); continue_ce 3 (+50%): controls come last.
    verdict = (
        "- mc: new gets 20.00% of all instances wrong that old got right (NFR; 2 of 10);"
        " candidate muscle cuts that to 10.00% (-50.0% vs new; 1 of 10); same-budget control"
        " continue\\_ce raises that to 30.00% (+50.0% vs new; 3 of 10)."
    )
    assert verdict in md
    # gen: S falls by more than 0 on id 0 for new (1 of 4), ids 1 for muscle, 0 for continue_ce.
    assert (
        "- gen: new lowers the rouge1 score of 25.00% of all instances by more than τ=0"
        " compared with old (sNFR; 1 of 4); candidate muscle leaves it at 25.00% (+0.0% vs new;"
        " 1 of 4)" in md
    )
    html = (run / "report.html").read_text()
    assert '<div class="gate gate-none">' in html
    assert "<th>Date</th><td>2025-06-01 14:03 UTC (run started, env.json)</td>" in html


def test_similarity_task_shows_s_snfr_and_threshold_not_accuracy(run, capsys):
    assert compare(run) == 0
    out = capsys.readouterr().out
    # The terminal summary too: gen in the similarity table (S, sNFR), not the accuracy one.
    acc_table, sim_table = out.split("similarity tasks (S = mean score)")
    assert "│ mc " in acc_table and "│ gen " not in acc_table
    assert "│ gen  │ old → new         │ 4 │ 0.500 │   0.575 │ 25.00% │ 25.00% │" in sim_table
    md = (run / "report.md").read_text()
    headline = md.split("## Headline")[1].split("###")[0]
    assert "| mc | old → new |" in headline and "| gen |" not in headline
    sim = md.split("### Similarity tasks")[1].split("###")[0]
    # S old 0.5; S new (0.4+0.5+0.9+0.5)/4 = 0.575; sNFR 1/4, sPFR 1/4; m_g 0.4, m_r 0.1.
    assert "| gen | old → new | 4 | 0.500 | 0.575 | 25.00% | 25.00% | 0.400 | 0.100 | 0 |" in sim
    assert (
        "gen: correct = rouge1 ≥ 0.3 (pass_threshold); 100.00% of old's and 100.00% of new's"
        " outputs pass it." in md
    )
    gen_section = md.split("## gen: old → new")[1].split("## ")[0]
    assert "| score fell > 0 | within ±0 | score rose > 0 |" in gen_section
    assert "| 1 | 2 | 1 |" in gen_section and "both right" not in gen_section
    html = (run / "report.html").read_text()
    assert "score fell by more than 0" in html
    # The relative table uses sNFR for gen: muscle 1/4 vs new 1/4 -> +0.00 pts; ΔS 0.5875-0.575.
    assert "| gen | old → muscle | new | +0.00 pts | +0.00% | +0.013 |" in md


def test_gate_recorded_in_metrics_json_and_banner(run, capsys):
    assert compare(run, "--fail-if", "mc:NFR>0.15", "--fail-if", "mc:PFR>0.5") == 1
    doc = json.loads((run / "metrics.json").read_text())
    gate = doc["gate"]
    assert gate["conditions"] == ["mc:NFR>0.15", "mc:PFR>0.5"] and gate["passed"] is False
    # old_vs_new (0.2) and old_vs_continue_ce (0.3) exceed 0.15; muscle (0.1) does not.
    assert [(f["comparison"], f["value"]) for f in gate["failures"]] == [
        ("old_vs_new", 0.2),
        ("old_vs_continue_ce", 0.3),
    ]
    md = (run / "report.md").read_text()
    assert (
        "❌ **Gate FAILED: 1 of 2 --fail-if conditions hold (mc:NFR&gt;0.15; mc:PFR&gt;0.5)**" in md
    )
    assert "> - mc: old\\_vs\\_new: negative\\_flip\\_rate = 0.2 &gt; 0.15" in md
    assert '<div class="gate gate-fail">' in (run / "report.html").read_text()
    assert "gate failed: mc:NFR>0.15: mc: old_vs_new" in capsys.readouterr().err
    # `report --fail-if` checks again and records what it checked.
    assert main(["report", str(run), "--fail-if", "mc:NFR>0.5"]) == 0
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["gate"]["passed"] is True and doc["gate"]["conditions"] == ["mc:NFR>0.5"]
    assert (
        "Gate PASSED: no --fail-if condition holds (mc:NFR&gt;0.5)"
        in (run / "report.md").read_text()
    )
    # Without --fail-if the recorded gate stays; a recompare without one records none.
    assert main(["report", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["gate"]["passed"] is True
    assert compare(run) == 0
    gate = json.loads((run / "metrics.json").read_text())["gate"]
    assert gate["passed"] is None and gate["reason"] == "no --fail-if condition was given"


def test_gate_matching_nothing_fails_before_writing(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write(a, [{"example_id": "1", "correct": True}])
    _write(b, [{"example_id": "1", "correct": False}])
    out = tmp_path / "out"
    assert main(["compare", str(a), str(b), "--out", str(out), "--fail-if", "zzz:NFR>0"]) == 2
    assert "matches no comparison" in capsys.readouterr().err and not out.exists()


def test_noise_floor_survives_compare_run_dir(tmp_path):
    run = make_run(tmp_path)
    noise = {"schema_version": 1, "tasks": {"mc": {"noise_margin": 0.025}}, "noise_margin": 0.025}
    (run / "noise.json").write_text(json.dumps(noise))
    labels = []
    for _ in range(2):
        assert compare(run) == 0
        doc = json.loads((run / "metrics.json").read_text())
        assert doc["settings"]["noise_margin"] == {"mc": 0.025}
        assert doc["settings"]["noise_margin_source"] == "noise.json"
        comp = next(c for c in doc["comparisons"] if (c["task"], c["other"]) == ("mc", "new"))
        flips = [json.loads(x) for x in (run / comp["files"]["flips"]).read_text().splitlines()]
        labels.append({f["example_id"]: f["within_noise"] for f in flips})
        # |margin| < 0.025 on both sides only for id 0 (0.01 and -0.01); id 1 has 0.02/-0.02.
        assert comp["noise"] == {
            "noise_margin": 0.025,
            "flips_within_noise": 2,
            "negative_flips_within_noise": 2,
        }
    assert labels[0] == labels[1] == {"0": True, "1": True, "6": False}
    gen = next(c for c in doc["comparisons"] if c["task"] == "gen")
    assert gen["noise"]["noise_margin"] is None  # no floor measured for the generation task
    (run / "noise.json").write_text('{"tasks": {"mc": {"noise_margin": -1}}}')
    assert compare(run) == 2


def test_flip_viewer_shows_prompt_choices_and_filter(run):
    doc = json.loads((run / "metrics.json").read_text())
    pairs = [(c["task"], c["reference"], c["other"]) for c in doc["comparisons"]]
    k = pairs.index(("mc", "old", "new"))
    comp = doc["comparisons"][k]
    flip = json.loads((run / comp["files"]["flips"]).read_text().splitlines()[0])
    assert flip["prompt"] == "Goal 0: open a jar" and flip["choices"] == CHOICES
    html = (run / "report.html").read_text()
    assert "<script" not in html.lower()  # the filter is CSS
    section = html.split(f'<h2 id="c{k}">')[1].split("<h2 ")[0]
    assert f'<input type="radio" name="f{k}" id="f{k}-all" value="all" checked>' in section
    assert f'<label for="f{k}-negative">negative (2)</label>' in section
    assert f'<label for="f{k}-positive">positive (1)</label>' in section
    assert ".fv input[value=negative]:checked~.fl .flip:not(.k-negative){display:none}" in html
    assert section.count('<details class="flip k-negative k-inconsistency">') == 2
    assert "Goal 0: open a jar" in section
    assert '<li class="t">twist the lid<span class="mark t">target</span>' in section
    assert f'<a href="#c{k}">mc: old → new</a>' in html
    # Rounded numbers, and no row for a field neither side has (no margins on generation).
    assert "<th>margin</th><td><pre>0.01</pre></td><td><pre>-0.01</pre></td>" in section
    assert not re.search(r"\d\.\d{6,}", section)
    g = pairs.index(("gen", "old", "new"))
    gen = html.split(f'<h2 id="c{g}">')[1].split("<h2 ")[0]
    assert "<th>margin</th>" not in gen and "Choices" not in gen
    assert "<th>score</th><td><pre>0.5</pre></td><td><pre>0.4</pre></td>" in gen
    assert "score fell (1)" in gen and "Dialogue 0:" in gen


def test_flip_viewer_says_not_recorded_without_examples(tmp_path):
    run = make_run(tmp_path, examples=False)
    assert compare(run) == 0
    html = (run / "report.html").read_text()
    assert "Prompt: not recorded" in html and "Choices: not recorded." in html


def test_texts_attach_only_when_the_example_hash_matches():
    texts = {"1": {"example_hash": "h1", "prompt": "p1", "choices": ["a", "b"]}}
    flips = [{"example_id": "1"}, {"example_id": "2"}]
    assert attach_texts(flips, texts, {"1": "h1", "2": "h2"}) == 1
    assert flips[0]["prompt"] == "p1" and flips[1]["prompt"] is None
    flips = [{"example_id": "1"}]
    assert attach_texts(flips, texts, {"1": "edited"}) == 0 and flips[0]["choices"] is None
