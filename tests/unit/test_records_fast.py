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
    # "n\x00b"/"n\x00c": equal up to the NUL, where numpy's variable-width strings stop
    "example_id": st.sampled_from(["a", "b", "c", "é", "d" * 70, "n\x00b", "n\x00c" * 30]),
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
    "margin": st.sampled_from([2**53, 2**60, 10**400, INF, -1, True, "m"]),
    "loglikelihoods": st.sampled_from([[INF], ["a"], [True], [1, 2], [[1.0]], (1.0,), 3]),
    "choice_lengths": st.sampled_from([[1.0], [True], [2**64], [-1], "3"]),
    "group": st.sampled_from(["", True, 2**70, 1.5, [1]]),
}


def odd_value(name: str) -> Any:
    return st.one_of([junk, ODD[name]] if name in ODD else [junk])


@st.composite
def row_dicts(draw, n: int) -> list[dict[str, Any]]:
    """``n`` rows as one writer would make them (one key set, one value of each file
    constant, unique ids), then a few fields of a few rows replaced by odd values."""
    versioned = draw(st.booleans())
    names = list(FIELD_ORDER)
    if not versioned:
        names = [f for f in names if f != "schema_version" and draw(st.booleans())]
        names = list(dict.fromkeys(["example_id", "correct", *names]))
    grouped = draw(st.booleans())
    if not grouped and "group" in names:
        names.remove("group")
    fixed = {f: draw(VALID[f]) for f in FILE_CONSTANT}
    out = []
    for k in range(n):
        row = {f: fixed[f] if f in fixed else draw(VALID[f]) for f in names}
        row["example_id"] = f"{draw(VALID['example_id'])}{k}"
        out.append(row)
    for _ in range(draw(st.integers(0, 3))):
        row = out[draw(st.integers(0, n - 1))]
        what = draw(st.integers(0, 9))
        if what == 0 and len(out) > 1 and "example_id" in out[0]:  # (an earlier draw may pop it)
            row["example_id"] = out[0]["example_id"]  # a duplicate id
        elif what == 1:
            row.pop(draw(st.sampled_from(sorted(row))))  # a key missing
        elif what == 2:
            row[draw(st.sampled_from(["question", "meta", "kind"]))] = draw(
                st.one_of(texts, st.just({"k": [1, {"deep": None}]}), st.just(["q", 1]))
            )
        else:
            name = draw(st.sampled_from(FIELD_ORDER))
            row[name] = draw(odd_value(name))
    return out


def render(obj: dict[str, Any], ascii_only: bool) -> str:
    text = json.dumps(obj, ensure_ascii=ascii_only)
    return text.replace(json.dumps(INF), "1e999")


@st.composite
def lines(draw) -> list[str | bytes]:
    """The lines of one file: rendered rows, now and then a broken or special line."""
    ascii_only = draw(st.booleans())
    out: list[str | bytes] = []
    for obj in draw(st.integers(1, 12).flatmap(row_dicts)):
        text = render(obj, ascii_only)
        kind = draw(st.integers(0, 39))
        if kind == 0:
            out.append("")
        elif kind == 1:
            out.append("   ")
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
        "constants": {k: v[0] for k, v in sorted(constants.items())},
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
    constants = {k: getattr(ps, k) for k in sorted(FILE_CONSTANT) if getattr(ps, k) is not None}
    return {"rows": rows_, "source": ps.source, "constants": constants}


def outcome(fn, path: Path) -> tuple[str, str]:
    try:
        return "ok", repr(fn(path))  # repr: 1 and 1.0, -0.0 and 0.0 differ
    except CompatlmError as err:
        return "error", str(err)


def test_field_order_covers_the_schema():
    assert sorted(FIELD_ORDER) == sorted(FIELDS) and len(FIELD_ORDER) == len(FIELDS)


@settings(max_examples=600, deadline=None)
@given(objs=row_dicts(1), ascii_only=st.booleans())
def test_fast_row_accepts_only_what_the_model_accepts(objs, ascii_only):
    line = render(objs[0], ascii_only)
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


