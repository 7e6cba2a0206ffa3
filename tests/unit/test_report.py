"""Reports: rendered from files alone, self-contained, and every data value escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from compatlm.config import CompareConfig
from compatlm.errors import CompatlmError
from compatlm.eval.compare_io import compare_files
from compatlm.report import FLIP_LIST_CAP, render_report

EVIL = "<script>alert('x')</script>"


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def evil_run(tmp_path: Path) -> Path:
    old = [
        {
            "example_id": f"{EVIL}{i}",
            "correct": i < 3,
            "parsed": EVIL if i < 3 else "b",
            "output": f"{EVIL} old",
            "target": EVIL,
            "slice": EVIL if i % 2 else "plain",
        }
        for i in range(6)
    ] + [{"example_id": f"only-old-{EVIL}", "correct": True}]
    new = [
        {
            "example_id": f"{EVIL}{i}",
            "correct": i >= 2,
            "parsed": EVIL if i >= 2 else "c",
            "output": f"new {EVIL}\nsecond line | pipe",
            "target": EVIL,
            "slice": EVIL if i % 2 else "plain",
        }
        for i in range(6)
    ]
    a = write(tmp_path / "old.jsonl", old)
    b = write(tmp_path / "new.jsonl", new)
    out = tmp_path / "out"
    compare_files(a, b, out, CompareConfig(bootstrap=50), render=render_report)
    return out


def test_html_escapes_data_and_is_self_contained(tmp_path):
    out = evil_run(tmp_path)
    html = (out / "report.html").read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no network resources
    assert "<link" not in html and "@import" not in html
    assert sorted(p.name.rsplit("_", 1)[-1] for p in (out / "plots").glob("*.png")) == [
        "overview.png",
        "quadrants.png",
        "slices.png",
    ]
    # The page inlines the overview and the slice chart; the quadrants are an HTML table.
    assert html.count('src="data:image/png;base64,') == 2
    assert html.count('<details class="flip') == 5  # 2 negative + 3 positive flips
    md = (out / "report.md").read_text()
    assert "<script" not in md.lower() and "&lt;script&gt;" in md
    assert "second line \\| pipe" in md  # one table row per flip: newline folded, pipe escaped


def test_counts_in_report_tables(tmp_path):
    out = evil_run(tmp_path)
    doc = json.loads((out / "metrics.json").read_text())
    c = doc["comparisons"][0]["counts"]
    # old right 0,1,2; new right 2..5 -> NF {0,1}, PF {3,4,5}, both right {2}, both wrong none
    assert (c["negative_flips"], c["positive_flips"], c["both_correct"], c["both_wrong"]) == (
        2,
        3,
        1,
        0,
    )
    md = (out / "report.md").read_text()
    assert "| old right | 1 | 2 (NF) |" in md and "| old wrong | 3 (PF) | 0 |" in md
    assert "Unmatched rows: 1 only in old" in md


def test_render_from_files_alone_is_reproducible(tmp_path):
    out = evil_run(tmp_path)
    before = {p: (out / p).read_bytes() for p in ("report.md", "report.html")}
    (tmp_path / "old.jsonl").unlink()
    (tmp_path / "new.jsonl").unlink()
    for p in before:
        (out / p).unlink()
    written = render_report(out)
    assert out / "report.md" in written and out / "report.html" in written
    for p, data in before.items():
        assert (out / p).read_bytes() == data, p


def test_flip_list_is_capped(tmp_path):
    n = FLIP_LIST_CAP + 5
    a = write(tmp_path / "a.jsonl", [{"example_id": str(i), "correct": True} for i in range(n)])
    b = write(tmp_path / "b.jsonl", [{"example_id": str(i), "correct": False} for i in range(n)])
    out = tmp_path / "out"
    compare_files(a, b, out, CompareConfig(bootstrap=0), render=render_report)
    html = (out / "report.html").read_text()
    assert html.count('<details class="flip') == FLIP_LIST_CAP
    assert f"Showing the first {FLIP_LIST_CAP} (negative flips first); all {n} are in" in html


def test_missing_metrics_json(tmp_path):
    with pytest.raises(CompatlmError, match=r"metrics.json: not found"):
        render_report(tmp_path)
    (tmp_path / "metrics.json").write_text('{"schema_version": 7}')
    with pytest.raises(CompatlmError, match="expected schema_version 1, found 7"):
        render_report(tmp_path)


def test_plain_clips_and_shows_invisible_characters():
    from compatlm.report.fmt import clip, plain, visible

    assert clip("abcdef", 4) == "abcd… (2 more characters)" and clip("abcd", 4) == "abcd"
    assert visible("a\x00b\u202ec\U000e0001d\n\t\x7f") == "a\\x00b\\u202ec\\U000e0001d\\n\\t\\x7f"
    assert visible("x\ny\tz\r\u2028", multiline=True) == "x\ny\tz\\r\\u2028"
    assert visible("é 日本 🙂 $x$") == "é 日本 🙂 $x$"  # visible text is left alone
    assert plain(None) == "null" and plain("\x00" * 5, 2) == "\\x00\\x00… (3 more characters)"


def test_markdown_escaping():
    from compatlm.report.markdown import md_code, md_escape

    text = "[x](u) ![i](p) <b> & it's | `c` *e* _u_ $m$ @m #h ~s~ \\"
    want = (
        r"\[x\]\(u\) \!\[i\]\(p\) &lt;b&gt; &amp; it's \| \`c\` \*e\* \_u\_ \$m\$ \@m \#h"
        r" \~s\~ \\"
    )
    assert md_escape(text) == want
    assert md_code("flips/a_b.jsonl") == "`flips/a_b.jsonl`"
    assert md_code("a`b") == "``a`b``" and md_code("`a") == "`` `a ``"
