"""Run-directory safety: names that become paths, --overwrite, --resume, locks, atomic sets.

Every refusal is checked in the CLI contract of the bad-input corpus (exit code 2, exactly one
``error:`` line on stderr naming the problem, no traceback) and, above all, for what it must
not do: files outside ``--out`` and inputs inside it are still there, byte-identical.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import contract
import pytest
import yaml

from compatlm.cli import main
from compatlm.errors import CompatlmError
from compatlm.paths import (
    INCOMPLETE,
    MARKER,
    STAGING,
    check_name,
    plot_stem,
    safe_name,
    unique_flips_paths,
)

PREDS = Path(__file__).parent / "corpus" / "preds"
OLD, NEW = PREDS / "good_old.jsonl", PREDS / "good_new.jsonl"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), symlinks not followed."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def refused(argv: list[str], capsys, *expect: str, code: int = 2) -> str:
    """Run the CLI; assert the one-line error contract and return the line."""
    return contract.refused(argv, capsys, expect, code=code)


def ok(argv: list[str], capsys) -> None:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 0, err


def compare(out: Path, *extra: str) -> list[str]:
    return ["compare", OLD, NEW, "--out", out, "--bootstrap", "0", *extra]


@pytest.fixture(scope="module")
def finished_run(small_eval_config, tmp_path_factory) -> Path:
    """A complete eval run of the 16-example config (old and new on one MC task)."""
    out = tmp_path_factory.mktemp("safety") / "run"
    assert main(["-q", "eval", str(small_eval_config), "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


# ---------------------------------------------------------------- names that become paths


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("../../escaped", "not file-safe"),
        ("ABS", "not file-safe"),  # replaced by an absolute path below
        ("''", "is empty"),
        ("a/b", "not file-safe"),
        ("..", "not file-safe"),
        ("has space", "not file-safe"),
        ("x" * 201, "bytes long"),
    ],
    ids=["traversal", "absolute", "empty", "slash", "dotdot", "space", "too-long"],
)
def test_unsafe_task_names_refused_by_eval_and_validate(
    name, expect, small_eval_config, tmp_path, capsys, no_model_loads
):
    if name == "ABS":
        name = str(tmp_path / "abs_escaped")
    out = tmp_path / "deep" / "er" / "out"
    before = snapshot(tmp_path)
    refused(
        ["eval", small_eval_config, "--out", out, f"tasks.0.name={name}"],
        capsys,
        "tasks[0].name",
        expect,
    )
    refused(["validate", small_eval_config, f"tasks.0.name={name}"], capsys, "tasks[0].name")
    assert not out.exists() and not (tmp_path / "deep").exists()
    assert snapshot(tmp_path) == before  # nothing written anywhere


def test_unsafe_task_name_with_resume_leaves_the_file_outside_alone(
    run_copy, small_eval_config, tmp_path, capsys, no_model_loads
):
    """Resuming used to truncate predictions/<task>/... = a file outside the run directory."""
    victim = tmp_path / "victim" / "old.jsonl"
    victim.parent.mkdir()
    victim.write_bytes(b'{"precious": 1}\n{"cut')  # a last line that looks "cut off"
    name = "../../victim"  # run/predictions/../../victim/old.jsonl == tmp_path/victim/old.jsonl
    refused(
        ["eval", small_eval_config, "--out", run_copy, "--resume", f"tasks.0.name={name}"],
        capsys,
        "tasks[0].name",
        "not file-safe",
    )
    assert victim.read_bytes() == b'{"precious": 1}\n{"cut'


def test_rerank_task_name_is_checked(tiny_family, tmp_path, capsys, no_model_loads):
    task = tmp_path / "gen.jsonl"
    task.write_text('{"id": "g0", "prompt": "The cat sat on the", "reference": "mat"}\n')
    cfg = tmp_path / "rerank.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "old": f"{tiny_family['old']}+{tiny_family['old_adapter']}",
                "new": f"{tiny_family['new']}+{tiny_family['new_adapter']}",
                "task": {"name": "../../x", "path": str(task), "kind": "generation"},
                "runtime": {"progress": False},
            }
        )
    )
    out = tmp_path / "out"
    refused(["rerank", cfg, "--out", out], capsys, "task.name", "'../../x'")
    assert not out.exists() and not (tmp_path.parent / "x").exists()


# ---------------------------------------------------------------- --overwrite


def _train_cfg(tiny_family, tmp_path: Path) -> Path:
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"g{i}", "prompt": f"{i} + 1 =", "reference": str(i + 1)}) + "\n"
            for i in range(6)
        )
    )
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "old": f"{tiny_family['old']}+{tiny_family['old_adapter']}",
                "new": f"{tiny_family['new']}+{tiny_family['new_adapter']}",
                "task": {"name": "apples", "path": str(data)},
                "runtime": {"device": "cpu", "progress": False},
            }
        )
    )
    return cfg


def _command(which: str, tiny_family, small_eval_config, tmp_path: Path, out: Path) -> list:
    fam = {k: str(v) for k, v in tiny_family.items()}
    if which == "eval":
        return ["eval", small_eval_config, "--out", out]
    if which == "compare":
        return compare(out)
    if which == "build":
        cfg = tmp_path / "interp.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "old": f"{fam['old']}+{fam['old_adapter']}",
                    "new": f"{fam['new']}+{fam['new_adapter']}",
                }
            )
        )
        return ["build", "interpolate", cfg, "--out", out]
    if which == "train":
        data = yaml.safe_load(_train_cfg(tiny_family, tmp_path).read_text())
        cfg = tmp_path / "task.yaml"
        cfg.write_text(
            yaml.safe_dump({"base": fam["new"], "task": data["task"], "runtime": data["runtime"]})
        )
        return ["train", "task", cfg, "--out", out]
    if which == "cache-teacher":
        return ["cache-teacher", _train_cfg(tiny_family, tmp_path), "--out", out]
    if which == "rerank":
        task = tmp_path / "gen.jsonl"
        task.write_text('{"id": "g0", "prompt": "The cat sat on the", "reference": "mat"}\n')
        cfg = tmp_path / "rerank.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "old": f"{fam['old']}+{fam['old_adapter']}",
                    "new": f"{fam['new']}+{fam['new_adapter']}",
                    "task": {"name": "gen", "path": str(task), "kind": "generation"},
                    "runtime": {"progress": False},
                }
            )
        )
        return ["rerank", cfg, "--out", out]
    assert which == "demo"
    return ["demo", "--quick", "--out", out]


COMMANDS = ["eval", "compare", "build", "train", "cache-teacher", "rerank", "demo"]


@pytest.mark.parametrize("which", COMMANDS)
def test_overwrite_refuses_a_directory_compatlm_did_not_make(
    which, tiny_family, small_eval_config, tmp_path, capsys
):
    """`--overwrite` used to rmtree whatever --out named (a home directory, a project)."""
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("precious")
    (mine / "sub" / "data.bin").write_bytes(os.urandom(64))
    before = snapshot(mine)
    argv = _command(which, tiny_family, small_eval_config, tmp_path, mine)
    refused([*argv, "--overwrite"], capsys, "not a compatlm run directory", "refusing to delete")
    assert snapshot(mine) == before


def test_eval_overwrite_keeps_inputs_inside_out(
    finished_run, tiny_family, small_eval_config, tmp_path, capsys, no_model_loads
):
    """The config, the task file and a model adapter inside a compatlm --out all survive."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    task = Path(yaml.safe_load(small_eval_config.read_text())["tasks"][0]["path"])
    shutil.copy(task, out / "task.jsonl")
    shutil.copytree(tiny_family["new_adapter"], out / "adapter")
    cfg = out / "eval.yaml"
    cfg.write_text(small_eval_config.read_text())
    before = snapshot(out)
    refused(["eval", cfg, "--out", out, "--overwrite"], capsys, "contains the input", "eval.yaml")
    outside = tmp_path / "eval.yaml"
    outside.write_text(small_eval_config.read_text())
    refused(
        ["eval", outside, "--out", out, "--overwrite", f"tasks.0.path={out / 'task.jsonl'}"],
        capsys,
        "contains the input",
        "task.jsonl",
    )
    new = f"{tiny_family['new']}+{out / 'adapter'}"
    refused(
        ["eval", outside, "--out", out, "--overwrite", f"new={new}"],
        capsys,
        "contains the input",
        "adapter",
    )
    assert snapshot(out) == before


