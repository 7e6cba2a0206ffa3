"""The CLI contract beyond single bad files: exit codes, closed stdout, escaping, quiet stderr.

* corpus cases (same style as ``test_bad_inputs.py``: exit 2, one ``error:`` line naming the
  problem, no traceback, no model loaded, no ``--out``) for repeated JSON/YAML keys, nesting,
  lone surrogates, YAML alias bombs, non-finite or out-of-range numbers in flags and configs,
  gate thresholds in the wrong unit and unknown devices;
* exit code 3 with a traceback log for an unexpected exception, 130 for Ctrl-C, and a reader
  that closes stdout (``| head -c1``) is not an error;
* data printed to the terminal is escaped (ANSI/OSC/bidi cannot fake output);
* a successful run's stderr carries no library warnings.

Unit-level checks of the same bounds are in ``test_input_bounds.py``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from contract import refused, templated
from test_bad_inputs import CORPUS, EVAL, LM, Case, cmp, places  # noqa: F401

from compatlm.cli import _SafeFormatter, _StdoutGuard, main
from compatlm.errors import CompatlmError, printable

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
TRAIN = "train task ${cfg}/train_task.yaml --out ${out}"
PORT = "build port ${cfg}/port.yaml --out ${out}"
GOOD = cmp("good_new.jsonl")

CASES = [
    # ---- JSON lines: repeated keys, nesting, lone surrogates -------------------------------
    Case("pred-duplicate-key", cmp("duplicate_key.jsonl"), ("duplicate_key.jsonl:2", "duplicate key 'correct'")),
    Case("pred-deep-nesting", cmp("deep_nesting.jsonl"), ("deep_nesting.jsonl:2", "nested deeper than 64")),
    Case("pred-deep-field", cmp("deep_field.jsonl"), ("deep_field.jsonl:2", "field 'output'", "nested deeper than 64")),
    Case("pred-lone-surrogate", cmp("lone_surrogate.jsonl"), ("lone_surrogate.jsonl:2", "field 'output'", "lone surrogate")),
    Case("task-duplicate-key", f"{EVAL} tasks.0.path=${{tasks}}/duplicate_key.jsonl", ("duplicate_key.jsonl:2", "duplicate key 'label'")),
    Case("task-lone-surrogate", f"{EVAL} tasks.0.path=${{tasks}}/lone_surrogate.jsonl", ("lone_surrogate.jsonl:2", "field 'context'", "lone surrogate")),
    Case("lmeval-duplicate-key", f"compare {LM} ${{lmeval}}/samples_piqa_duplicate_key.jsonl --out ${{out}}", ("samples_piqa_duplicate_key.jsonl:2", "duplicate key 'doc_id'")),
    # ---- YAML that costs more than it says --------------------------------------------------
    Case("cfg-alias-bomb", "eval ${cfg}/alias_bomb.yaml --out ${out}", ("alias_bomb.yaml:15", "alias bomb")),
    Case("cfg-deep-nesting", "eval ${cfg}/deep_nesting.yaml --out ${out}", ("deep_nesting.yaml:7", "nested deeper than 64")),
    Case("cfg-recursive-alias", "eval ${cfg}/recursive_alias.yaml --out ${out}", ("recursive_alias.yaml:7", "alias refers to a collection that contains it")),
    Case("cfg-duplicate-key", "eval ${cfg}/duplicate_key.yaml --out ${out}", ("duplicate_key.yaml:9", "duplicate key 'runtime'", "first on line 7")),
    Case("cfg-override-deep", f"{EVAL} candidates.x=" + "[" * 200 + "]" * 200, ("override", "nested deeper than 64")),
    # ---- numbers in configs: finite, seeds in numpy's range --------------------------------
    Case("cfg-compare-seed-negative", f"{EVAL} compare.seed=-1", ("'compare.seed'", "greater than or equal to 0", "-1")),
    Case("cfg-runtime-seed-too-big", f"{EVAL} runtime.seed=4294967296", ("'runtime.seed'", "4294967295")),
    Case("cfg-compare-tolerance-inf", f"{EVAL} compare.tolerance=.inf", ("'compare.tolerance'", "finite", "inf")),
    Case("cfg-pass-threshold-nan", f"{EVAL} tasks.0.pass_threshold=.nan", ("'tasks.0.pass_threshold'", "finite")),
    Case("cmp-config-tolerance-inf", f"{GOOD} --config ${{cfg}}/compare_tolerance_inf.yaml", ("compare_tolerance_inf.yaml", "'tolerance'", "finite")),
    Case("train-seed-negative", f"{TRAIN} optim.seed=-1", ("train_task.yaml", "'optim.seed'", "-1")),
    Case("train-lr-nan", f"{TRAIN} optim.lr=.nan", ("train_task.yaml", "'optim.lr'", "finite")),
    Case("train-lora-alpha-inf", f"{TRAIN} lora.alpha=.inf", ("'lora.alpha'", "finite")),
    Case("build-alpha-inf", f"{PORT} alpha=.inf", ("port.yaml", "'alpha'", "finite")),
    Case("build-runtime-seed-negative", f"{PORT} runtime.seed=-3", ("'runtime.seed'", "-3")),
    # ---- numbers in flags -------------------------------------------------------------------
    Case("cmp-tolerance-inf", f"{GOOD} --tolerance inf", ("argument --tolerance", "finite number >= 0", "'inf'")),
    Case("cmp-noise-margin-nan", f"{GOOD} --noise-margin nan", ("argument --noise-margin", "'nan'")),
    Case("cmp-noise-margin-inf", f"{GOOD} --noise-margin inf", ("argument --noise-margin", "'inf'")),
    Case("cmp-noise-margin-negative", f"{GOOD} --noise-margin -1", ("argument --noise-margin", ">= 0", "'-1'")),
    Case("cmp-seed-negative", f"{GOOD} --seed -1", ("argument --seed", "[0, 4294967295]", "'-1'")),
    Case("cmp-seed-too-big", f"{GOOD} --seed 4294967296", ("argument --seed", "'4294967296'")),
    Case("cmp-confidence-one", f"{GOOD} --confidence 1", ("argument --confidence", "< 1", "'1'")),
    Case("cmp-bootstrap-negative", f"{GOOD} --bootstrap -5", ("argument --bootstrap", "'-5'")),
    Case("cmp-bootstrap-not-int", f"{GOOD} --bootstrap many", ("argument --bootstrap", "'many'")),
    Case("cli-unknown-flag", f"{GOOD} --tolerence 0.1", ("unrecognized arguments: --tolerence 0.1",)),
    Case("cli-missing-config", "eval", ("compatlm eval", "required: CONFIG")),
    # ---- gate units and names ---------------------------------------------------------------
    Case("gate-percent-for-fraction", f"{GOOD} --fail-if 'negative_flip_rate>5'", ("'negative_flip_rate>5'", "fractions", "did you mean 0.05?")),
    Case("gate-alias-percent", f"{EVAL} --fail-if 'BTC<90'", ("'BTC<90'", "backward_trust_compatibility", "did you mean 0.9?")),
    Case("gate-negative-rate", f"{GOOD} --fail-if 'nfr<-0.1'", ("'nfr<-0.1'", "in [0, 1]", "-0.1")),
    Case("gate-signed-percent", f"{GOOD} --fail-if 'accuracy_delta<-5'", ("in [-1, 1]", "did you mean -0.05?")),
    Case("gate-negative-count", f"{GOOD} --fail-if 'negative_flips<-1'", ("count of instances", "-1")),
    Case("gate-unknown-suggests", f"{GOOD} --fail-if 'negative_flip_rat>0.1'", ("unknown metric 'negative_flip_rat'", "did you mean 'negative_flip_rate'?")),
    Case("gate-inf", f"{GOOD} --fail-if 'NFR>inf'", ("'NFR>inf'", "finite number", "'inf'")),
    Case("gate-nan", f"{EVAL} --fail-if 'nfr>nan'", ("'nfr>nan'", "finite number")),
    # ---- devices ----------------------------------------------------------------------------
    Case("device-xla", f"{EVAL} runtime.device=xla", ("'runtime.device'", "auto | cpu | cuda | cuda:N | mps", "'xla'")),
    Case("device-meta", f"{EVAL} runtime.device=meta", ("'runtime.device'", "'meta'")),
    Case("device-garbage", f"{EVAL} runtime.device=cuda:x", ("'runtime.device'", "'cuda:x'")),
    Case("device-unavailable", f"{EVAL} runtime.device=cuda:99", ("runtime.device: 'cuda:99' asked for", "available here: cpu")),
]  # fmt: skip


def run_case(case: Case, values: dict[str, str], tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    refused(templated(case.argv, values, out), capsys, case.expect, out=out)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_contract_case(case: Case, places, tmp_path, capsys, no_model_loads):  # noqa: F811
    run_case(case, places, tmp_path, capsys)


def test_alias_bomb_is_refused_fast(places, tmp_path, capsys, no_model_loads):  # noqa: F811
    """The 0.7 KB file expands to 9**9 values: refused before expansion, not after a minute."""
    start = time.perf_counter()
    run_case(CASES[7], places, tmp_path, capsys)
    assert CASES[7].id == "cfg-alias-bomb"
    assert time.perf_counter() - start < 5.0


# ---------------------------------------------------------------- exit codes


def _two_files(tmp_path: Path, *, task: str = "task") -> tuple[str, str]:
    """NF on ids 6, 7 (NFR 0.2), PF on 8, 9."""
    old = [True] * 8 + [False] * 2
    new = [True] * 6 + [False] * 2 + [True] * 2
    paths = []
    for name, col in (("old", old), ("new", new)):
        p = tmp_path / f"{name}.jsonl"
        rows = [{"example_id": str(i), "correct": c, "task": task} for i, c in enumerate(col)]
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(str(p))
    return paths[0], paths[1]


@pytest.fixture
def crash_dir(tmp_path, monkeypatch) -> Path:
    """The temp directory crash logs fall back to, isolated per test."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    return tmp


