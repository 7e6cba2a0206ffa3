"""compare_sets with the sides' tokenizer fingerprints: prompt hashes are not compared across
tokenizers, example hashes are (and must all be there), and the comparison says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compatlm.config import CompareConfig
from compatlm.errors import CompatlmError
from compatlm.eval.compare import compare_sets
from compatlm.eval.records import load_predictions
from helpers import prediction_line

CFG = CompareConfig(bootstrap=0)
OLD_PARSED = [0, 0, 0, 0, 0, 0, 0, 1, 2, 3]  # old right on 0-6
NEW_PARSED = [0, 0, 0, 0, 1, 2, 1, 0, 2, 1]  # new right on 0-3 and 7: 3 negative flips


def pair_files(tmp_path: Path, new_over: dict | None = None) -> tuple[Path, Path]:
    paths = []
    for role, parsed, over in (("old", OLD_PARSED, {}), ("new", NEW_PARSED, new_over or {})):
        path = tmp_path / f"{role}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [prediction_line(i, role, p, **over.get(i, {})) for i, p in enumerate(parsed)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(path)
    return paths[0], paths[1]


DIFFERENT_PROMPTS = {i: {"prompt_hash": f"q{i}"} for i in range(10)}  # other token ids


def test_different_tokenizers_compare_on_example_hashes(tmp_path):
    a, b = pair_files(tmp_path, new_over=DIFFERENT_PROMPTS)
    old, new = load_predictions(a, role="old"), load_predictions(b, role="new")
    with pytest.raises(CompatlmError, match="prompt_hash differs on 10 of 10"):
        compare_sets(old, new, CFG)  # fingerprints unknown: refused as before
    c = compare_sets(old, new, CFG, tokenizers=("fp_old", "fp_new"))
    note = "skipped: tokenizers differ (old fp_old vs new fp_new); example hashes verified on 10 instances"
    assert c.prompt_hash_check == note
    assert c.to_json()["prompt_hash_check"] == note
    assert any(note in w for w in c.warnings)
    assert (
        c.counts
        == compare_sets(old, new, CFG.model_copy(update={"allow_prompt_mismatch": True})).counts
    )


def test_same_tokenizer_still_checks_prompts_and_states_nothing(tmp_path):
    a, b = pair_files(tmp_path, new_over={2: {"prompt_hash": "q2"}})
    old, new = load_predictions(a), load_predictions(b)
    with pytest.raises(CompatlmError, match="prompt_hash differs on 1 of 10"):
        compare_sets(old, new, CFG, tokenizers=("fp", "fp"))
    same = compare_sets(
        *map(load_predictions, pair_files(tmp_path / "ok")), CFG, tokenizers=("fp", "fp")
    )
    assert same.prompt_hash_check is None and "prompt_hash_check" not in same.to_json()


def test_different_tokenizers_still_need_every_example_hash(tmp_path):
    over = {**DIFFERENT_PROMPTS, 3: {"prompt_hash": "q3", "example_hash": "zzz"}}
    a, b = pair_files(tmp_path, new_over=over)
    with pytest.raises(CompatlmError, match="example 'ex3' differs between the files"):
        compare_sets(load_predictions(a), load_predictions(b), CFG, tokenizers=("x", "y"))
    # an example hash missing on one side proves nothing: the prompt check applies again
    over = {**DIFFERENT_PROMPTS, 3: {"prompt_hash": "q3", "example_hash": None}}
    a, b = pair_files(tmp_path / "missing", new_over=over)
    with pytest.raises(CompatlmError, match="prompt_hash differs on 10 of 10"):
        compare_sets(load_predictions(a), load_predictions(b), CFG, tokenizers=("x", "y"))