def test_compare_overwrite_keeps_its_config_inside_out(tmp_path, capsys):
    out = tmp_path / "cmp"
    ok(compare(out), capsys)
    cfg = out / "compare.yaml"
    cfg.write_text("bootstrap: 0\n")
    refused([*compare(out, "--overwrite"), "--config", cfg], capsys, "contains the input")
    assert cfg.read_text() == "bootstrap: 0\n"


def test_overwrite_refuses_cwd_home_and_ancestors(tmp_path, monkeypatch, capsys):
    """`compare --out . --overwrite` used to empty the working directory, then crash."""
    work = tmp_path / "home" / "code" / "project"
    (work / "src").mkdir(parents=True)
    (work / "src" / "main.py").write_text("print('hi')\n")
    (work / MARKER).write_text('{"kind": "compare"}')  # even a marker does not make it deletable
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    before = snapshot(tmp_path)
    refused(compare(Path("."), "--overwrite"), capsys, "is the working directory")
    refused(compare(Path(".."), "--overwrite"), capsys, "contains the working directory")
    refused(compare(tmp_path / "home", "--overwrite"), capsys, "home directory")
    assert snapshot(tmp_path) == before


def test_overwrite_refuses_a_symlinked_out(tmp_path, capsys):
    real = tmp_path / "real"
    ok(compare(real), capsys)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    before = snapshot(real)
    refused(compare(link, "--overwrite"), capsys, "symbolic link", str(real))
    assert snapshot(real) == before and link.is_symlink()


