"""Bad-input corpus of ``compatlm sweep``: every mistake is exit code 2 with ONE ``error:`` line,
found before any candidate is built or any model is loaded.

Same contract as ``test_bad_inputs.py``: each case runs ``compatlm.cli.main`` in-process on a
template of ``tests/reliability/corpus/sweep/`` (``${old}`` etc. filled with the tiny family's
paths, ``${sweep}`` with the corpus folder) plus overrides that break one thing; stderr is
exactly one line starting with ``error: `` and containing the case's substrings, no traceback,
``--out`` never created. Model weights must not be loaded (``load_base`` is a trap) and no
candidate may be built (every registry method's ``build`` is a trap): a selection split that is
missing or has no labels must fail before any training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

import pytest
from contract import refused, templated

SWEEP = Path(__file__).parent / "corpus" / "sweep"


@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # shell-like, templated with ${cfg} ${sweep} ${out} and the tiny family's paths
    expect: tuple[str, ...]  # substrings of the one error line


GOOD = "sweep ${cfg}/good.yaml --out ${out}"
LEGACY = "sweep ${cfg}/legacy.yaml --out ${out}"
TASKS = "${sweep}/tasks"

CASES = [
    # ---- the selection split: missing, unlabelled, not a split ------------------------------
    Case("split-missing", f"{GOOD} task.path={TASKS}/no_validation", ("select.split 'validation'", "no_validation", "no data file for this split", "test.jsonl")),
    Case("split-unlabelled", f"{GOOD} task.path={TASKS}/unlabelled", ("select.split 'validation'", "unlabelled/validation.jsonl", "has no labels", "line 1", "'label'")),
    Case("split-unknown-name", f"{GOOD} select.split=dev", ("select.split 'dev'", "tasks/ok", "no data file")),
    Case("split-template-missing", f"{GOOD} 'task.path={TASKS}/ok/{{split}}_x.jsonl'", ("select.split 'validation'", "validation_x.jsonl", "does not exist")),
    Case("split-one-file", f"{GOOD} task.path={TASKS}/one_file.jsonl", ("task.path", "one_file.jsonl", "holds no split 'validation'")),
    Case("split-task-path-missing", f"{GOOD} task.path={TASKS}/nope", ("task.path", "nope", "does not exist")),
    Case("split-task-split-set", f"{GOOD} task.split=train", ("task.split", "'train'", "select.split")),
    Case("test-split-missing", f"{GOOD} select.test_split=final", ("select.test_split 'final'", "no data file")),
    Case("test-split-is-selection", f"{GOOD} select.test_split=validation", ("select", "test_split 'validation' is the selection split")),
    # ---- the select section ------------------------------------------------------------------
    Case("select-unknown-key", f"{GOOD} select.floor=-0.5", ("unknown key 'select.floor'", "accuracy_floor")),
    Case("select-bad-metric", f"{GOOD} select.metric=nfr", ("'select.metric'", "'nfr'")),
    Case("select-floor-range", f"{GOOD} select.accuracy_floor=-500", ("'select.accuracy_floor'", "-500")),
    Case("select-without-task", f"{LEGACY} select.split=validation", ("either task + select",)),
    Case("forms-mixed", f"{GOOD} validation.name=toy validation.path={TASKS}/ok/validation.jsonl", ("either task + select",)),
    # ---- grid and control --------------------------------------------------------------------
    Case("grid-unknown-knob", f"{GOOD} knob=beta", ("unknown key 'beta'",)),
    Case("grid-and-knob", f"{GOOD} 'grid={{alpha: [0.5]}}'", ("either knob + values or grid",)),
    Case("grid-bad-value", f"{GOOD} 'values=[0.5, 1.5]'", ("alpha=1.5", "[0, 1]")),
    Case("control-two-sources", f"{GOOD} control.method=continue_ce control.spec=${{new}}", ("control", "exactly one of method")),
    Case("control-unknown-method", f"{GOOD} control.method=nope", ("control.method", "unknown method 'nope'")),
    Case("control-predictions-method", f"{GOOD} control.method=rerank", ("control.method", "'rerank' produces predictions", "compatlm rerank")),
    Case("method-predictions", f"{GOOD} method=rerank", ("method 'rerank' produces predictions", "compatlm rerank")),
    Case("control-missing-spec", f"{GOOD} control.spec=${{new}}+{TASKS}/nope", ("control.spec", "nope")),
    Case("control-name-clash", f"{GOOD} control.spec=${{new}} control.name=alpha_0.0", ("control.name", "'alpha_0.0'")),
    # ---- models (checked before anything is built) --------------------------------------------
    Case("old-adapter-other-size", f"{GOOD} config.old=${{old}}+${{wide_adapter}}", ("old:", "wide_adapter", "another size")),
    # ---- the original validation/test form ---------------------------------------------------
    Case("legacy-same-file", f"{LEGACY} test.path={TASKS}/ok/validation.jsonl", ("validation:", "same data", "validation.jsonl")),
    Case("legacy-unlabelled", f"{LEGACY} validation.path={TASKS}/unlabelled/validation.jsonl", ("validation: task file", "unlabelled/validation.jsonl", "has no labels")),
    Case("legacy-test-missing", f"{LEGACY} test.path={TASKS}/ok/nope.jsonl", ("test: task file", "nope.jsonl", "does not exist")),
]  # fmt: skip


@pytest.fixture(scope="module")
def places(tiny_family, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_sweep")
    values = {k: str(v) for k, v in tiny_family.items()} | {"sweep": str(SWEEP)}
    cfg = root / "configs"
    cfg.mkdir()
    for src in SWEEP.glob("*.yaml"):
        (cfg / src.name).write_text(Template(src.read_text()).substitute(values))
    return values | {"cfg": str(cfg)}


def test_corpus_is_distinct():
    assert len({c.id for c in CASES}) == len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_sweep_input(case: Case, places, tmp_path, capsys, nothing_built):
    out = tmp_path / "out"
    refused(templated(case.argv, places, out), capsys, case.expect, out=out)


def test_the_good_config_passes_every_check(places):
    """The template itself is valid: each case fails because of its one override."""
    from compatlm.config import load_config
    from compatlm.methods.sweep import plan_sweep
    from compatlm.methods.sweep_config import SweepConfig

    for name in ("good.yaml", "legacy.yaml"):
        plan = plan_sweep(load_config(SweepConfig, Path(places["cfg"]) / name))
        assert [n for n, *_ in plan.grid] == ["alpha_0.0", "alpha_1.0"]
        assert plan.val_task.path is not None and plan.val_task.path.endswith("validation.jsonl")
