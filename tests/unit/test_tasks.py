"""Task loading: strict local JSONL, hub-schema loaders on local files, defaults, similarity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compatlm.config import TaskConfig
from compatlm.errors import CompatlmError
from compatlm.tasks import GenExample, MCExample, resolve_task, similarity
from compatlm.tasks.local import load_local_jsonl
from compatlm.tasks.registry import check_task_config

MC_OK = {"id": "q1", "context": "The sky is", "choices": ["blue", "green"], "label": 0}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------- local JSONL


def test_local_mc_and_generation(tmp_path):
    f = write_jsonl(tmp_path / "mc.jsonl", [MC_OK, {**MC_OK, "id": 2, "label": 1, "slice": "x"}])
    kind, examples = load_local_jsonl(f)
    assert kind == "multiple_choice"
    assert examples == [
        MCExample("q1", "The sky is", ("blue", "green"), 0),
        MCExample("2", "The sky is", ("blue", "green"), 1, "x"),
    ]
    g = write_jsonl(tmp_path / "g.jsonl", [{"id": "g1", "prompt": "2+2=", "reference": "4"}])
    assert load_local_jsonl(g) == ("generation", [GenExample("g1", "2+2=", "4")])


def test_a_split_given_with_a_local_jsonl_is_not_silently_ignored(tmp_path, caplog):
    f = write_jsonl(tmp_path / "mc.jsonl", [MC_OK])
    for check in (resolve_task, check_task_config):
        caplog.clear()
        with caplog.at_level("WARNING", logger="compatlm.tasks.registry"):
            check(TaskConfig(name="t", path=str(f), split="validation"), "tasks[0]")
        assert "tasks[0].split: 'validation' selects nothing" in caplog.text
        assert str(f) in caplog.text


@pytest.mark.parametrize(
    ("name", "split"),
    [("mc.jsonl", None), ("validation.jsonl", "validation"), ("data/test-0000.jsonl", "test")],
)
def test_no_split_warning_when_none_is_given_or_the_file_is_that_split(
    tmp_path, caplog, name, split
):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    f = write_jsonl(tmp_path / name, [MC_OK])
    with caplog.at_level("WARNING", logger="compatlm.tasks.registry"):
        task = resolve_task(TaskConfig(name="t", path=str(f), split=split), "tasks[0]")
    assert "split" not in caplog.text
    assert task.split == (split or "test")


def test_split_in_path_matches_whole_words_only():
    from compatlm.tasks.registry import split_in_path

    assert split_in_path("d/validation.jsonl", "validation")
    assert split_in_path("d/test/part.jsonl", "test")
    assert not split_in_path("d/contest.jsonl", "test")
    assert not split_in_path("d/testing.jsonl", "test")


def test_training_reads_a_local_file_whole_without_a_split_warning(tmp_path, caplog):
    from compatlm.train.data import load_task

    f = write_jsonl(tmp_path / "mine.jsonl", [MC_OK])
    with caplog.at_level("WARNING", logger="compatlm.tasks.registry"):
        task = load_task(TaskConfig(name="t", path=str(f)))
    assert "split" not in caplog.text
    assert task.split == "train" and len(task.examples) == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({**MC_OK, "label": 2}, r"mc\.jsonl:2: field 'label': out of range: 2 .*expected 0\.\.1"),
        ({**MC_OK, "label": True}, r":2: field 'label': expected an integer"),
        ({**MC_OK, "label": "0"}, r":2: field 'label': expected an integer"),
        ({**MC_OK, "choices": []}, r":2: field 'choices': expected at least 2 choices, found 0"),
        ({**MC_OK, "choices": "blue"}, r":2: field 'choices': expected a list of strings"),
        ({**MC_OK, "choices": ["a", 3]}, r":2: field 'choices\[1\]': expected a string, found int"),
        ({**MC_OK, "context": None}, r":2: field 'context': expected a string, found null"),
        ({k: v for k, v in MC_OK.items() if k != "label"}, r":2: field 'label': missing required"),
        ({**MC_OK, "lable": 0}, r":2: field 'lable': unknown field .*valid fields: id, context"),
        ({**MC_OK, "slice": 3}, r":2: field 'slice': expected a string or null"),
        ({**MC_OK, "id": ""}, r":2: field 'id': must not be empty"),
        ({**MC_OK, "id": "q1"}, r":2: field 'id': duplicate id 'q1' \(first seen on line 1\)"),
    ],
)
def test_local_mc_errors_name_file_line_field(tmp_path, row, message):
    f = write_jsonl(tmp_path / "mc.jsonl", [MC_OK, row])
    with pytest.raises(CompatlmError, match=message) as err:
        load_local_jsonl(f)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(str(f))


def test_local_generation_errors(tmp_path):
    f = write_jsonl(tmp_path / "g.jsonl", [{"id": "g", "prompt": "p", "reference": 4}])
    with pytest.raises(CompatlmError, match=r"g\.jsonl:1: field 'reference': expected a string"):
        load_local_jsonl(f)
    f = write_jsonl(tmp_path / "g.jsonl", [{"id": "g", "prompt": "p"}])
    with pytest.raises(CompatlmError, match=r":1: field 'reference': missing required"):
        load_local_jsonl(f, "generation")
    f = write_jsonl(tmp_path / "x.jsonl", [{"id": "g", "text": "p"}])
    with pytest.raises(CompatlmError, match=r"x\.jsonl:1: cannot tell the task kind"):
        load_local_jsonl(f)
    (tmp_path / "bad.jsonl").write_text('{"id": "g", "prompt": "p", "reference": "r"}\n{oops\n')
    with pytest.raises(CompatlmError, match=r"bad\.jsonl:2: malformed JSON"):
        load_local_jsonl(tmp_path / "bad.jsonl")


# ---------------------------------------------------------------- hub-schema loaders


def test_hellaswag_from_parquet_directory(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "ind": 24,
            "activity_label": "Roof shingle removal",
            "ctx_a": "A man is on a roof.",
            "ctx_b": "then the Man",
            "endings": ["is here.", "[step] sits.", "a", "b"],
            "label": "3",
            "source_id": "activitynet~v_x",
        },
        {
            "ind": 7,
            "activity_label": "Home and Garden",
            "ctx_a": "[header] How to clean a sink [title] Use vinegar.",
            "ctx_b": "",
            "endings": ["x", "y", "z", "w"],
            "label": "0",
            "source_id": "wikihow~123",
        },
    ]
    (tmp_path / "data").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows), tmp_path / "data" / "validation-00000-of-00001.parquet"
    )
    pq.write_table(
        pa.Table.from_pylist(rows[:1]), tmp_path / "data" / "train-00000-of-00001.parquet"
    )
    task = resolve_task(TaskConfig(name="hellaswag", path=str(tmp_path)))
    assert (task.kind, task.metric, task.split) == ("multiple_choice", "acc_norm", "validation")
    a, b = task.examples
    assert a == MCExample(
        "24",
        "Roof shingle removal: A man is on a roof. Then the man",
        ("is here.", " sits.", "a", "b"),
        3,
        "activitynet",
        "activitynet~v_x",
    )  # " sits.": lm-eval strips before removing "[step]", so the space stays
    assert b.context == "Home and Garden: How to clean a sink. Use vinegar."
    assert (b.id, b.label, b.slice) == ("7", 0, "wikihow")


def test_piqa_gsm8k_samsum_from_files(tmp_path):
    piqa = write_jsonl(
        tmp_path / "validation.jsonl",
        [{"goal": "Open a jar", "sol1": "twist the lid", "sol2": "cut it", "label": 0}],
    )
    task = resolve_task(TaskConfig(name="piqa", path=str(piqa)))
    assert task.examples == (
        MCExample("0", "Question: Open a jar\nAnswer:", ("twist the lid", "cut it"), 0),
    )
    gsm = tmp_path / "gsm.json"
    gsm.write_text(json.dumps([{"question": "3+4?", "answer": "3+4=7\n#### 7"}]))
    task = resolve_task(TaskConfig(name="gsm8k", path=str(gsm)))
    assert task.examples == (GenExample("0", "Question: 3+4?\nAnswer:", "7"),)
    assert (task.metric, task.extract, task.max_new_tokens) == ("exact_match", "gsm8k", 256)
    assert task.stop == ("Question:", "</s>", "<|im_end|>")
    sam = write_jsonl(
        tmp_path / "sam.jsonl",
        [{"id": "13818513", "dialogue": "Ana: hi", "summary": "Ana says hi."}],
    )
    task = resolve_task(TaskConfig(name="samsum", path=str(sam), pass_threshold=0.3))
    assert task.examples == (GenExample("13818513", "Dialogue: Ana: hi\nSummary:", "Ana says hi."),)
    assert (task.metric, task.pass_threshold, task.stop) == (
        "rouge1",
        0.3,
        ("Dialogue:", "Summary:", "\n\n"),
    )


def test_hub_schema_errors(tmp_path):
    piqa = write_jsonl(tmp_path / "p.jsonl", [{"goal": "g", "sol1": "a", "label": 0}])
    with pytest.raises(CompatlmError, match=r"p\.jsonl: row 0: field 'sol2': missing"):
        resolve_task(TaskConfig(name="piqa", path=str(piqa)))
    hs = write_jsonl(
        tmp_path / "h.jsonl",
        [{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["x", "y"], "label": ""}],
    )
    with pytest.raises(CompatlmError, match=r"field 'label'.*use split validation"):
        resolve_task(TaskConfig(name="hellaswag", path=str(hs)))
    (tmp_path / "d").mkdir()
    write_jsonl(tmp_path / "d" / "train.jsonl", [{"x": 1}])
    write_jsonl(tmp_path / "d" / "other.jsonl", [{"x": 1}])
    with pytest.raises(CompatlmError, match=r"no data file for split 'validation'"):
        resolve_task(TaskConfig(name="piqa", path=str(tmp_path / "d")))


# ---------------------------------------------------------------- resolution and defaults


def test_demo_and_custom_task_defaults(tmp_path):
    g = write_jsonl(
        tmp_path / "g.jsonl", [{"id": i, "prompt": "p", "reference": "r"} for i in range(5)]
    )
    gsm = resolve_task(TaskConfig(name="demo_gsm8k", path=str(g), limit=2))
    assert (gsm.metric, gsm.extract, len(gsm.examples)) == ("exact_match", "gsm8k", 2)
    sam = resolve_task(TaskConfig(name="demo_samsum", path=str(g)))
    assert (sam.metric, sam.pass_threshold, sam.stop) == (
        "rouge1",
        0.5,
        ("Dialogue:", "Summary:", "\n\n"),
    )
    custom = resolve_task(TaskConfig(name="my_task", path=str(g), kind="generation"))
    assert (custom.metric, custom.extract, custom.stop) == ("exact_match", "none", ())
    mc = write_jsonl(tmp_path / "mc.jsonl", [MC_OK])
    assert resolve_task(TaskConfig(name="anything", path=str(mc))).metric == "acc"
    assert resolve_task(TaskConfig(name="demo_hellaswag", path=str(mc))).metric == "acc_norm"


def test_resolution_errors(tmp_path):
    mc = write_jsonl(tmp_path / "mc.jsonl", [MC_OK])
    with pytest.raises(CompatlmError, match=r"tasks\[1\]\.name: 'nope' is not a built-in task"):
        resolve_task(TaskConfig(name="nope"), "tasks[1]")
    with pytest.raises(CompatlmError, match=r"task\.path: task 'demo_piqa' is a local file"):
        resolve_task(TaskConfig(name="demo_piqa"))
    with pytest.raises(CompatlmError, match=r"task\.kind: task 'demo_gsm8k' is generation"):
        resolve_task(TaskConfig(name="demo_gsm8k", path=str(mc), kind="multiple_choice"))
    with pytest.raises(CompatlmError, match=r"task\.metric: 'rouge1' is not a multiple-choice"):
        resolve_task(TaskConfig(name="x", path=str(mc), metric="rouge1"))
    with pytest.raises(
        CompatlmError,
        match=r"g\.jsonl:1: field 'context': missing required field for multiple_choice",
    ):
        g = write_jsonl(tmp_path / "g.jsonl", [{"id": "a", "prompt": "p", "reference": "r"}])
        resolve_task(TaskConfig(name="demo_piqa", path=str(g)))
    with pytest.raises(CompatlmError, match=r"task\.metric: unknown generation metric 'bleu'"):
        check_task_config(TaskConfig(name="gsm8k", metric="bleu"))
    with pytest.raises(CompatlmError, match=r"task\.path: /nonexistent.jsonl does not exist"):
        check_task_config(TaskConfig(name="x", path="/nonexistent.jsonl"))
    hub = check_task_config(TaskConfig(name="gsm8k"))  # hub task: checked, nothing downloaded
    assert (hub["source"], hub["split"], hub["n_examples"], hub["extract"]) == (
        "hf:gsm8k",
        "test",
        None,
        "gsm8k",
    )
    assert check_task_config(TaskConfig(name="hellaswag"))["split"] == "validation"


def test_similarity_scores():
    # rouge1 F1 of 3 shared unigrams: P = 3/3, R = 3/4 -> 6/7
    assert similarity("rouge1", "ana greets ben", "Ana greets Ben today") == pytest.approx(6 / 7)
    assert similarity("rouge1", "", "Ana greets Ben") == 0.0
    # rouge2: bigrams (ana greets) shared of 2 pred / 3 ref -> P=1/2, R=1/3, F=0.4
    assert similarity("rouge2", "ana greets ann", "ana greets ben today") == pytest.approx(0.4)
    with pytest.raises(CompatlmError, match="not a similarity metric"):
        similarity("exact_match", "a", "a")
