"""Reports are safe for any data: mathtext, Markdown, control characters, size, paths.

Task, role and slice names, ids, outputs and targets are data. Each test feeds one class of
hostile data through ``compatlm compare`` (and ``compatlm report``) and checks the rendered
files: plots still drawn, Markdown rendered by a CommonMark parser shows no link or image from
data, invisible characters are shown as escapes, huge outputs are clipped in the reports but
kept whole in the flips file, and a doctored ``metrics.json`` cannot make ``report`` read a
file outside the run directory.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

import matplotlib
import pytest
from markdown_it import MarkdownIt

from compatlm.cli import main
from compatlm.report.fmt import FIELD_CAP
from compatlm.report.markdown import MD_CELL_CAP


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pair_files(
    tmp_path: Path,
    *,
    task: str = "t",
    roles: tuple[str, str] = ("a", "b"),
    slice_: str | None = None,
    ids: list[str] | None = None,
    output: str = "out",
    target: str = "tgt",
) -> tuple[Path, Path]:
    """Two foreign prediction files over ``ids``: every other instance flips."""
    ids = ids or [str(i) for i in range(6)]
    files = []
    for side, role in enumerate(roles):
        rows = [
            {
                "example_id": i,
                "task": task,
                "role": role,
                "correct": (k % 2 == 0) != bool(side and k % 4 == 0),
                "parsed": f"{output}{k}{side}",
                "output": f"{output} {side}",
                "target": target,
                **({"slice": slice_} if slice_ is not None else {}),
            }
            for k, i in enumerate(ids)
        ]
        files.append(write(tmp_path / f"{role.encode().hex()[:40] or 'x'}{side}.jsonl", rows))
    return files[0], files[1]


def compare(tmp_path: Path, a: Path, b: Path, *extra: str) -> Path:
    out = tmp_path / "out"
    code = main(["compare", str(a), str(b), "--out", str(out), "--bootstrap", "0", *extra])
    assert code == 0
    return out


def invisible(text: str) -> list[str]:
    """Characters a reader cannot see or that reorder text (newline and tab excepted)."""
    return sorted(
        {
            c
            for c in text
            if c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")
        }
    )


# ---- matplotlib mathtext / usetex --------------------------------------------------------

MATH = ["$x$", r"$\frac{$", "a$b", "$$", r"\$^_{}", "$\\undefinedcommand$"]


@pytest.mark.parametrize("name", MATH)
def test_mathtext_in_names_does_not_break_plots(tmp_path, capsys, name):
    a, b = pair_files(tmp_path, task=name, roles=(f"old{name}", f"new{name}"), slice_=name)
    out = compare(tmp_path, a, b)
    assert len(list((out / "plots").glob("*.png"))) == 3  # overview, quadrants, slices
    for p in ("report.md", "report.html"):
        (out / p).unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert "Traceback" not in capsys.readouterr().err


def test_usetex_in_matplotlibrc_is_not_used_for_names(tmp_path, monkeypatch):
    """A user's matplotlibrc with text.usetex would hand names to LaTeX (absent here)."""
    monkeypatch.setitem(matplotlib.rcParams, "text.usetex", True)
    a, b = pair_files(tmp_path, task=r"50% \o/ $_", slice_="#&~")
    out = compare(tmp_path, a, b)
    assert len(list((out / "plots").glob("*.png"))) == 3


# ---- Markdown injection --------------------------------------------------------------------

LINK = "[click](http://evil.example/x)"
IMAGE = "![t](http://evil.example/p.png)"
RAW = '<img src="http://evil.example/q.png">'


