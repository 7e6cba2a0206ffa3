"""Bad-input cases of the method registry and its commands (``build``, ``methods``, PCT), in the
style of ``test_bad_inputs.py``: exit code 2, ONE ``error: ...`` line naming the mistake, no
traceback, no model weights loaded and ``--out`` never created."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

import pytest
from contract import refused, templated

CORPUS = Path(__file__).parent / "corpus"

# A valid `compatlm build pct` config; each case breaks it (or uses it wrongly).
PCT = """\
old: ${old}+${old_adapter}
new: ${new}+${new_adapter}
task: {name: tiny_mc, path: ${corpus}/tasks/good_mc.jsonl}
optim: {epochs: 1, batch_size: 2}
runtime: {device: cpu, progress: false}
"""
PORT = "old: ${old}+${old_adapter}\nnew: ${new}\n"


@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # shell-like, templated with ${pct} ${port} ${out}
    expect: tuple[str, ...]  # substrings of the one error line


CASES = [
    Case("build-typo-did-you-mean", "build interpolat ${port} --out ${out}", ("unknown method 'interpolat'", "did you mean 'interpolate'?", "valid methods: continue_ce")),
    Case("build-paper-name", "build merge ${port} --out ${out}", ("unknown method 'merge'", "did you mean 'task_arithmetic'?")),
    Case("build-predictions-method", "build rerank ${port} --out ${out}", ("method 'rerank' produces predictions", "`compatlm rerank CONFIG --out DIR`")),
    Case("build-option-after-override", "build port ${port} --out ${out} alpha=1 --alhpa 2", ("unrecognized arguments", "--alhpa 2")),
    Case("pct-muscle-mask", "build pct ${pct} --out ${out} mask=student_wrong", ("pct.yaml: field 'mask'", "PCT distils every token", "'student_wrong'")),
    Case("pct-no-ce", "build pct ${pct} --out ${out} kd_weight=1", ("field 'kd_weight'", "(0, 1)", "1.0")),
    Case("pct-negative-focal", "build pct ${pct} --out ${out} focal.beta=-1", ("field 'focal.beta'", "-1")),
    Case("pct-unknown-key", "build pct ${pct} --out ${out} focal.gamma=2", ("unknown key 'focal.gamma'", "alpha, beta")),
    Case("control-not-a-control", "train compat ${pct} --out ${out} --control pct", ("--control", "invalid choice: 'pct'", "continue_ce")),
    Case("methods-extra-argument", "methods port", ("unrecognized arguments: port",)),
]  # fmt: skip


@pytest.fixture(scope="module")
def places(tiny_family, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_method_inputs")
    values = {k: str(v) for k, v in tiny_family.items()} | {"corpus": str(CORPUS)}
    for name, text in (("pct", PCT), ("port", PORT)):
        (root / f"{name}.yaml").write_text(Template(text).substitute(values))
        values[name] = str(root / f"{name}.yaml")
    return values


def test_corpus_is_distinct():
    assert len({c.id for c in CASES}) == len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_method_input(case: Case, places, tmp_path, capsys, nothing_built):
    out = tmp_path / "out"
    refused(templated(case.argv, places, out), capsys, case.expect, out=out)
