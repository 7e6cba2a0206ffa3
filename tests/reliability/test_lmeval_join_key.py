"""A compatlm prediction file joins an lm-eval samples file on a field of the logged ``doc``.

lm-eval's ``doc_id`` is the document's position in its dataset; a compatlm file's
``example_id`` is the task row's ``id``. The fixtures in ``tests/fixtures/lmeval_0.4.13/`` (made
by lm-eval itself) happen to use ids "0".."39" = positions, so here they are turned into the
usual case: task ids ``"row-<id>"`` and lm-eval lines in another order (``doc_id`` renumbered
by position, as lm-eval writes them for a differently ordered dataset). Expected counts are
recomputed from the raw JSON, never hard-coded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from compatlm.cli import main
from compatlm.config import EvalConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lmeval_0.4.13"
NEW = next((FIXTURES / "new").glob("samples_tinymc_*.jsonl"))
OURS_OLD = FIXTURES / "compatlm_old.jsonl"


def raw(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """(compatlm file with ids "row-<id>", lm-eval file shuffled, doc.id = "row-<id>")."""
    ours = raw(OURS_OLD)
    for r in ours:
        r["example_id"] = f"row-{r['example_id']}"
    theirs = raw(NEW)
    random.Random(0).shuffle(theirs)
    for pos, r in enumerate(theirs):
        r["doc_id"] = pos
        r["doc"]["id"] = f"row-{r['doc']['id']}"
    return write(tmp_path / "ours.jsonl", ours), write(tmp_path / NEW.name, theirs)


def _compare(old: Path, new: Path, out: Path, *extra: str) -> int:
    return main(["compare", str(old), str(new), "--out", str(out), "--bootstrap", "0", *extra])


def test_join_on_doc_field_pairs_the_same_documents(files, tmp_path):
    ours, theirs = files
    out = tmp_path / "joined"
    assert _compare(ours, theirs, out, "--join-key", "doc.id") == 0
    doc = json.loads((out / "metrics.json").read_text())
    comp = doc["comparisons"][0]
    old_ok = {r["example_id"]: r["correct"] for r in raw(ours)}
    new_ok = {r["doc"]["id"]: r["acc"] == 1.0 for r in raw(theirs)}
    nf = sum(old_ok[i] and not new_ok[i] for i in old_ok)
    pf = sum(not old_ok[i] and new_ok[i] for i in old_ok)
    assert comp["n"] == len(old_ok) == 40
    assert (comp["counts"]["negative_flips"], comp["counts"]["positive_flips"]) == (nf, pf)
    assert comp["unmatched"]["reference_only"]["count"] == 0
    assert comp["unmatched"]["other_only"]["count"] == 0
    assert doc["settings"]["join_key"] == "doc.id"
    # The flips name the compatlm ids: the join really went through doc.id.
    flips = raw(out / comp["files"]["flips"])
    assert flips and all(f["example_id"].startswith("row-") for f in flips)


def test_without_join_key_nothing_matches(files, tmp_path, capsys):
    """Guards the premise: doc_id positions are not the task ids."""
    ours, theirs = files
    out = tmp_path / "plain"
    assert _compare(ours, theirs, out) == 2
    assert "no example_id in common" in _one_error(capsys)
    assert not out.exists()


def test_config_file_sets_join_key(files, tmp_path):
    ours, theirs = files
    cfg = tmp_path / "cmp.yaml"
    cfg.write_text("join_key: doc.id\nbootstrap: 0\n")
    out = tmp_path / "cfg"
    assert main(["compare", str(ours), str(theirs), "--out", str(out), "--config", str(cfg)]) == 0
    assert json.loads((out / "metrics.json").read_text())["comparisons"][0]["n"] == 40


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("bad", "found"),
    [(None, "not found"), (3.0, "(float)"), (True, "(boolean)"), (["a"], "(list)")],
    ids=["missing", "float", "bool", "list"],
)
def test_bad_key_value_names_file_line_field(files, tmp_path, capsys, bad, found):
    ours, theirs = files
    rows = raw(theirs)
    if bad is None:
        del rows[4]["doc"]["id"]
    else:
        rows[4]["doc"]["id"] = bad
    write(theirs, rows)
    out = tmp_path / "bad"
    assert _compare(ours, theirs, out, "--join-key", "doc.id") == 2
    line = _one_error(capsys)
    assert f"{theirs}:5: field 'doc.id'" in line and found in line
    assert not out.exists()


def test_duplicate_key_values_refused(files, tmp_path, capsys):
    ours, theirs = files
    rows = raw(theirs)
    rows[6]["doc"]["id"] = rows[1]["doc"]["id"]
    write(theirs, rows)
    assert _compare(ours, theirs, tmp_path / "dup", "--join-key", "doc.id") == 2
    line = _one_error(capsys)
    assert f"{theirs}:7: field 'doc.id'" in line and "duplicate" in line
    assert "first on line 2" in line and repr(rows[1]["doc"]["id"]) in line


@pytest.mark.parametrize("key", ["id", "doc", "doc.", "doc..id", "meta.id", "doc.a b"])
def test_malformed_join_key_refused(files, tmp_path, capsys, key):
    ours, theirs = files
    assert _compare(ours, theirs, tmp_path / "k", "--join-key", key) == 2
    line = _one_error(capsys)
    assert "'join_key'" in line and "doc.<field>" in line and repr(key) in line


def test_join_key_needs_an_lmeval_input(tmp_path, capsys):
    out = tmp_path / "x"
    assert _compare(OURS_OLD, OURS_OLD, out, "--join-key", "doc.id") == 2
    assert "--join-key" in _one_error(capsys)
    assert not out.exists()


def test_eval_config_refuses_join_key():
    base = {"old": "a", "new": "b", "tasks": [{"name": "piqa"}]}
    assert EvalConfig.model_validate(base).compare.join_key is None
    with pytest.raises(ValueError, match="join_key applies to lm-eval"):
        EvalConfig.model_validate({**base, "compare": {"join_key": "doc.id"}})
