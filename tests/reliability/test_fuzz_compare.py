"""Fuzzing ``compatlm compare`` and ``compatlm report`` with hostile names, ids and values.

Hypothesis generates two prediction files whose task and role names, ids, slices, outputs,
targets and scores carry ``$`` (mathtext), ``/`` and ``..`` (paths), control and bidi
characters, Markdown and HTML metacharacters, non-Latin text and long strings. Whatever the
input, the CLI contract must hold: exit code 0 or 2 (never an internal error), at most one
``error:`` line, no traceback, nothing written outside ``--out``; and a report that was written
has no raw ``<script`` from data and no raw control characters, and re-renders identically with
``compatlm report``. A second test points ``files.flips`` of metrics.json at random paths.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compatlm.cli import main

FRAGMENTS = [
    "$", "$x$", r"$\frac{", "/", "..", "../", "/etc/passwd", "\\", "\x00", "\x1b[2J", "\r\n",
    "\u202e", "\u2066", "\u200b", "\u2028", "\ufeff", "<script>alert(1)</script>", "<img src=x>",
    "![i](http://e.example/p.png)", "[l](http://e.example)", "|", "`", "*", "_", "#", "&#x27;",
    "'", '"', "é", "日本語", "🙂", "ß", " ", "\t", "%s", "{}", "~",
]  # fmt: skip
piece = st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6))
names = st.one_of(
    st.lists(piece, max_size=6).map("".join),
    st.integers(300, 3000).map(lambda n: "$ä/" * n),  # long: file names must still fit
)
ids = st.lists(piece, min_size=1, max_size=4).map("".join).filter(bool)
texts = st.one_of(
    st.none(),
    st.lists(piece, max_size=8).map("".join),
    st.integers(3000, 60_000).map(lambda n: "<b>\u202e" * (n // 4)),
)
scores = st.one_of(st.none(), st.floats(0.0, 1.0))
# Now and then one bad value in a file (exit 2 expected): score out of range, wrong types.
BAD = [("score", 1.5), ("correct", "yes"), ("example_id", ""), ("margin", "big")]


@st.composite
def prediction_pair(draw) -> tuple[list[dict], list[dict]]:
    """Two files over (mostly) shared ids. Names are file-level constants and targets/slices
    belong to the example, as in real files, so most draws get as far as a report."""
    keys = draw(st.lists(ids, min_size=1, max_size=8, unique=True))
    task = draw(st.one_of(st.none(), names))
    per_key = {
        k: {
            f: draw(st.one_of(st.none(), texts if f == "target" else names))
            for f in ("target", "slice")
        }
        for k in keys
    }
    files = []
    for side in range(2):
        role = draw(st.one_of(st.none(), names))
        with_score = draw(st.booleans())
        dropped = draw(st.integers(0, 1)) if len(keys) > 1 else 0  # an unmatched row or none
        rows = []
        for k in keys[dropped * side : len(keys) - dropped * (1 - side)]:
            row: dict = {"example_id": k, "correct": draw(st.booleans())}
            row |= {f: v for f, v in per_key[k].items() if v is not None}
            if task is not None:
                row["task"] = task
            if role is not None:
                row["role"] = role
            for field in ("output", "parsed"):
                if draw(st.booleans()):
                    row[field] = draw(texts)
            if with_score:
                row["score"] = draw(scores)
            rows.append(row)
        if draw(st.integers(0, 9)) == 0:
            field, value = draw(st.sampled_from(BAD))
            rows[draw(st.integers(0, len(rows) - 1))][field] = value
        files.append(rows)
    return files[0], files[1]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def check_contract(code: int, stdout: str, stderr: str) -> None:
    assert code in (0, 2), (code, stderr[-2000:])
    assert "Traceback" not in stdout + stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1, errors
    if code == 2:
        assert len(errors) == 1, stderr


def listing(root: Path, skip: Path) -> dict[str, int]:
    """Every path under ``root`` except inside ``skip``, with its size (what changed?)."""
    return {
        str(p.relative_to(root)): p.stat().st_size if p.is_file() else -1
        for p in root.rglob("*")
        if not p.is_relative_to(skip)
    }


def raw_invisible(text: str) -> set[str]:
    return {
        c
        for c in text
        if c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")
    }


def write_jsonl(path: Path, rows: list[dict], ascii_only: bool) -> None:
    text = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")


FUZZ = settings(
    max_examples=10,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(pair=prediction_pair(), ascii_only=st.booleans())
def test_fuzz_compare_then_report(pair, ascii_only):
    with tempfile.TemporaryDirectory(prefix="compatlm_fuzz_") as tmp:
        root = Path(tmp)
        # --out sits three levels down, so a write that escapes it by a few ".." is seen.
        out = root / "a" / "b" / "c" / "out"
        out.parent.mkdir(parents=True)
        old, new = root / "old.jsonl", root / "new.jsonl"
        write_jsonl(old, pair[0], ascii_only)
        write_jsonl(new, pair[1], ascii_only)
        before = listing(root, out)
        code, stdout, stderr = run_cli(
            ["compare", str(old), str(new), "--out", str(out), "--bootstrap", "0"]
        )
        check_contract(code, stdout, stderr)
        event(f"compare exit {code}")  # --hypothesis-show-statistics: how many reach a report
        assert listing(root, out) == before
        if code != 0:
            assert not out.exists()
            return
        page = (out / "report.html").read_text(encoding="utf-8")
        md = (out / "report.md").read_text(encoding="utf-8")
        assert "<script" not in page.lower()
        assert raw_invisible(page) == set() and raw_invisible(md) == set()
        code, stdout, stderr = run_cli(["report", str(out)])
        check_contract(code, stdout, stderr)
        assert code == 0
        assert (out / "report.html").read_text(encoding="utf-8") == page  # from files alone
        assert listing(root, out) == before


flips_paths = st.one_of(
    st.lists(
        st.sampled_from(["..", "flips", "/", "x", "\x00", "~", ".", "//", "tmp"]), max_size=6
    ).map("/".join),
    st.text(max_size=20),
    st.sampled_from(["/etc/passwd", "../old.jsonl", "flips/../../old.jsonl", ""]),
)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A compared run (``run/``) beside its inputs; each example works on a copy of it."""
    root = tmp_path_factory.mktemp("fuzz_base")
    old, new = root / "old.jsonl", root / "new.jsonl"  # outside the run: a path may aim here
    write_jsonl(old, [{"example_id": f"id{i}", "correct": i % 2 == 0} for i in range(4)], True)
    write_jsonl(new, [{"example_id": f"id{i}", "correct": i < 2} for i in range(4)], True)
    argv = ["compare", str(old), str(new), "--out", str(root / "run"), "--bootstrap", "0"]
    assert run_cli(argv)[0] == 0
    return root


@settings(FUZZ, max_examples=25)
@given(rel=flips_paths)
def test_fuzz_report_flips_path(base_run, rel):
    with tempfile.TemporaryDirectory(prefix="compatlm_fuzz_") as tmp:
        root = Path(tmp) / "copy"
        shutil.copytree(base_run, root)
        out = root / "run"
        doc = json.loads((out / "metrics.json").read_text())
        doc["comparisons"][0]["files"]["flips"] = rel
        (out / "metrics.json").write_text(json.dumps(doc))
        code, stdout, stderr = run_cli(["report", str(out)])
        check_contract(code, stdout, stderr)
        if code == 0:  # accepted only if it names a file inside the run directory
            resolved = (out / rel).resolve()
            assert resolved.is_relative_to(out.resolve()) and resolved.is_file(), rel