def test_overwrite_of_a_compatlm_run_still_replaces_it(tmp_path, capsys):
    out = tmp_path / "cmp"
    ok(compare(out), capsys)
    (out / "stale.txt").write_text("left by an earlier run")
    ok(compare(out, "--overwrite"), capsys)
    assert not (out / "stale.txt").exists() and (out / "metrics.json").is_file()
    assert json.loads((out / MARKER).read_text())["kind"] == "compare"


def test_not_empty_message_fits_the_command(finished_run, small_eval_config, tmp_path, capsys):
    out = tmp_path / "cmp"
    ok(compare(out), capsys)
    line = refused(compare(out), capsys, "not empty", "--overwrite", "another --out")
    assert "--resume" not in line  # compare has no --resume
    refused(["eval", small_eval_config, "--out", finished_run], capsys, "--resume")


# ---------------------------------------------------------------- --resume


def _corrupt_line(path: Path, lineno: int, raw: bytes) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[lineno - 1] = raw
    path.write_bytes(b"".join(lines))


PRED = Path("predictions") / "tiny_mc" / "new.jsonl"


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        (lambda r: _corrupt_line(r / PRED, 3, b"garbage\n"), ("new.jsonl:3", "malformed JSON")),
        (lambda r: _corrupt_line(r / PRED, 2, b"\xff\xfe\n"), ("new.jsonl:2", "not valid UTF-8")),
        (lambda r: _corrupt_line(r / PRED, 4, b"[1, 2]\n"), ("new.jsonl:4", "found list")),
        (
            lambda r: _corrupt_line(r / PRED, 5, b'{"example_id": [1]}\n'),
            ("new.jsonl:5", "'example_id'"),
        ),
        (
            lambda r: (r / PRED).open("ab").write(b"not json, no newline"),
            ("new.jsonl:17", "not a JSON line"),
        ),
        (
            lambda r: (r / "config.yaml").write_text("old: [unclosed\n"),
            ("config.yaml", "invalid YAML"),
        ),
        (lambda r: (r / "config.yaml").write_bytes(b"old: \xff\n"), ("config.yaml", "UTF-8")),
        (lambda r: (r / "config.yaml").write_text("- a list\n"), ("config.yaml", "mapping")),
    ],
    ids=[
        "garbage",
        "non-utf8",
        "json-list",
        "id-list",
        "garbage-tail",
        "bad-yaml",
        "yaml-non-utf8",
        "yaml-list",
    ],
)
def test_resume_of_a_corrupt_run_names_the_line_and_changes_nothing(
    damage, expect, run_copy, small_eval_config, capsys, no_model_loads
):
    damage(run_copy)
    with (run_copy / PRED).open("ab") as fh:
        # A cut-off last line as well: it must not be truncated while the file is invalid.
        if not (run_copy / PRED).read_bytes().endswith(b"no newline"):
            fh.write(b'{"example_id": "q1')
    before = snapshot(run_copy)
    refused(["eval", small_eval_config, "--out", run_copy, "--resume"], capsys, *expect)
    after = snapshot(run_copy)
    for files in (before, after):
        files.pop(".compatlm.lock", None)  # holds the pid of the last run
    assert after == before


