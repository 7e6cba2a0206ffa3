"""The compact loader against the pydantic model and the row-by-row loader it replaced.

Hypothesis writes prediction files from valid and invalid values of every field (wrong types,
bools for ints, out-of-range and infinite numbers, huge ints, empty ids, nested objects,
escapes, duplicate keys, blank lines, broken JSON, bad UTF-8) and checks:

* line level: ``fast_row`` accepts a line only if the model does, with the same values, and
  accepts ordinary valid lines (so the fast path is really taken);
* file level: ``load_predictions`` raises exactly the row-by-row loader's message, or loads
  the same values, line numbers, outputs and file constants — with blocks of a few bytes too,
  so errors and duplicates span blocks and every route (whole block, row, careful) is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compatlm.errors import CompatlmError, input_error
from compatlm.eval import reader
from compatlm.eval.records import (
    FIELDS,
    FILE_CONSTANT,
    Prediction,
    load_predictions,
    parse_line,
    row_of,
)
from compatlm.eval.rows import FIELD_ORDER, careful_row, fast_row
from compatlm.io import read_jsonl

INF = "__inf__"  # replaced by 1e999 in the JSON text (decodes to inf)

texts = st.text(alphabet=st.sampled_from('ab é"\\{[\n\x00日'), max_size=4)
big = st.sampled_from([2**63, -(2**63) - 1, 2**70, 2**53 + 1])
junk = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), big, texts, st.just([]))

VALID: dict[str, Any] = {
    "schema_version": st.just(1),
    "task": st.sampled_from(["t", "u"]),
    "kind": st.sampled_from(["multiple_choice", "generation"]),
    "role": st.sampled_from(["old", "new"]),
    "model": st.just("m"),
    "example_id": st.sampled_from(["a", "b", "c", "é", "d" * 70]),
    "example_hash": st.one_of(st.none(), st.sampled_from(["00ab", "00ac", "h"])),
    "prompt_hash": st.one_of(st.none(), st.sampled_from(["p1", "p2"])),
    "target": st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["x", "1"])),
    "output": st.one_of(st.none(), st.sampled_from(["out", "ü", ""])),
    "parsed": st.one_of(st.none(), st.integers(-5, 5), st.sampled_from(["x", "1"])),
    "correct": st.booleans(),
    "score": st.one_of(st.none(), st.floats(0.0, 1.0)),
    "margin": st.one_of(st.none(), st.floats(-1e6, 1e6)),
    "loglikelihoods": st.one_of(st.none(), st.lists(st.floats(-50.0, 0.0), max_size=3)),
    "choice_lengths": st.one_of(st.none(), st.lists(st.integers(1, 9), max_size=3)),
    "metric": st.sampled_from(["acc", "acc_norm"]),
    "slice": st.one_of(st.none(), st.sampled_from(["s", "t"])),
    "group": st.one_of(st.sampled_from(["g1", "g2"]), st.integers(0, 3)),
}
# Values the model refuses or treats specially, per field (mixed with junk of any type).
ODD: dict[str, Any] = {
    "schema_version": st.sampled_from([2, True, None, "1", 1.0]),
    "kind": st.sampled_from(["other", 1]),
    "example_id": st.sampled_from(["", 5, None]),
    "target": st.one_of(big, st.sampled_from([True, 1.5, [1]])),
    "parsed": st.one_of(big, st.sampled_from([False, 0.5, {"a": 1}])),
    "correct": st.sampled_from([1, 0, "true", None]),
    "score": st.sampled_from([1, 0, 2, 1.5, -0.1, -0.0, INF, True, "0.5"]),
    "margin": st.sampled_from([2**53, 2**60, 10**400 // 10**399, INF, -1, True, "m"]),
    "loglikelihoods": st.sampled_from([[INF], ["a"], [True], [1, 2], [[1.0]], (1.0,), 3]),
    "choice_lengths": st.sampled_from([[1.0], [True], [2**64], [-1], "3"]),
    "group": st.sampled_from(["", True, 2**70, 1.5, [1]]),
}


def field_values(name: str) -> Any:
    options = [VALID[name], VALID[name], VALID[name], junk]
    if name in ODD:
        options.append(ODD[name])
    return st.one_of(options)


@st.composite
def rows(draw, versioned: bool | None = None) -> dict[str, Any]:
    """One JSON object: a compatlm row (every key) or a foreign one (some keys, extras)."""
    if versioned is None:
        versioned = draw(st.booleans())
    names = list(FIELD_ORDER)
    if not versioned:
        names = [n for n in names if n != "schema_version" and draw(st.integers(0, 2)) == 0]
        names += ["example_id", "correct"]
    elif draw(st.integers(0, 9)) == 0:
        names.remove(draw(st.sampled_from(names)))  # a required key missing
    obj = {n: draw(field_values(n)) for n in dict.fromkeys(names)}
    if draw(st.integers(0, 4)) == 0:
        obj[draw(st.sampled_from(["question", "meta"]))] = draw(
            st.one_of(texts, st.just({"k": [1, {"deep": None}]}), st.just(["q", 1]))
        )
    return obj


def render(obj: dict[str, Any], ascii_only: bool) -> str:
    text = json.dumps(obj, ensure_ascii=ascii_only)
    return text.replace(json.dumps(INF), "1e999")


@st.composite
def lines(draw) -> list[str | bytes]:
    """The lines of one file: rendered rows, now and then a broken or special line."""
    versioned = draw(st.one_of(st.none(), st.booleans()))
    out: list[str | bytes] = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.integers(0, 19))
        text = render(draw(rows(versioned)), draw(st.booleans()))
        if kind == 0:
            text = ""
        elif kind == 1:
            text = "   "
        elif kind == 2:
            text = text[: len(text) // 2]  # malformed
        elif kind == 3:
            text = text[:-1] + ', "correct": true}'  # a repeated key (or a new one)
        elif kind == 4:
            text = text.replace("1e999", "NaN") if "1e999" in text else "[1, 2]"
        elif kind == 5:
            text = text.replace("}", ', "x": "\\ud800"}', 1)  # lone surrogate escape
        elif kind == 6:
            out.append(text.encode("utf-8")[:-1] + b"\xff}")
            continue
        elif kind == 7:
            text = " " + text + "\r"
        out.append(text)
    return out


def write_lines(path: Path, parts: list[str | bytes], final_newline: bool) -> Path:
    data = b"\n".join(p.encode("utf-8") if isinstance(p, str) else p for p in parts)
    path.write_bytes(data + (b"\n" if final_newline else b""))
    return path


def reference_load(path: Path) -> dict[str, Any]:
    """The row-by-row loader that the compact path replaced (kept here as the oracle)."""
    rows_: dict[str, Prediction] = {}
    lines_: dict[str, int] = {}
    constants: dict[str, tuple[Any, int]] = {}
    versioned: bool | None = None
    grouped: tuple[bool, int] | None = None
    for lineno, obj in read_jsonl(path):
        pred = parse_line(obj, path, lineno)
        this = pred.schema_version is not None
        if versioned is None:
            versioned = this
        elif versioned != this:
            raise input_error(
                "mixes compatlm lines (with schema_version) and foreign lines (without)",
                path,
                lineno,
                "schema_version",
            )
        if pred.example_id in rows_:
            raise input_error(
                f"duplicate example_id {pred.example_id!r} (first on line "
                f"{lines_[pred.example_id]})",
                path,
                lineno,
                "example_id",
            )
        for key in FILE_CONSTANT:
            value = getattr(pred, key)
            if value is None:
                continue
            if key not in constants:
                constants[key] = (value, lineno)
            elif constants[key][0] != value:
                what = "tasks" if key == "task" else f"{key} values"
                raise input_error(
                    f"mixed {what} in one file: expected {constants[key][0]!r} "
                    f"(as on line {constants[key][1]}), found {value!r}",
                    path,
                    lineno,
                    key,
                )
        if grouped is None:
            grouped = (pred.group is not None, lineno)
        elif grouped[0] != (pred.group is not None):
            has = "has no group" if grouped[0] else f"has group {pred.group!r}"
            raise input_error(
                f"this row {has} but line {grouped[1]} "
                f"{'has one' if grouped[0] else 'has none'} (give every row a group, or none)",
                path,
                lineno,
                "group",
            )
        rows_[pred.example_id] = pred
        lines_[pred.example_id] = lineno
    return {
        "rows": {i: (*row_of(p)[0][1:], p.output, lines_[i]) for i, p in rows_.items()},
        "source": "compatlm" if versioned else "foreign",
        "constants": {k: v[0] for k, v in constants.items()},
    }


def compact_view(path: Path) -> dict[str, Any]:
    ps = load_predictions(path)
    c = ps.columns
    n = len(ps)
    every = np.arange(n)
    outputs = ps.outputs(every)
    rows_ = {}
    for k, i in enumerate(ps.ids()):
        score, margin = float(c.score[k]), float(c.margin[k])
        rows_[i] = (
            bool(c.correct[k]),
            c.parsed.get(k),
            bool(c.parsed_stated[k]),
            c.target.get(k),
            None if score != score else score,
            None if margin != margin else margin,
            c.example_hash.get(k),
            c.prompt_hash.get(k),
            c.slice.get(k),
            c.group.get(k),
            bool(c.has_output[k]),
            outputs[k],
            int(c.lines[k]),
        )
    constants = {k: getattr(ps, k) for k in FILE_CONSTANT if getattr(ps, k) is not None}
    return {"rows": rows_, "source": ps.source, "constants": constants}


def outcome(fn, path: Path) -> tuple[str, str]:
    try:
        return "ok", repr(fn(path))  # repr: 1 and 1.0, -0.0 and 0.0 differ
    except CompatlmError as err:
        return "error", str(err)


def test_field_order_covers_the_schema():
    assert sorted(FIELD_ORDER) == sorted(FIELDS) and len(FIELD_ORDER) == len(FIELDS)


@settings(max_examples=400, deadline=None)
@given(obj=rows(), ascii_only=st.booleans())
def test_fast_row_accepts_only_what_the_model_accepts(obj, ascii_only):
    line = render(obj, ascii_only)
    path = Path("p.jsonl")
    fast = fast_row(line, {})
    try:
        careful = careful_row(line, path, 1)
    except CompatlmError:
        assert fast is None, f"fast path accepted a line the model refuses: {line}"
        return
    if fast is not None:
        assert repr(fast) == repr(careful)


@settings(max_examples=200, deadline=None)
@given(obj=st.fixed_dictionaries({k: v for k, v in VALID.items()}), ascii_only=st.booleans())
def test_fast_row_takes_ordinary_valid_lines(obj, ascii_only):
    line = render(obj, ascii_only)
    fast = fast_row(line, {})
    assert fast is not None, line
    assert repr(fast) == repr(careful_row(line, Path("p.jsonl"), 1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=lines(),
    final_newline=st.booleans(),
    block=st.sampled_from([1 << 20, 64, 300]),
)
def test_loader_matches_the_row_by_row_loader(tmp_path_factory, parts, final_newline, block):
    path = write_lines(tmp_path_factory.mktemp("f") / "p.jsonl", parts, final_newline)
    before = reader.BLOCK_BYTES
    reader.BLOCK_BYTES = block
    try:
        got = outcome(compact_view, path)
    finally:
        reader.BLOCK_BYTES = before
    assert got == outcome(reference_load, path)


@settings(max_examples=100, deadline=None)
@given(
    objs=st.lists(st.fixed_dictionaries(dict(VALID)), min_size=1, max_size=30),
    block=st.sampled_from([1 << 20, 200]),
)
def test_uniform_valid_files_load_like_the_row_by_row_loader(tmp_path_factory, objs, block):
    # Files as one writer makes them (the whole-block route): one key set, one of each
    # constant, unique ids.
    for k, o in enumerate(objs):
        o.update(example_id=f"{o['example_id']}{k}", task="t", kind="generation", role="old")
        o.update(metric="acc", group=f"g{k % 3}")
    path = tmp_path_factory.mktemp("u") / "p.jsonl"
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs))
    before = reader.BLOCK_BYTES
    reader.BLOCK_BYTES = block
    try:
        got = outcome(compact_view, path)
    finally:
        reader.BLOCK_BYTES = before
    assert got[0] == "ok" and got == outcome(reference_load, path)


def test_block_route_is_taken_for_uniform_files(tmp_path, monkeypatch):
    objs = [
        {"example_id": str(i), "correct": i % 2 == 0, "parsed": i % 3, "group": f"g{i % 4}"}
        for i in range(500)
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    calls = []
    monkeypatch.setattr(reader, "fast_row", lambda *a: calls.append(a))
    ps = load_predictions(path)
    assert calls == [] and len(ps) == 500 and ps.has_groups and ps.has_parsed
    assert ps.columns.parsed.take(np.array([0, 1, 2])) == [0, 1, 2]


def test_duplicate_before_a_later_error_wins_across_blocks(tmp_path, monkeypatch):
    rows_ = [json.dumps({"example_id": i, "correct": True}) for i in "abcda"]
    rows_.append(json.dumps({"example_id": "z", "correct": 1}))
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(rows_) + "\n")
    monkeypatch.setattr(reader, "BLOCK_BYTES", 40)
    with pytest.raises(CompatlmError) as err:
        load_predictions(path)
    assert str(err.value) == (
        f"{path}:5: field 'example_id': duplicate example_id 'a' (first on line 1)"
    )
