"""Atomic writes, strict JSONL reading, resumable appends, run-directory rules."""

from __future__ import annotations

import json

import pytest

from compatlm.errors import CompatlmError
from compatlm.io import JsonlAppender, atomic_write_json, dumps, load_resumable, read_jsonl
from compatlm.rundir import prepare_out_dir


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = atomic_write_json(tmp_path / "sub" / "a.json", {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    assert [f.name for f in p.parent.iterdir()] == ["a.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    p = atomic_write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(ValueError):
        atomic_write_json(p, {"x": float("nan")})  # NaN is refused before anything is replaced
    assert json.loads(p.read_text()) == {"x": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]


def test_dumps_refuses_nan():
    with pytest.raises(ValueError):
        dumps({"a": float("inf")})


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b'{"a": 1}\n{"a": \n', r"x.jsonl:2: malformed JSON"),
        (b'{"a": 1}\n[1, 2]\n', r"x.jsonl:2: expected a JSON object, found list"),
        (b'{"a": NaN}\n', r"x.jsonl:1: malformed JSON.*NaN"),
        (b'{"a": "\xff"}\n', r"x.jsonl:1: not valid UTF-8"),
        (b"\n\n", r"x.jsonl: file is empty"),
    ],
)
def test_read_jsonl_errors_name_file_and_line(tmp_path, content, pattern):
    p = tmp_path / "x.jsonl"
    p.write_bytes(content)
    with pytest.raises(CompatlmError, match=pattern):
        list(read_jsonl(p))


def test_read_jsonl_skips_blank_lines_and_numbers_lines(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert list(read_jsonl(p)) == [(1, {"a": 1}), (3, {"a": 2})]


def test_read_jsonl_missing_file(tmp_path):
    with pytest.raises(CompatlmError, match="file not found"):
        list(read_jsonl(tmp_path / "nope.jsonl"))


def test_resumable_drops_truncated_last_line(tmp_path):
    p = tmp_path / "pred.jsonl"
    with JsonlAppender(p) as w:
        w.write({"id": 1})
        w.write({"id": 2})
    with p.open("a") as fh:
        fh.write('{"id": 3, "tru')  # a write cut short by SIGKILL
    assert load_resumable(p) == [{"id": 1}, {"id": 2}]
    with JsonlAppender(p) as w:
        w.write({"id": 3})
    assert [r["id"] for r in load_resumable(p)] == [1, 2, 3]


def test_write_many_is_one_fsync_per_chunk(tmp_path, monkeypatch):
    import os

    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    p = tmp_path / "pred.jsonl"
    with JsonlAppender(p) as w:
        w.write_many([{"id": i} for i in range(5)])
        w.write_many([])  # nothing to write: no fsync
        w.write({"id": 5})
    assert len(synced) == 2
    assert [r["id"] for r in load_resumable(p)] == [0, 1, 2, 3, 4, 5]


def test_prepare_out_dir_rules(tmp_path):
    out = prepare_out_dir(tmp_path / "run")
    (out / "f").write_text("x")
    with pytest.raises(CompatlmError, match="not empty.*--overwrite"):
        prepare_out_dir(out)
    assert prepare_out_dir(out, resume=True) == out and (out / "f").exists()
    prepare_out_dir(out, overwrite=True)
    assert not (out / "f").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CompatlmError, match="not a directory"):
        prepare_out_dir(tmp_path / "file")