def test_resume_truncates_only_a_genuinely_cut_off_line(run_copy, small_eval_config, capsys):
    path = run_copy / PRED
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:20])  # the last row cut mid-write
    ok(["eval", small_eval_config, "--out", run_copy, "--resume"], capsys)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) == len({r["example_id"] for r in rows}) == len(lines)


def test_resume_refuses_a_directory_that_is_not_a_run(
    small_eval_config, tmp_path, capsys, no_model_loads
):
    """`eval --resume` used to delete flips/ and plots/ of any directory it was pointed at."""
    mine = tmp_path / "mine"
    (mine / "flips").mkdir(parents=True)
    (mine / "plots").mkdir()
    (mine / "flips" / "keep.jsonl").write_text('{"a": 1}\n')
    (mine / "plots" / "keep.png").write_bytes(b"\x89PNG")
    (mine / "config.yaml").write_text("not: compatlm\n")
    before = snapshot(mine)
    refused(
        ["eval", small_eval_config, "--out", mine, "--resume"],
        capsys,
        "not a compatlm run directory",
        "refusing to resume",
    )
    assert snapshot(mine) == before


def test_resume_refuses_a_run_of_another_command(small_eval_config, tmp_path, capsys):
    out = tmp_path / "cmp"
    ok(compare(out), capsys)
    before = snapshot(out)
    refused(
        ["eval", small_eval_config, "--out", out, "--resume"], capsys, "made by `compatlm compare`"
    )
    assert snapshot(out) == before


def test_stale_atomic_temp_files_are_removed_on_resume(run_copy, small_eval_config, capsys):
    stale = run_copy / "predictions" / "tiny_mc" / ".new.jsonl.k3j_9x2a.tmp"
    stale.write_bytes(b"x" * 100_000)  # what kill -9 during an atomic write leaves
    keep = run_copy / ".notes.tmp"  # not the atomic writer's name pattern
    keep.write_text("mine")
    outside = run_copy.parent / ".metrics.json.abcdefgh.tmp"
    outside.write_text("not in the run directory")
    ok(["eval", small_eval_config, "--out", run_copy, "--resume"], capsys)
    assert not stale.exists()
    assert keep.read_text() == "mine" and outside.read_text() == "not in the run directory"


# ---------------------------------------------------------------- one writer, atomic sets


def test_a_second_run_into_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    holder = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out / '.compatlm.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        refused(compare(out), capsys, "another compatlm run", f"pid {proc.pid}")
        assert not (out / "metrics.json").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    ok(compare(out), capsys)  # the kernel released the dead process's lock


def _hand_run(root: Path, tasks: dict[str, str], flip: int = 2) -> Path:
    """predictions/<dir>/{old,new}.jsonl of minimal lines whose ``task`` field is given."""
    for tdir, task in tasks.items():
        for role, wrong in (("old", set()), ("new", set(range(flip)))):
            rows = [
                {"task": task, "example_id": str(i), "correct": i not in wrong, "parsed": i}
                for i in range(6)
            ]
            path = root / "predictions" / tdir / f"{role}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


SET = ("flips", "plots", "metrics.json", "report.md", "report.html")


def _set_of(run: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(run).items() if k.split("/")[0] in SET}


def test_a_failed_recompare_leaves_the_previous_set_whole(tmp_path, capsys, monkeypatch):
    import compatlm.report

    run = _hand_run(tmp_path / "run", {"t": "t"})
    ok(["compare", run, "--bootstrap", "0"], capsys)
    before = _set_of(run)
    _hand_run(run, {"t": "t"}, flip=4)  # other predictions: a recompare would change every file

    def broken(run_dir, **kwargs):
        raise CompatlmError("plot failed")

    monkeypatch.setattr(compatlm.report, "render_report", broken)
    refused(["compare", run, "--bootstrap", "0"], capsys, "plot failed")
    assert _set_of(run) == before  # no new flips beside a stale metrics.json
    assert not (run / STAGING).exists()


def test_an_interrupted_swap_is_marked_and_report_refuses_it(tmp_path, capsys, monkeypatch):
    run = _hand_run(tmp_path / "run", {"t": "t"})
    ok(["compare", run, "--bootstrap", "0"], capsys)
    _hand_run(run, {"t": "t"}, flip=4)
    real = os.replace

    def killed(src, dst, *args, **kwargs):
        # The kill lands in the swap: flips/ is in place, metrics.json is not yet.
        src, dst = Path(src), Path(dst)
        if src.parent.name == STAGING and dst.parent.name != STAGING and dst.name == "metrics.json":
            raise KeyboardInterrupt
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", killed)
    assert main(["compare", str(run), "--bootstrap", "0"]) == 130
    capsys.readouterr()
    assert (run / INCOMPLETE).is_file()
    refused(["report", run], capsys, INCOMPLETE, "interrupted")
    monkeypatch.undo()
    ok(["compare", run, "--bootstrap", "0"], capsys)
    assert not (run / INCOMPLETE).exists()
    ok(["report", run], capsys)