def rendered(md_text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(md_text)


def test_markdown_data_cannot_make_links_images_or_markup(tmp_path):
    evil = "it's | pipe\nnext *em* `code` # $m$ @user"
    a, b = pair_files(
        tmp_path,
        task=f"task {IMAGE}",
        roles=(f"old {LINK}", f"new {IMAGE}"),
        slice_=f"s {LINK}",
        ids=[f"id{k} {LINK}" for k in range(6)],
        output=f"{evil} {LINK}",
        target=f"{IMAGE} {RAW}",
    )
    out = compare(tmp_path, a, b)
    md = (out / "report.md").read_text()
    html = rendered(md)
    assert "<a " not in html  # no link from data (the report itself has none)
    srcs = re.findall(r'<img src="([^"]*)"', html)
    assert srcs and all(s.startswith("plots/") for s in srcs), srcs  # only our plot files
    assert "evil.example" in html  # the data is still shown, as text
    assert "<em>" not in html and "<code>code</code>" not in html
    assert "&#x27;" not in md and "it's" in md  # apostrophes are not HTML entities in Markdown
    # Every flip is one table row of 7 cells: the pipe and the newline in data stayed inside.
    tables = html.split("<table>")
    flip_table = tables[-1]
    rows = re.findall(r"<tr>(.*?)</tr>", flip_table, flags=re.S)[1:]  # skip the header row
    n_flips = len(next((out / "flips").rglob("*.jsonl")).read_text().splitlines())
    assert n_flips >= 2 and len(rows) == n_flips
    assert all(row.count("<td>") == 7 for row in rows)
    assert "it's \\| pipe\\\\nnext" in md and "it's | pipe" not in md


# ---- control and bidi characters -----------------------------------------------------------

SNEAKY = "a\x00b\u202ec\u200bd\x1b[31me\u2028f\u2066g\x7fh"


def test_control_and_bidi_characters_are_shown_as_escapes(tmp_path):
    a, b = pair_files(
        tmp_path,
        task=f"t{SNEAKY}",
        roles=(f"o{SNEAKY}", f"n{SNEAKY}"),
        slice_=SNEAKY,
        ids=[f"{SNEAKY}{k}" for k in range(6)],
        output=f"line1\n{SNEAKY}",
        target=SNEAKY,
    )
    out = compare(tmp_path, a, b)
    for name in ("report.md", "report.html"):
        text = (out / name).read_text(encoding="utf-8")
        assert invisible(text) == [], (name, invisible(text))
        for shown in ("\\x00", "\\u202e", "\\u200b", "\\x1b", "\\u2028", "\\u2066", "\\x7f"):
            assert shown in text, (name, shown)
    # the flips file is data, not a report: it keeps the exact characters
    flips = next((out / "flips").rglob("*.jsonl")).read_text(encoding="utf-8")
    assert SNEAKY in "".join(
        json.loads(line)["reference"]["target"] for line in flips.split("\n")[:1]
    )


# ---- huge fields ---------------------------------------------------------------------------


def test_megabyte_outputs_are_clipped_in_reports_only(tmp_path):
    big = "x" * 1_000_000
    a, b = pair_files(tmp_path, output=big, target="y" * 5000)
    out = compare(tmp_path, a, b)
    page = (out / "report.html").read_text()
    assert len(page) < 300_000, len(page)
    # outputs are "<big> 0" / "<big> 1": 1,000,002 characters, FIELD_CAP shown
    assert f"… ({1_000_002 - FIELD_CAP} more characters)" in page
    assert f"… ({5000 - FIELD_CAP} more characters)" in page
    md = (out / "report.md").read_text()
    assert len(md) < 50_000 and f"… \\({1_000_002 - MD_CELL_CAP} more characters\\)" in md
    flips = [json.loads(line) for line in next((out / "flips").rglob("*.jsonl")).open()]
    assert flips and all(f["reference"]["output"] == f"{big} 0" for f in flips)


# ---- paths named in metrics.json -----------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path) -> Path:
    a, b = pair_files(tmp_path)
    return compare(tmp_path, a, b)


def _point_flips_at(run: Path, target: str) -> None:
    path = run / "metrics.json"
    doc = json.loads(path.read_text())
    doc["comparisons"][0]["files"]["flips"] = target
    path.write_text(json.dumps(doc))


def _files(run: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and not p.is_symlink()}


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "nul"])
def test_report_reads_no_file_outside_the_run(run_dir, tmp_path, capsys, kind):
    secret = tmp_path / "secret.jsonl"
    write(secret, [{"example_id": "SECRET-TOKEN", "flip": "negative"}])
    if kind == "dotdot":
        target = os.path.relpath(secret, run_dir)
    elif kind == "absolute":
        target = str(secret)
    elif kind == "symlink":
        (run_dir / "flips" / "link.jsonl").symlink_to(secret)
        target = "flips/link.jsonl"
    else:
        target = "flips/\x00.jsonl"
    _point_flips_at(run_dir, target)
    before = _files(run_dir)
    code = main(["report", str(run_dir)])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "metrics.json" in lines[0] and "comparisons[0].files.flips" in lines[0]
    assert "Traceback" not in captured.out + captured.err
    after = _files(run_dir)
    assert after == before  # nothing re-rendered, nothing embedded
    assert not any(b"SECRET-TOKEN" in data for data in after.values())


def test_report_reads_a_flips_path_that_stays_inside(run_dir):
    rel = json.loads((run_dir / "metrics.json").read_text())["comparisons"][0]["files"]["flips"]
    _point_flips_at(run_dir, f"flips/../{rel}")  # odd spelling, same file inside the run
    assert main(["report", str(run_dir)]) == 0
