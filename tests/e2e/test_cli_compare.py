"""``compatlm compare`` and ``compatlm report`` through ``compatlm.cli.main``: exit codes 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compatlm.cli import main

# old right on 0-7 (8/10), new right on 0-5 and 8, 9 (8/10): NF {6,7}, PF {8,9} -> NFR 0.2
OLD = [True] * 8 + [False] * 2
NEW = [True] * 6 + [False] * 2 + [True] * 2


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def files(tmp_path: Path) -> tuple[str, str]:
    a = write(
        tmp_path / "old.jsonl", [{"example_id": str(i), "correct": c} for i, c in enumerate(OLD)]
    )
    b = write(
        tmp_path / "new.jsonl", [{"example_id": str(i), "correct": c} for i, c in enumerate(NEW)]
    )
    return str(a), str(b)


def test_summary_keeps_long_names_off_a_terminal(tmp_path, capsys):
    # capsys is not a terminal: rich would otherwise wrap at 80 columns and cut the names
    task = "a_rather_long_task_name_from_a_real_benchmark_suite"
    rows = [{"example_id": str(i), "correct": c, "task": task} for i, c in enumerate(OLD)]
    a = write(tmp_path / "old.jsonl", rows)
    rows = [{"example_id": str(i), "correct": c, "task": task} for i, c in enumerate(NEW)]
    b = write(tmp_path / "new.jsonl", rows)
    args = ["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--bootstrap", "10"]
    assert main(args) == 0
    assert task in capsys.readouterr().out


def test_compare_ok_prints_summary_and_paths(tmp_path, capsys):
    a, b = files(tmp_path)
    out = tmp_path / "out"
    assert main(["compare", a, b, "--out", str(out), "--bootstrap", "100", "--seed", "7"]) == 0
    text = capsys.readouterr().out
    assert "old → new" in text and "20.00%" in text
    for p in ("flips/task/old_vs_new.jsonl", "metrics.json", "report.md", "report.html"):
        assert f"wrote {out / p}" in text
        assert (out / p).is_file()
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["settings"]["seed"] == 7 and doc["settings"]["bootstrap"] == 100
    assert doc["comparisons"][0]["metrics"]["negative_flip_rate"]["value"] == pytest.approx(0.2)


def test_gate_exit_codes(tmp_path, capsys):
    a, b = files(tmp_path)
    code = main(
        [
            "compare",
            a,
            b,
            "--out",
            str(tmp_path / "fail"),
            "--bootstrap",
            "0",
            "--fail-if",
            "negative_flip_rate>0.1",
            "--fail-if",
            "accuracy_delta<-0.5",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert (
        "gate failed: negative_flip_rate>0.1: task: old_vs_new: negative_flip_rate = 0.2 > 0.1"
        in err
    )
    assert "accuracy_delta" not in err
    assert (tmp_path / "fail" / "metrics.json").is_file()  # outputs are written before the gate
    code = main(
        [
            "compare",
            a,
            b,
            "--out",
            str(tmp_path / "pass"),
            "--bootstrap",
            "0",
            "--fail-if",
            "negative_flip_rate>0.25",
        ]
    )
    captured = capsys.readouterr()
    # Same wording and stream as `compatlm eval`: the outcome on stderr, stdout keeps results.
    assert code == 0 and "gate passed: negative_flip_rate>0.25\n" in captured.err
    assert "gate passed" not in captured.out


@pytest.mark.parametrize(
    "extra, bad_line, fragment",
    [
        ([], '{"example_id": "0", "correct": 1}', "field 'correct': expected true or false"),
        ([], '{"example_id": "0", "correct": true, "score": 7}', "field 'score'"),
        (["--fail-if", "nrf>0.1"], None, "unknown metric 'nrf'"),
        (["--tolerance", "-1"], None, "argument --tolerance: expected a finite number >= 0"),
    ],
)
def test_bad_input_exit_2_and_no_output(tmp_path, capsys, extra, bad_line, fragment):
    a, b = files(tmp_path)
    if bad_line:
        Path(b).write_text(bad_line + "\n")
    out = tmp_path / "out"
    assert main(["compare", a, b, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err and "\n" not in err
    assert not out.exists()


def test_two_files_need_out(tmp_path, capsys):
    a, b = files(tmp_path)
    assert main(["compare", a, b]) == 2
    assert "needs --out" in capsys.readouterr().err


def test_report_rerenders_and_gates(tmp_path, capsys):
    a, b = files(tmp_path)
    out = tmp_path / "out"
    assert main(["compare", a, b, "--out", str(out), "--bootstrap", "0"]) == 0
    (out / "report.html").unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file()
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(out), "--fail-if", "old_vs_new:positive_flips>=2"]) == 1
    assert main(["report", str(tmp_path / "nowhere")]) == 2


def test_compare_run_dir_mode(tmp_path, capsys):
    run = tmp_path / "run"
    for role, flags in (("old", OLD), ("new", NEW), ("cand", OLD)):
        write(
            run / "predictions" / "t" / f"{role}.jsonl",
            [{"example_id": str(i), "correct": c} for i, c in enumerate(flags)],
        )
    assert (
        main(
            [
                "compare",
                str(run),
                "--bootstrap",
                "0",
                "--fail-if",
                "old_vs_cand:negative_flip_rate>0",
            ]
        )
        == 0
    )
    doc = json.loads((run / "metrics.json").read_text())
    assert [(c["reference"], c["other"]) for c in doc["comparisons"]] == [
        ("old", "new"),
        ("old", "cand"),
        ("new", "cand"),
    ]
    rel = doc["comparisons"][1]["relative_to_baseline"]
    assert rel["negative_flip_rate_change_percent"]["value"] == pytest.approx(-100.0)
    assert main(["compare", str(run), "--out", str(tmp_path / "x")]) == 2


def lm_line(doc_id: int, filt: str, em: float) -> dict:
    return {
        "doc_id": doc_id,
        "doc": {"q": doc_id},
        "target": "1",
        "arguments": [["q", {}]],
        "resps": [["1" if em else "2"]],
        "filtered_resps": ["1" if em else "2"],
        "filter": filt,
        "metrics": ["exact_match"],
        "doc_hash": f"d{doc_id}",
        "prompt_hash": f"p{doc_id}",
        "target_hash": "t",
        "exact_match": em,
    }


def test_lmeval_samples_through_cli(tmp_path, capsys):
    old = [lm_line(i, f, 1.0) for i in range(4) for f in ("strict", "flex")]
    new = [lm_line(i, f, 1.0 if i < 3 else 0.0) for i in range(4) for f in ("strict", "flex")]
    a = write(tmp_path / "old" / "samples_gsm8k_2024-01-01T00-00-00.jsonl", old)
    b = write(tmp_path / "new" / "samples_gsm8k_2024-02-01T00-00-00.jsonl", new)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "o1")]) == 2
    assert "choose one with --filter" in capsys.readouterr().err
    out = tmp_path / "o2"
    assert (
        main(
            ["compare", str(a), str(b), "--out", str(out), "--filter", "strict", "--bootstrap", "0"]
        )
        == 0
    )
    comp = json.loads((out / "metrics.json").read_text())["comparisons"][0]
    assert comp["task"] == "gsm8k" and comp["counts"]["negative_flips"] == 1
    assert comp["similarity"]["metrics"]["similarity_negative_flip_rate"]["value"] == pytest.approx(
        0.25
    )


def test_help_has_examples(capsys):
    for cmd in ("compare", "report"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert f"compatlm {cmd} runs/" in capsys.readouterr().out


def test_lmeval_against_our_lines(tmp_path, capsys):
    a = write(
        tmp_path / "samples_gsm8k_2024-01-01T00-00-00.jsonl",
        [lm_line(i, f, 1.0) for i in range(4) for f in ("strict", "flex")],
    )
    b = write(tmp_path / "new.jsonl", [{"example_id": str(i), "correct": i != 2} for i in range(4)])
    out = tmp_path / "out"
    args = ["compare", str(a), str(b), "--out", str(out), "--filter", "flex", "--bootstrap", "0"]
    assert main(args) == 0
    comp = json.loads((out / "metrics.json").read_text())["comparisons"][0]
    assert comp["counts"]["negative_flips"] == 1 and comp["task"] == "gsm8k"
    assert any("hashes not verified" in w for w in comp["warnings"])
    assert (
        "warning: gsm8k: old_vs_new: example/prompt hashes not verified" in capsys.readouterr().out
    )
    c = tmp_path / "c.jsonl"
    c.write_text(b.read_text())
    assert main(["compare", str(b), str(c), "--out", str(tmp_path / "o3"), "--filter", "x"]) == 2
    assert "neither input is one" in capsys.readouterr().err