ODD_VALUES = {
    "schema_version": [2, True, None, "1", 1.0],
    "task": [None, 3, ["t"], "u"],
    "kind": ["other", 1, None],
    "example_id": ["", 5, None, True],
    "target": [2**63, -(2**63) - 1, True, 1.5, [1], None],
    "parsed": [2**70, False, 0.5, None, "p"],
    "correct": [1, 0, "true", None],
    "score": [1, 0, 2, 1.5, -0.1, -0.0, INF, True, "0.5", 2**70],
    "margin": [2**53, 2**60, 10**400, INF, -1, True, "m", -0.0],
    "loglikelihoods": [[INF], ["a"], [True], [1, 2], [[1.0]], 3, [], [1e308, 1e308]],
    "choice_lengths": [[1.0], [True], [2**64], [-1], "3", []],
    "output": [3, None, ["o"]],
    "slice": [1, None, "t"],
    "group": ["", True, 2**70, 1.5, [1], 7, -7, None],
    "metric": [None, 1, "acc_norm"],
}
ODD_CASES = [(f, v) for f, values in ODD_VALUES.items() for v in values]


def valid_row(k: int) -> dict[str, Any]:
    return {
        "schema_version": 1, "task": "t", "kind": "multiple_choice", "role": "old",
        "model": "m", "example_id": f"e{k}", "example_hash": f"{k:016x}", "prompt_hash": "p",
        "target": 0, "output": "o", "parsed": k % 2, "correct": k % 2 == 0, "score": 0.5,
        "margin": 0.25, "loglikelihoods": [-1.0, -2.0], "choice_lengths": [2, 3],
        "metric": "acc", "slice": "s", "group": f"g{k % 2}",
    }  # fmt: skip


@pytest.mark.parametrize(("field", "value"), ODD_CASES)
def test_one_odd_value_in_a_line(field, value):
    row = valid_row(0)
    row[field] = value
    line = render(row, ascii_only=False)
    fast = fast_row(line, {})
    try:
        careful = careful_row(line, Path("p.jsonl"), 1)
    except CompatlmError:
        assert fast is None, line
        return
    assert fast is None or repr(fast) == repr(careful)


@pytest.mark.parametrize("block", [1 << 20, 150])
@pytest.mark.parametrize(("field", "value"), ODD_CASES)
def test_one_odd_value_in_a_file(tmp_path, monkeypatch, block, field, value):
    # Line 3 of 4 carries the odd value; the whole-block route must leave it to the row route.
    rows_ = [valid_row(k) for k in range(4)]
    rows_[2][field] = value
    path = tmp_path / "p.jsonl"
    path.write_text("".join(render(r, ascii_only=False) + "\n" for r in rows_))
    monkeypatch.setattr(reader, "BLOCK_BYTES", block)
    assert outcome(compact_view, path) == outcome(reference_load, path)


FILE_RULES = {
    "group dropped": lambda r: r.pop("group"),
    "group null": lambda r: r.update(group=None),
    "task changed": lambda r: r.update(task="u"),
    "role changed": lambda r: r.update(role="new"),
    "task null": lambda r: r.update(task=None),
    "other line kind": lambda r: (
        r.pop("schema_version") if "schema_version" in r else r.update(schema_version=1)
    ),
    "id repeated": lambda r: r.update(example_id="e0"),
    "extra key": lambda r: r.update(question="q"),
}


@pytest.mark.parametrize("block", [1 << 20, 700, 150])
@pytest.mark.parametrize("rule", sorted(FILE_RULES))
@pytest.mark.parametrize("versioned", [True, False])
def test_file_rules_across_blocks(tmp_path, monkeypatch, block, rule, versioned):
    rows_ = [valid_row(k) for k in range(6)]
    if not versioned:
        for r in rows_:
            r.pop("schema_version")
    for r in rows_[3:]:
        FILE_RULES[rule](r)
    path = tmp_path / "p.jsonl"
    path.write_text("".join(render(r, ascii_only=False) + "\n" for r in rows_))
    monkeypatch.setattr(reader, "BLOCK_BYTES", block)
    assert outcome(compact_view, path) == outcome(reference_load, path)