# ---------------------------------------------------------------- names read from files


def test_names_that_collide_after_sanitising_get_their_own_files(tmp_path, capsys):
    run = _hand_run(tmp_path / "run", {"a b": "a b", "a_b": "a_b", "x": "same", "y": "same"})
    ok(["compare", run, "--bootstrap", "0"], capsys)
    doc = json.loads((run / "metrics.json").read_text())
    flips = [c["files"]["flips"] for c in doc["comparisons"]]
    assert len(doc["comparisons"]) == 4 and len(set(flips)) == 4
    assert "flips/a_b/old_vs_new.jsonl" in flips  # the name that was already file-safe keeps it
    for comp in doc["comparisons"]:
        rows = [json.loads(x) for x in (run / comp["files"]["flips"]).read_text().splitlines()]
        assert rows and {r["task"] for r in rows} == {comp["task"]}
    assert len(list((run / "plots").glob("*_quadrants.png"))) == 4
    renamed = [c for c in doc["comparisons"] if c["files"]["flips"] != flips_of(c)]
    assert len(renamed) == 2 and all(
        "shares its file name" in " ".join(c["warnings"]) for c in renamed
    )


def flips_of(comp: dict) -> str:
    return f"flips/{safe_name(comp['task'])}/old_vs_new.jsonl"


def test_names_from_files_with_odd_characters_and_long_names_work(tmp_path, capsys):
    task, role = "my task $x/../y" + "é" * 150, "the new one " * 30
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    for path, who, wrong in ((old, "old", set()), (new, role, {0, 1})):
        rows = [
            {"task": task, "role": who, "example_id": str(i), "correct": i not in wrong}
            for i in range(4)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    ok(["compare", old, new, "--out", out, "--bootstrap", "0"], capsys)
    files = [p for p in out.rglob("*")]
    assert all(len(p.name.encode()) <= 255 for p in files)
    assert all(p.resolve().is_relative_to(out.resolve()) for p in files)
    assert len(list((out / "flips").rglob("*.jsonl"))) == 1
    ok(["report", out], capsys)


def test_outputs_get_the_umask_permissions_not_0600(tmp_path, capsys):
    previous = os.umask(0o027)
    try:
        ok(compare(tmp_path / "cmp"), capsys)
    finally:
        os.umask(previous)
    for name in ("metrics.json", "report.html", MARKER):
        assert stat.S_IMODE((tmp_path / "cmp" / name).stat().st_mode) == 0o640, name


# ---------------------------------------------------------------- the name helpers


@pytest.mark.parametrize("name", ["piqa", "demo_gsm8k", "a.b-c+d", "X9", "x" * 200])
def test_check_name_accepts_file_safe_names(name):
    assert check_name("tasks[0].name", name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "-a", "_a", "a/b", "a\\b", "a b", "a\x00", "é", "x" * 201, None]
)
def test_check_name_refuses_with_field_value_and_rule(name):
    with pytest.raises(CompatlmError, match=r"^tasks\[2\]\.name: name .*expected letters"):
        check_name("tasks[2].name", name)


def test_safe_name_and_unique_paths():
    assert safe_name("../../etc") == "_._.._etc" and "/" not in safe_name("a/b")
    assert safe_name("") == "_" and len(safe_name("é" * 300).encode()) <= 200
    assert safe_name("é" * 300) != safe_name("é" * 299 + "e")  # cut names stay distinct
    keys = [("a b", "old", "new"), ("a_b", "old", "new"), ("A_B", "old", "new")]
    paths, notes = unique_flips_paths(keys, ["1", "2", "3"])
    assert paths[1] == "flips/a_b/old_vs_new.jsonl" and notes[1] is None
    assert len({plot_stem(p).casefold() for p in paths}) == 3  # case-insensitive disks too
    assert notes[0] and notes[2]
    assert unique_flips_paths(keys, ["1", "2", "3"]) == (paths, notes)  # stable across reruns