def _boom(*args, **kwargs):
    raise RuntimeError("boom\x1b[2J in the library")


def test_unexpected_exception_is_exit_3_with_a_traceback_log(
    tmp_path, crash_dir, capsys, monkeypatch
):
    monkeypatch.setattr("compatlm.eval.compare_io.compare_files", _boom)
    a, b = _two_files(tmp_path)
    code = main(["compare", a, b, "--out", str(tmp_path / "out"), "--bootstrap", "0"])
    captured = capsys.readouterr()
    assert code == 3
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert lines[0].startswith("error: internal error: RuntimeError: boom\\x1b[2J in the library")
    assert "\x1b" not in captured.err
    logs = list(crash_dir.glob("compatlm-crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    text = logs[0].read_text()
    assert "Traceback (most recent call last)" in text and "_boom" in text
    assert f"command: compatlm compare {a} {b}" in text


def test_crash_log_goes_into_an_existing_run_dir_only(tmp_path, crash_dir, capsys, monkeypatch):
    from compatlm.paths import MARKER

    monkeypatch.setattr("compatlm.eval.compare_io.compare_files", _boom)
    a, b = _two_files(tmp_path)
    # A directory of the user's (no compatlm marker) is never written to: the log goes to TMPDIR.
    mine = tmp_path / "mine"
    mine.mkdir()
    assert main(["compare", a, b, "--out", str(mine)]) == 3
    capsys.readouterr()
    assert not list(mine.iterdir())
    assert len(list(crash_dir.glob("compatlm-crash-*.log"))) == 1
    for log in crash_dir.iterdir():
        log.unlink()
    # A run directory compatlm made gets the log beside the partial run it explains.
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text('{"kind": "compare", "version": 1}')
    assert main(["compare", a, b, "--out", str(out), "--overwrite"]) == 3
    err = capsys.readouterr().err
    logs = list(out.glob("compatlm-crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    assert not list(crash_dir.iterdir())


def test_interrupt_is_130_and_mentions_resume_only_where_it_exists(
    tmp_path, small_eval_config, capsys, monkeypatch
):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("compatlm.eval.compare_io.compare_files", interrupt)
    a, b = _two_files(tmp_path)
    assert main(["compare", a, b, "--out", str(tmp_path / "c")]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted") and "--resume" not in err

    monkeypatch.setattr("compatlm.eval.pipeline.run_eval", interrupt)
    assert main(["eval", str(small_eval_config), "--out", str(tmp_path / "e")]) == 130
    assert "rerun the same command with --resume" in capsys.readouterr().err


def test_library_sys_exit_is_an_internal_error_not_a_gate_failure(
    tmp_path, crash_dir, capsys, monkeypatch
):
    def library_exit(*args, **kwargs):
        sys.exit(1)

    monkeypatch.setattr("compatlm.eval.compare_io.compare_files", library_exit)
    a, b = _two_files(tmp_path)
    assert main(["compare", a, b, "--out", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: internal error: RuntimeError: a library called sys.exit(1)")


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for line in (
        "0    ok",
        "1    a --fail-if gate condition held",
        "2    bad input",
        "3    internal error",
    ):
        assert line in out
    readme = (REPO / "README.md").read_text()
    assert "### Exit codes" in readme and "| 3 | internal error" in readme


# ---------------------------------------------------------------- closed stdout


class _ClosedPipe:
    """A stdout whose reader went away: every write or flush raises EPIPE."""

    def __init__(self) -> None:
        self.attempts = 0

    def write(self, text: str) -> int:
        self.attempts += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self) -> bool:
        return False


@pytest.mark.parametrize("gate, expected", [([], 0), (["--fail-if", "NFR>0.1"], 1)])
def test_closed_stdout_keeps_the_commands_exit_code(tmp_path, capsys, monkeypatch, gate, expected):
    a, b = _two_files(tmp_path)
    pipe = _ClosedPipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    out = tmp_path / "out"
    code = main(["compare", a, b, "--out", str(out), "--bootstrap", "0", *gate])
    assert sys.stdout is pipe  # restored after the run
    assert code == expected
    assert (out / "metrics.json").is_file()  # the work was done despite the closed pipe
    assert pipe.attempts == 1  # after the first EPIPE the rest of stdout is dropped
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error" not in err


def test_stdout_guard_drops_output_after_epipe():
    pipe = _ClosedPipe()
    guard = _StdoutGuard(pipe)
    assert guard.write("a") == 1 and guard.write("bc") == 2
    guard.flush()
    assert guard.reader_gone and pipe.attempts == 1
    assert guard.isatty() is False  # everything else is the wrapped stream's


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": ""}


def test_head_c1_is_not_an_error(tmp_path):
    """``compatlm compare ... | head -c1`` as a real process: the reader is gone before the
    first write; the exit is 0 (1 with a failing gate) and stderr stays silent."""
    a, b = _two_files(tmp_path)
    for gate, expected in (([], 0), (["--fail-if", "NFR>0.1"], 1)):
        out = tmp_path / f"out{expected}"
        cmd = [PYTHON, "-m", "compatlm", "compare", a, b, "--out", str(out), "--bootstrap", "0"]
        proc = subprocess.Popen(
            [*cmd, *gate], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
        )
        proc.stdout.close()  # like `head -c1` having read its byte and exited
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == expected, err
        assert "Traceback" not in err and "Exception ignored" not in err
        assert "BrokenPipe" not in err and "error:" not in err
        assert (out / "metrics.json").is_file()


# ---------------------------------------------------------------- devices


def test_unavailable_mps_names_what_is_available(
    small_eval_config,
    tmp_path,
    capsys,
    monkeypatch,
    no_model_loads,
):
    import torch

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    out = tmp_path / "run"
    assert main(["eval", str(small_eval_config), "--out", str(out), "runtime.device=mps"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: runtime.device: 'mps' asked for but MPS is not available")
    assert "(available here: cpu" in err and "\n" not in err
    assert not out.exists()


# ---------------------------------------------------------------- terminal safety


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("plain name é → ✓", "plain name é → ✓"),
        ("\x1b[32mgate passed\x1b[0m", "\\x1b[32mgate passed\\x1b[0m"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("a\x9bb\x7fc", "a\\x9bb\\x7fc"),
        ("abc\u202efed", "abc\\u202efed"),
        ("x\u2066y\u2069", "x\\u2066y\\u2069"),
        ("one\ntwo\rthree\ttab", "one\\ntwo\\rthree\\ttab"),
        ("lone \ud800", "lone \\ud800"),
    ],
)
def test_printable(raw, shown):
    assert printable(raw) == shown


def test_errors_and_log_lines_are_escaped():
    err = CompatlmError("file evil\x1b]0;x\x07.jsonl: bad \u202eline")
    assert str(err) == "file evil\\x1b]0;x\\x07.jsonl: bad \\u202eline"
    record = logging.LogRecord("compatlm", logging.INFO, "f", 1, "task %s", ("t\x1b[2J",), None)
    assert _SafeFormatter("%(message)s").format(record) == "task t\\x1b[2J"


def test_compare_prints_names_escaped(tmp_path, capsys):
    evil = "evil\x1b]0;gate passed\x07\u202e"
    a, b = _two_files(tmp_path, task=evil)
    assert main(["compare", a, b, "--out", str(tmp_path / "out"), "--bootstrap", "0"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert "evil\\x1b" in captured.out  # shown escaped (the table may wrap the rest)


def test_validate_output_is_escaped(small_eval_config, capsys):
    code = main(["validate", str(small_eval_config), "tasks.0.stop=[x\u202eevil]"])
    out = capsys.readouterr().out
    assert code == 0 and "\u202e" not in out and "x\\u202eevil" in out


def test_gate_failure_lines_are_escaped(tmp_path, capsys):
    a, b = _two_files(tmp_path, task="t\x1b[1A")
    code = main(
        ["compare", a, b, "--out", str(tmp_path / "o"), "--bootstrap", "0", "--fail-if", "NFR>0.1"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "\x1b" not in err and "t\\x1b[1A" in err


# ---------------------------------------------------------------- quiet stderr


def _warning_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "warn" in ln.lower() or ".py:" in ln]


def test_successful_runs_print_no_library_warnings(tmp_path, small_eval_config):
    """Real processes (import-time warnings only show there): compare and a small eval."""
    a, b = _two_files(tmp_path)
    runs = [
        ["compare", a, b, "--out", str(tmp_path / "cmp"), "--bootstrap", "0"],
        ["eval", str(small_eval_config), "--out", str(tmp_path / "eval")],
    ]
    for argv in runs:
        res = subprocess.run(
            [PYTHON, "-m", "compatlm", *argv],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        assert not _warning_lines(res.stderr), res.stderr
        assert "WARNING" not in res.stdout, res.stdout  # DeepSpeed logs to stdout


def test_deepspeed_import_chatter_is_silenced():
    """DeepSpeed logs "Setting accelerator to CPU" to *stdout* when imported (which compatlm
    does lazily, after its logging set-up); a spec printed on stdout must stay the only line."""
    pytest.importorskip("deepspeed")
    code = "from compatlm.cli import _setup_logging; _setup_logging(0, False); import deepspeed"
    res = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and not _warning_lines(res.stderr), res.stdout + res.stderr
