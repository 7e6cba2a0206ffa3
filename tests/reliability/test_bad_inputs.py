"""Bad-input corpus: every user mistake is exit code 2 with ONE ``error: ...`` line naming it.

Each case runs ``compatlm.cli.main`` in-process on a file of ``tests/reliability/corpus/``
(configs are templates: ``${old}`` etc. are filled with the tiny family's paths) and checks the
CLI contract: exit code 2, stderr is exactly one line starting with ``error: `` that contains the
case's distinctive substrings (file, line, field), no traceback anywhere, and ``--out`` was never
created (nothing partial). Model weights must never be loaded for a bad input: ``load_base`` is
replaced by a trap, so a check that only fires after loading a model fails here (validate early).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from string import Template

import pytest
import torch
from contract import refused, templated

from compatlm.cli import main

CORPUS = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # shell-like, templated with ${preds} ${lmeval} ${tasks} ${cfg} ${out} ...
    expect: tuple[str, ...]  # substrings of the one error line


GOOD_CFG = "${cfg}/good.yaml"
EVAL = f"eval {GOOD_CFG} --out ${{out}}"
OLD = "${preds}/good_old.jsonl"
LM = "${lmeval}/samples_piqa_2024-05-01T12-00-00.000.jsonl"


def cmp(new: str) -> str:
    return f"compare {OLD} ${{preds}}/{new} --out ${{out}} --bootstrap 0"


CASES = [
    # ---- prediction files (compare) --------------------------------------------------------
    Case("pred-truncated", cmp("truncated.jsonl"), ("truncated.jsonl:3", "malformed JSON")),
    Case("pred-wrong-type", cmp("wrong_type.jsonl"), ("wrong_type.jsonl:2", "'correct'", "'yes'")),
    Case("pred-nan-score", cmp("nan_score.jsonl"), ("nan_score.jsonl:2", "NaN")),
    Case("pred-score-above-one", cmp("score_above_one.jsonl"), ("score_above_one.jsonl:3", "'score'", "1.5")),
    Case("pred-duplicate-ids", cmp("duplicate_ids.jsonl"), ("duplicate_ids.jsonl:3", "duplicate example_id '1'", "line 2")),
    Case("pred-missing-id", cmp("missing_id.jsonl"), ("missing_id.jsonl:2", "'example_id'", "missing")),
    Case("pred-missing-correct", cmp("missing_correct.jsonl"), ("missing_correct.jsonl:3", "'correct'", "missing")),
    Case("pred-v1-missing-key", cmp("v1_missing_key.jsonl"), ("v1_missing_key.jsonl:1", "'prompt_hash'", "schema_version is 1")),
    Case("pred-mixed-tasks", cmp("mixed_tasks.jsonl"), ("mixed_tasks.jsonl:2", "mixed tasks", "'other_task'")),
    Case("pred-mixed-versioned", cmp("mixed_versioned.jsonl"), ("mixed_versioned.jsonl:2", "mixes compatlm lines")),
    Case("pred-non-utf8", cmp("non_utf8.jsonl"), ("non_utf8.jsonl:2", "not valid UTF-8")),
    Case("pred-empty", cmp("empty.jsonl"), ("empty.jsonl", "empty")),
    Case("pred-not-object", cmp("not_object.jsonl"), ("not_object.jsonl:2", "expected a JSON object", "list")),
    Case("pred-unknown-field", cmp("unknown_field.jsonl"), ("unknown_field.jsonl:1", "'confidence'", "unknown field")),
    Case("pred-schema-v2", cmp("schema_v2.jsonl"), ("schema_v2.jsonl:1", "schema_version 1", "2")),
    Case("pred-margin-type", cmp("margin_wrong_type.jsonl"), ("margin_wrong_type.jsonl:1", "'margin'", "'big'")),
    Case("pred-missing-file", cmp("no_such_file.jsonl"), ("no_such_file.jsonl", "file not found")),
    Case("pred-directory", f"compare {OLD} ${{preds}} --out ${{out}}", ("preds", "not a file")),
    Case("pred-no-common-ids", cmp("other_ids.jsonl"), ("no example_id in common", "other_ids.jsonl")),
    Case("pred-hash-mismatch", cmp("hash_mismatch.jsonl"), ("example '1'", "example_hash", "hash_mismatch.jsonl:2")),
    Case("pred-prompt-mismatch", cmp("prompt_mismatch.jsonl"), ("prompt_hash differs", "'1'", "--allow-prompt-mismatch")),
    Case("pred-target-differs", cmp("target_differs.jsonl"), ("target differs", "'1'")),
    Case("pred-kind-differs", cmp("generation.jsonl"), ("cannot compare multiple_choice", "generation.jsonl")),
    Case("pred-huge-line", "compare ${huge} ${huge} --out ${out}", ("huge.jsonl:2", "malformed JSON")),
    Case("pred-inf-loglikelihood", cmp("inf_loglikelihood.jsonl"), ("inf_loglikelihood.jsonl:2", "'loglikelihoods'", "finite", "-inf")),
    Case("pred-group-wrong-type", cmp("group_wrong_type.jsonl"), ("group_wrong_type.jsonl:2", "'group'", "1.5 (float)")),
    Case("pred-group-mixed", cmp("group_mixed.jsonl"), ("group_mixed.jsonl:3", "'group'", "no group", "line 1")),
    Case("pred-group-differs", "compare ${preds}/grouped_old.jsonl ${preds}/group_differs.jsonl --out ${out} --bootstrap 0", ("example '1'", "'doc0'", "'doc7'", "group_differs.jsonl:2")),
    # ---- lm-eval --log_samples files -------------------------------------------------------
    Case("lmeval-duplicate-doc", f"compare {LM} ${{lmeval}}/samples_piqa_duplicate_doc.jsonl --out ${{out}}", ("samples_piqa_duplicate_doc.jsonl:3", "duplicate doc_id 1")),
    Case("lmeval-missing-metric", f"compare {LM} ${{lmeval}}/samples_piqa_missing_metric.jsonl --out ${{out}}", ("samples_piqa_missing_metric.jsonl:3", "no per-sample value for metric 'acc'")),
    Case("lmeval-bad-doc-id", f"compare {LM} ${{lmeval}}/samples_piqa_bad_doc_id.jsonl --out ${{out}}", ("samples_piqa_bad_doc_id.jsonl:2", "'doc_id'")),
    Case("lmeval-metric-range", f"compare {LM} ${{lmeval}}/samples_piqa_metric_range.jsonl --out ${{out}}", ("samples_piqa_metric_range.jsonl:2", "'acc'", "[0, 1]")),
    Case("lmeval-truncated", f"compare {LM} ${{lmeval}}/samples_piqa_truncated.jsonl --out ${{out}}", ("samples_piqa_truncated.jsonl:2", "malformed JSON")),
    Case("lmeval-unknown-filter", f"compare {LM} {LM} --out ${{out}} --filter strict-match", ("filter 'strict-match' not in file", "none")),
    Case("lmeval-filter-on-ours", f"{cmp('good_new.jsonl')} --filter strict-match", ("--filter", "lm-eval")),
    Case("lmeval-string-nan", f"compare {LM} ${{lmeval}}/samples_piqa_string_nan.jsonl --out ${{out}}", ("samples_piqa_string_nan.jsonl:2", "'filtered_resps'", "'nan'")),
    # ---- different measurements under the same ids -----------------------------------------
    Case("pred-metric-differs", cmp("metric_acc_norm.jsonl"), ("metric differs", "'acc'", "'acc_norm'", "metric_acc_norm.jsonl", "--allow-metric-mismatch")),
    Case("lmeval-metric-differs", f"compare {LM} ${{lmeval}}/samples_piqa_acc_norm.jsonl --out ${{out}}", ("metric differs", "'acc'", "'acc_norm'", "--allow-metric-mismatch")),
    Case("lmeval-filter-differs", "compare ${lmeval}/filter_none/samples_gsm8k_2024-05-01T12-00-00.000.jsonl ${lmeval}/filter_strict/samples_gsm8k_2024-05-01T12-00-00.000.jsonl --out ${out}", ("filter differs", "'none'", "'strict-match'", "--allow-metric-mismatch")),
    # ---- task JSONL through `compatlm eval` ------------------------------------------------
    Case("task-label-range", f"{EVAL} tasks.0.path=${{tasks}}/label_out_of_range.jsonl", ("label_out_of_range.jsonl:3", "'label'", "out of range")),
    Case("task-empty-choices", f"{EVAL} tasks.0.path=${{tasks}}/empty_choices.jsonl", ("empty_choices.jsonl:2", "'choices'", "at least 2")),
    Case("task-missing-prompt", f"{EVAL} tasks.0.path=${{tasks}}/missing_prompt.jsonl", ("missing_prompt.jsonl:2", "'prompt'", "missing")),
    Case("task-duplicate-ids", f"{EVAL} tasks.0.path=${{tasks}}/duplicate_ids.jsonl", ("duplicate_ids.jsonl:4", "duplicate id 'q1'", "line 2")),
    Case("task-wrong-type", f"{EVAL} tasks.0.path=${{tasks}}/wrong_type.jsonl", ("wrong_type.jsonl:2", "'context'", "int")),
    Case("task-unknown-field", f"{EVAL} tasks.0.path=${{tasks}}/unknown_field.jsonl", ("unknown_field.jsonl:1", "'answer'")),
    Case("task-group-wrong-type", f"{EVAL} tasks.0.path=${{tasks}}/group_wrong_type.jsonl", ("group_wrong_type.jsonl:2", "'group'", "float")),
    Case("task-group-mixed", f"{EVAL} tasks.0.path=${{tasks}}/group_mixed.jsonl", ("group_mixed.jsonl:2", "'group'", "no group", "line 1")),
    Case("task-missing-file", f"{EVAL} tasks.0.path=${{tasks}}/nope.jsonl", ("tasks[0].path", "nope.jsonl", "does not exist")),
    Case("task-bad-metric", f"{EVAL} tasks.0.metric=rouge1", ("tasks[0].metric", "'rouge1'")),
    Case("task-empty-choice-string", f"{EVAL} tasks.0.path=${{tasks}}/empty_choice_string.jsonl", ("empty_choice_string.jsonl:2", "'choices[1]'", "index 1", "empty")),
    Case("task-choice-too-long", f"{EVAL} tasks.0.path=${{tasks}}/long_choice.jsonl", ("task 'tiny_mc'", "example 'q2'", "choice 1", "maximum length 256")),
    Case("task-prompt-too-long", f"{EVAL} tasks.0.path=${{tasks}}/long_prompt.jsonl", ("task 'tiny_mc'", "example 'g1'", "prompt 177 tokens + max_new_tokens 128", "maximum length 256")),
    Case("task-no-room-to-generate", f"{EVAL} tasks.0.path=${{tasks}}/long_prompt.jsonl tasks.0.max_new_tokens=256", ("task 'tiny_mc'", "max_new_tokens 256", "no room", "256")),
    # ---- configs ---------------------------------------------------------------------------
    Case("cfg-unknown-key", "eval ${cfg}/unknown_key.yaml --out ${out}", ("unknown key 'runtime.batchsize'", "batch_size")),
    Case("cfg-wrong-type", "eval ${cfg}/wrong_type.yaml --out ${out}", ("'runtime.batch_size'", "'four'")),
    Case("cfg-bad-yaml", "eval ${cfg}/bad_yaml.yaml --out ${out}", ("bad_yaml.yaml:", "invalid YAML")),
    Case("cfg-empty", "eval ${cfg}/empty.yaml --out ${out}", ("empty.yaml", "empty")),
    Case("cfg-top-list", "eval ${cfg}/top_list.yaml --out ${out}", ("top_list.yaml", "mapping", "list")),
    Case("cfg-missing-file", "eval ${cfg}/nope.yaml --out ${out}", ("nope.yaml", "not found")),
    Case("cfg-unknown-task", "eval ${cfg}/unknown_task.yaml --out ${out}", ("'hellaswagg'", "not a built-in task")),
    Case("cfg-override-no-equals", f"{EVAL} runtime.batch_size", ("override 'runtime.batch_size'", "key=value")),
    Case("cfg-override-bad-index", f"{EVAL} tasks.3.limit=2", ("override 'tasks.3.limit=2'", "1-item list")),
    Case("cfg-override-bad-value", f"{EVAL} runtime.batch_size=0", ("'runtime.batch_size'", "0")),
    Case("cfg-override-unknown", f"{EVAL} runtime.threads=2", ("unknown key 'runtime.threads'",)),
    Case("cfg-override-bad-scoring", f"{EVAL} runtime.scoring=fast", ("'runtime.scoring'", "'fast'", "cached", "full")),
    Case("cfg-bad-fail-if", f"{EVAL} --fail-if nfr>>0.1", ("--fail-if", "nfr>>0.1")),
    Case("cfg-unknown-gate-metric", f"{EVAL} --fail-if negative_flips_rate>0.1", ("--fail-if", "negative_flips_rate")),
    Case("cfg-candidate-named-old", "eval ${cfg}/candidate_name.yaml --out ${out}", ("candidates", "'old'")),
    Case("cfg-task-name-traversal", f"{EVAL} tasks.0.name=../../escaped", ("tasks[0].name", "'../../escaped'", "not file-safe")),
    Case("cfg-task-name-slash", f"{EVAL} tasks.0.name=a/b", ("tasks[0].name", "'a/b'", "not file-safe")),
    Case("cfg-task-name-empty", f"{EVAL} \"tasks.0.name=''\"", ("tasks[0].name", "empty")),
    Case("cfg-candidate-name-case", f"{EVAL} candidates.OLD=${{new}}", ("candidates", "'OLD'", "ignoring case")),
    Case("cfg-compare-options", f"compare {OLD} ${{preds}}/good_new.jsonl --out ${{out}} --config ${{cfg}}/compare_options.yaml", ("compare_options.yaml", "'bootstrap'", "-5")),
    Case("cmp-bad-fail-if", f"{cmp('good_new.jsonl')} --fail-if 'a:b:c:d>1'", ("--fail-if", "a:b:c:d>1")),
    Case("cmp-no-out", f"compare {OLD} ${{preds}}/good_new.jsonl", ("needs --out",)),
    Case("report-no-metrics", "report ${preds}", ("metrics.json", "not found")),
    # ---- model specs -----------------------------------------------------------------------
    Case("spec-two-plus", "eval ${cfg}/spec_two_plus.yaml --out ${out}", ("spec_two_plus.yaml: field 'old': model spec 'a+b+c'", "more than one '+'")),
    Case("spec-empty", "eval ${cfg}/spec_empty.yaml --out ${out}", ("spec_empty.yaml: field 'old': model spec ''", "empty")),
    Case("spec-base-not-a-model", "eval ${cfg}/base_not_a_model.yaml --out ${out}", ("new: base model", "tasks", "no config.json")),
    Case("spec-missing-base", "eval ${cfg}/spec_missing_base.yaml --out ${out}", ("new: base model", "no_such_model", "does not exist")),
    # ---- adapters --------------------------------------------------------------------------
    Case("adapter-no-config", "eval ${cfg}/adapter_no_config.yaml --out ${out}", ("new: adapter", "adapter_no_config", "no adapter_config.json")),
    Case("adapter-other-size", "eval ${cfg}/adapter_wide.yaml --out ${out}", ("new: adapter", "wide_adapter", "another size")),
    Case("adapter-is-file", "eval ${cfg}/adapter_is_file.yaml --out ${out}", ("new: adapter", "good_mc.jsonl", "found a file")),
    Case("adapter-pickle-only", "eval ${cfg}/adapter_pickle.yaml --out ${out}", ("adapter_pickle", "pickle", "allow_pickle")),
    Case("base-pickle-only", "eval ${cfg}/base_pickle.yaml --out ${out}", ("base_pickle", "pickle", "allow_pickle")),
]  # fmt: skip


def _pickle_copy(src: Path, dst: Path, safetensors_name: str, bin_name: str) -> Path:
    """``src`` with its safetensors weights re-saved as a pickle ``.bin`` (and nothing else)."""
    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    torch.save(load_file(str(dst / safetensors_name)), dst / bin_name)
    (dst / safetensors_name).unlink()
    return dst


@pytest.fixture(scope="module")
def places(tiny_family, tmp_path_factory) -> dict[str, str]:
    """Template values: corpus folders, the tiny family, broken model dirs, rendered configs."""
    root = tmp_path_factory.mktemp("bad_inputs")
    fam = {k: str(v) for k, v in tiny_family.items()}
    no_cfg = shutil.copytree(tiny_family["new_adapter"], root / "adapter_no_config")
    (no_cfg / "adapter_config.json").unlink()
    values = {
        **fam,
        "corpus": str(CORPUS),
        "preds": str(CORPUS / "preds"),
        "lmeval": str(CORPUS / "lmeval"),
        "tasks": str(CORPUS / "tasks"),
        "adapter_no_config": str(no_cfg),
        "adapter_pickle": str(
            _pickle_copy(
                tiny_family["new_adapter"],
                root / "adapter_pickle",
                "adapter_model.safetensors",
                "adapter_model.bin",
            )
        ),
        "base_pickle": str(
            _pickle_copy(
                tiny_family["new"], root / "base_pickle", "model.safetensors", "pytorch_model.bin"
            )
        ),
    }
    cfg = root / "configs"
    cfg.mkdir()
    for src in (CORPUS / "configs").glob("*.yaml"):
        (cfg / src.name).write_text(Template(src.read_text()).substitute(values))
    values["cfg"] = str(cfg)
    # A 5 MB line: valid on line 1, cut short on line 2 (a writer killed mid-line).
    huge = root / "huge.jsonl"
    big = json.dumps({"example_id": "0", "correct": True, "output": "x" * 5_000_000})
    huge.write_text(big + "\n" + big[:-2] + "\n")
    values["huge"] = str(huge)
    return values


def test_corpus_is_big_enough():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, places, tmp_path, capsys, no_model_loads):
    out = tmp_path / "out"
    refused(templated(case.argv, places, out), capsys, case.expect, out=out)


def test_huge_valid_line_works(places, tmp_path, capsys):
    """A 5 MB output string is data, not an error: it is compared and escaped into the report."""
    path = tmp_path / "big.jsonl"
    path.write_text(Path(places["huge"]).read_text().splitlines()[0] + "\n")
    out = tmp_path / "out"
    assert main(["compare", str(path), str(path), "--out", str(out), "--bootstrap", "0"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["comparisons"][0]["counts"]["n"] == 1
    assert doc["comparisons"][0]["counts"]["negative_flips"] == 0


def test_library_deprecation_warnings_stay_off_stderr(small_eval_config, tmp_path):
    """peft calls a deprecated transformers method on every adapter load; a CLI user must not
    see that (and an error after a model load must still be the only stderr line)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["-q", "eval", str(small_eval_config), "--out", str(tmp_path / "run")]) == 0
    noisy = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not noisy, [str(w.message) for w in noisy]
