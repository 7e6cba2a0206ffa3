"""What the commands share (cli/common.py): one config loader with one precedence, one
trailing-override recovery, one gate printer."""

from __future__ import annotations

import argparse

import pytest

from compatlm.cli import main
from compatlm.cli.common import load_config, print_gate, recover_overrides
from compatlm.config import CompareConfig, EvalConfig, RuntimeConfig
from compatlm.errors import CompatlmError


def test_load_config_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("batch_size: 4\nseed: 3\ndtype: float32\n")
    cfg = load_config(
        RuntimeConfig,
        path,
        ["seed=5", "dtype=bfloat16"],
        data={"batch_size": 1, "device": "cpu", "seed": 1},  # the in-code layer: lowest
        flags={"dtype": "float16", "batch_size": None},  # None = flag not given
    )
    # data < YAML < overrides < flags, defaults under all of them.
    assert (cfg.device, cfg.batch_size, cfg.seed, cfg.dtype) == ("cpu", 4, 5, "float16")
    assert load_config(RuntimeConfig, None, data={"seed": 2}).seed == 2


def test_load_config_appends_list_flags_and_names_its_source(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("old: a\nnew: b\ntasks: [{name: piqa}]\ncompare:\n  fail_if: [nfr>0.1]\n")
    cfg = load_config(EvalConfig, path, [], append={"compare.fail_if": ["pfr<0.5"]})
    assert cfg.compare.fail_if == ["nfr>0.1", "pfr<0.5"]
    path.write_text("old: a\nnew: b\ntasks: [{name: piqa}]\ncompare:\n")  # an empty section
    cfg = load_config(EvalConfig, path, [], append={"compare.fail_if": ["pfr<0.5"]})
    assert cfg.compare.fail_if == ["pfr<0.5"]
    with pytest.raises(CompatlmError, match=r"^command line: field 'bootstrap'"):
        load_config(CompareConfig, None, flags={"bootstrap": -1}, source="command line")
    with pytest.raises(CompatlmError, match=rf"^{path}: unknown key 'nope'"):
        load_config(EvalConfig, path, ["nope=1"])


def _ns(**kw) -> argparse.Namespace:
    return argparse.Namespace(**kw)


def test_recover_overrides():
    args = _ns(overrides=["a=1"])
    assert recover_overrides(args, ["b=2", "c"]) == [] and args.overrides == ["a=1", "b=2", "c"]
    # An option among the leftovers: everything stays unrecognised (argparse names them all).
    args = _ns(overrides=[])
    assert recover_overrides(args, ["b=2", "--bogus"]) == ["b=2", "--bogus"]
    assert args.overrides == []
    assert recover_overrides(_ns(), ["x=1"]) == ["x=1"]  # a command without overrides
    # A list option that swallowed overrides gives them back, after the trailing ones.
    args = _ns(overrides=["a=1"], tasks=["t1", "k=v", "t2"], override_lists=("tasks",))
    assert recover_overrides(args, ["b=2"]) == []
    assert args.overrides == ["a=1", "b=2", "k=v"] and args.tasks == ["t1", "t2"]


@pytest.mark.parametrize(
    "argv, overrides",
    [
        (["train", "task", "c.yaml", "--out", "o", "a=1", "--resume", "b=2"], ["a=1", "b=2"]),
        (["cache-teacher", "c.yaml", "--out", "o", "topk=8"], ["topk=8"]),
        (["build", "port", "c.yaml", "--out", "o", "alpha=0.5"], ["alpha=0.5"]),
        (["demo", "--tasks", "demo_piqa", "quick=true", "--out", "o", "seeds=[1]"],
         ["seeds=[1]", "quick=true"]),
    ],
)  # fmt: skip
def test_every_command_recovers_trailing_overrides(argv, overrides, monkeypatch):
    from compatlm import cli

    seen = {}

    def capture(args):
        seen.update(vars(args))
        return 0

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for action in parser._subparsers._group_actions[0].choices.values():  # type: ignore[union-attr]
        action.set_defaults(func=capture)
        for sub in action._actions:
            if isinstance(sub, argparse._SubParsersAction):
                for p in sub.choices.values():
                    p.set_defaults(func=capture)
    assert main(argv) == 0
    assert seen["overrides"] == overrides
    if argv[0] == "demo":
        assert seen["tasks"] == ["demo_piqa"]


def _doc(passed: bool) -> dict:
    failures = [] if passed else [{"condition": "nfr>0.1", "message": "t: old_vs_new: 0.2 > 0.1"}]
    return {"gate": {"conditions": ["nfr>0.1", "pfr<1"], "passed": passed, "failures": failures}}


def test_print_gate_wording(capsys):
    assert print_gate(_doc(False), ["nfr>0.1"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "gate failed: nfr>0.1: t: old_vs_new: 0.2 > 0.1\n"
    assert captured.out == ""
    assert print_gate(_doc(True), ["nfr>0.1"]) == 0
    assert capsys.readouterr().err == "gate passed: nfr>0.1; pfr<1\n"
