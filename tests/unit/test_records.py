"""Prediction files: strict validation with file:line:field errors, and lm-eval sample logs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from compatlm.errors import CompatlmError
from compatlm.eval.lmeval_logs import load_lmeval_samples, task_from_filename
from compatlm.eval.records import REQUIRED_V1, load_predictions


def full_line(i: int, **over) -> dict:
    row = {
        "schema_version": 1,
        "task": "piqa",
        "kind": "multiple_choice",
        "role": "old",
        "model": "base+adapter",
        "example_id": str(i),
        "example_hash": f"h{i}",
        "prompt_hash": f"p{i}",
        "target": 0,
        "output": "choice a",
        "parsed": 0,
        "correct": True,
        "score": 0.75,
        "margin": 1.5,
        "loglikelihoods": [-1.0, -2.5],
        "choice_lengths": [8, 8],
        "metric": "acc",
        "slice": None,
    }
    row.update(over)
    return row


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_full_file_loads(tmp_path):
    ps = load_predictions(
        write(tmp_path / "old.jsonl", [full_line(0), full_line(1, correct=False)])
    )
    assert ps.source == "compatlm" and ps.hash_scheme == "compatlm"
    assert (ps.task, ps.kind, ps.role, ps.metric) == ("piqa", "multiple_choice", "old", "acc")
    assert list(ps.rows) == ["0", "1"] and ps.lines == {"0": 1, "1": 2}
    assert ps.rows["1"].correct is False and ps.has_parsed and ps.has_score


def test_foreign_minimal_lines_with_extras(tmp_path):
    rows = [
        {"example_id": "a", "correct": True, "question": "ignored"},
        {"example_id": "b", "correct": False},
    ]
    ps = load_predictions(write(tmp_path / "x.jsonl", rows), role="mine")
    assert ps.source == "foreign" and ps.role == "mine" and ps.task is None
    assert not ps.has_parsed and not ps.has_score


def test_parsed_null_counts_as_stated(tmp_path):
    ps = load_predictions(
        write(tmp_path / "x.jsonl", [{"example_id": "a", "correct": False, "parsed": None}])
    )
    assert ps.has_parsed


BAD_CASES = {
    "malformed_json": (
        ['{"example_id": "a", "correct": true}', '{"example_id": "b", '],
        2,
        "malformed JSON",
    ),
    "missing_correct": ([{"example_id": "a"}], 1, "field 'correct': missing required field"),
    "missing_id": ([{"correct": True}], 1, "field 'example_id': missing required field"),
    "int_correct": (
        [{"example_id": "a", "correct": 1}],
        1,
        "field 'correct': expected true or false (a JSON boolean), found 1 (int)",
    ),
    "string_correct": ([{"example_id": "a", "correct": "yes"}], 1, "found 'yes' (string)"),
    "int_id": (
        [{"example_id": 3, "correct": True}],
        1,
        "field 'example_id': expected a non-empty string, found 3 (int)",
    ),
    "nan_score": (
        ['{"example_id": "a", "correct": true, "score": NaN}'],
        1,
        "NaN is not valid JSON",
    ),
    "inf_score": (
        ['{"example_id": "a", "correct": true, "score": 1e999}'],
        1,
        "field 'score': expected a finite number in [0, 1]",
    ),
    "score_above_one": (
        [{"example_id": "a", "correct": True, "score": 1.5}],
        1,
        "found 1.5 (float)",
    ),
    "score_negative": ([{"example_id": "a", "correct": True, "score": -0.1}], 1, "field 'score'"),
    "duplicate_ids": (
        [{"example_id": "a", "correct": True}, {"example_id": "a", "correct": False}],
        2,
        "duplicate example_id 'a' (first on line 1)",
    ),
    "mixed_tasks": (
        [full_line(0), full_line(1, task="hellaswag")],
        2,
        "mixed tasks in one file: expected 'piqa' (as on line 1), found 'hellaswag'",
    ),
    "mixed_versioned": (
        [full_line(0), {"example_id": "b", "correct": True}],
        2,
        "mixes compatlm lines",
    ),
    "schema_version_2": (
        [full_line(0, schema_version=2)],
        1,
        "expected schema_version 1, found 2 (int)",
    ),
    "v1_missing_key": (
        [{k: v for k, v in full_line(0).items() if k != "prompt_hash"}],
        1,
        "field 'prompt_hash': missing required field",
    ),
    "v1_unknown_key": ([full_line(0, colour="red")], 1, "field 'colour': unknown field"),
    "not_object": (["[1, 2]"], 1, "expected a JSON object, found list"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_file_line_field(tmp_path, case):
    rows, line, fragment = BAD_CASES[case]
    path = write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(CompatlmError) as err:
        load_predictions(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert fragment in msg, msg
    assert "\n" not in msg


def test_empty_and_non_utf8(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(CompatlmError, match="file is empty"):
        load_predictions(empty)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"example_id": "caf\xe9", "correct": true}\n')
    with pytest.raises(CompatlmError, match=r"latin.jsonl:1: not valid UTF-8"):
        load_predictions(latin)


def test_every_v1_key_is_required():
    assert set(REQUIRED_V1) <= set(full_line(0))


# ---- lm-eval --log_samples ----------------------------------------------------------------


def mc_sample(doc_id: int, lls: list[float], target: int, acc: float, acc_norm: float) -> dict:
    return {
        "doc_id": doc_id,
        "doc": {"goal": f"g{doc_id}"},
        "target": target,
        "arguments": [[f"ctx{doc_id}", " yes"], [f"ctx{doc_id}", " no way"]],
        "resps": [[[ll, False]] for ll in lls],
        "filtered_resps": [[ll, False] for ll in lls],
        "filter": "none",
        "metrics": ["acc", "acc_norm"],
        "doc_hash": f"d{doc_id}",
        "prompt_hash": f"p{doc_id}",
        "target_hash": "t",
        "acc": acc,
        "acc_norm": acc_norm,
    }


def test_lmeval_multiple_choice(tmp_path):
    # doc 0: lls -2, -3 -> acc picks 0 (margin 1); per char -2/4=-0.5, -3/7≈-0.4286 -> acc_norm picks 1
    rows = [mc_sample(0, [-2.0, -3.0], 0, 1.0, 0.0), mc_sample(1, [-5.0, -1.0], 0, 0.0, 0.0)]
    path = write(tmp_path / "samples_piqa_2024-05-01T12-00-00.123456.jsonl", rows)
    ps = load_predictions(path, role="old")
    assert (ps.source, ps.task, ps.kind, ps.metric, ps.filter) == (
        "lm-eval",
        "piqa",
        "multiple_choice",
        "acc",
        "none",
    )
    assert ps.hash_scheme == "lm-eval" and ps.role == "old"
    r0, r1 = ps.rows["0"], ps.rows["1"]
    assert (r0.correct, r0.parsed, r0.output, r0.example_hash, r0.prompt_hash) == (
        True,
        0,
        " yes",
        "d0",
        "p0",
    )
    assert r0.margin == pytest.approx(1.0)
    assert r0.score == pytest.approx(1 / (1 + math.exp(-1.0)))  # softmax prob of the target
    assert r0.choice_lengths == [4, 7] and r0.loglikelihoods == [-2.0, -3.0]
    assert (r1.correct, r1.parsed, r1.margin) == (False, 1, pytest.approx(4.0))
    norm = load_predictions(path, metric="acc_norm")
    assert norm.rows["0"].parsed == 1 and norm.rows["0"].correct is False
    assert norm.rows["0"].margin == pytest.approx(-3 / 7 + 0.5)


def gen_sample(doc_id: int, filt: str, resp: str, answer: str, em: float) -> dict:
    return {
        "doc_id": doc_id,
        "doc": {"question": "q"},
        "target": "42",
        "arguments": {"gen_args_0": {"arg_0": "Q: q\nA:", "arg_1": {"until": ["\n"]}}},
        "resps": [[resp]],
        "filtered_resps": [answer],
        "filter": filt,
        "metrics": ["exact_match"],
        "doc_hash": f"d{doc_id}",
        "prompt_hash": f"p{doc_id}",
        "target_hash": "t",
        "exact_match": em,
    }


def test_lmeval_generation_filters(tmp_path):
    rows = [
        gen_sample(0, "strict-match", "so #### 42", "42", 1.0),
        gen_sample(0, "flexible-extract", "so #### 42", "42", 1.0),
        gen_sample(1, "strict-match", "it is 41", "[invalid]", 0.0),
        gen_sample(1, "flexible-extract", "it is 41", "41", 0.0),
    ]
    path = write(tmp_path / "samples_gsm8k_2024-05-01T12-00-00.jsonl", rows)
    sets = load_lmeval_samples(path)
    assert sorted(sets) == ["flexible-extract", "strict-match"]
    with pytest.raises(
        CompatlmError,
        match=r"several lm-eval filters \(flexible-extract, strict-match\); choose one with --filter",
    ):
        load_predictions(path)
    ps = load_predictions(path, filter="flexible-extract")
    assert ps.kind == "generation" and ps.metric == "exact_match" and ps.task == "gsm8k"
    assert ps.rows["1"].parsed == "41" and ps.rows["1"].output == "it is 41"
    assert ps.rows["1"].target == "42" and ps.rows["0"].score == 1.0 and ps.rows["0"].correct
    with pytest.raises(CompatlmError, match="filter 'nope' not in file"):
        load_predictions(path, filter="nope")


def test_lmeval_bad_lines(tmp_path):
    dup = write(
        tmp_path / "samples_t_2024-01-01T00-00-00.jsonl", [gen_sample(0, "none", "a", "a", 1.0)] * 2
    )
    with pytest.raises(
        CompatlmError,
        match=r":2: field 'doc_id': duplicate doc_id 0 for filter 'none' \(first on line 1\)",
    ):
        load_predictions(dup)
    out_of_range = gen_sample(0, "none", "a", "a", 1.0)
    out_of_range["exact_match"] = 37.5
    bad = write(tmp_path / "samples_u_2024-01-01T00-00-00.jsonl", [out_of_range])
    with pytest.raises(
        CompatlmError,
        match=r":1: field 'exact_match': expected a per-sample value in \[0, 1\], found 37.5",
    ):
        load_predictions(bad)
    with pytest.raises(
        CompatlmError,
        match=r":1: field 'bleu': no per-sample value for metric 'bleu' on this line; metrics with"
        r" a value here: exact_match",
    ):
        load_predictions(bad, metric="bleu")


def test_task_from_filename():
    assert (
        task_from_filename(Path("samples_arc_easy_2024-05-01T12-00-00.123456.jsonl")) == "arc_easy"
    )
    assert task_from_filename(Path("samples_mine.jsonl")) == "mine"


def test_lmeval_metric_choice_is_noted(tmp_path):
    path = write(
        tmp_path / "samples_piqa_2024-05-01T12-00-00.jsonl",
        [mc_sample(0, [-1.0, -2.0], 0, 1.0, 1.0)],
    )
    assert load_predictions(path).notes == [
        f"{path.name}: correct = per-sample 'acc' (metrics in file: acc, acc_norm; choose with --metric)"
    ]
    assert load_predictions(path, metric="acc_norm").notes == []
