"""Bad-input cases of the compatibility recipes and their same-budget controls, in the style of
``test_bad_inputs.py``: exit code 2, ONE ``error: ...`` line naming the mistake, no traceback,
no model weights loaded and ``--out`` never created."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

import pytest
from contract import refused, templated

CORPUS = Path(__file__).parent / "corpus"

# A valid `compatlm train compat` config; each case breaks it with overrides.
COMPAT = """\
old: ${old}+${old_adapter}
new: ${new}+${new_adapter}
task: {name: tiny_mc, path: ${corpus}/tasks/good_mc.jsonl}
optim: {epochs: 1, batch_size: 2}
runtime: {device: cpu, progress: false}
"""


@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # shell-like, templated with ${compat} ${out}
    expect: tuple[str, ...]  # substrings of the one error line


CASES = [
    Case("compat-new-only-focal", "train compat ${compat} --out ${out} mask=new_only focal.alpha=1", ("focal weights need teacher_old", "'new_only'")),
    Case("compat-unknown-mask", "train compat ${compat} --out ${out} mask=old_wrong", ("'mask'", "'new_only'", "'old_wrong'")),
    Case("control-kd-new-without-kd", "train compat ${compat} --out ${out} --control kd_new kd_weight=0", ("kd_new: kd_weight is 0", "continue_ce")),
    Case("build-kd-new-without-kd", "build kd_new ${compat} --out ${out} kd_weight=0", ("kd_new: kd_weight is 0",)),
    Case("build-control-wrong-config", "build continue_ce ${compat} --out ${out} alpha=0.5", ("unknown key 'alpha'",)),
]  # fmt: skip


@pytest.fixture(scope="module")
def places(tiny_family, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_train_inputs")
    values = {k: str(v) for k, v in tiny_family.items()} | {"corpus": str(CORPUS)}
    compat = root / "compat.yaml"
    compat.write_text(Template(COMPAT).substitute(values))
    return {**values, "compat": str(compat)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_train_input(case: Case, places, tmp_path, capsys, no_model_loads):
    out = tmp_path / "out"
    refused(templated(case.argv, places, out), capsys, case.expect, out=out)
