"""The two home-made pieces of ``bench/real_update.py``: the stdlib-docstring task and the
compressed base (the rest of the study is compatlm's own CLI, tested elsewhere), plus the
study's MUSCLE temperature flag and its settings guard on resume.

The task is built from this machine's standard library, so expected values are recomputed from
the harvested docstrings, never hard-coded. The compression runs on a tiny tied-embedding Llama
built here.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from helpers import make_llama, make_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import real_update_task as rt
from real_update_compress import MLP_NAMES, compress_base, low_rank

from compatlm.tasks.local import load_local_jsonl


@pytest.fixture(scope="module")
def docs() -> list[rt.Doc]:
    return rt.harvest()


@pytest.fixture(scope="module")
def built(tmp_path_factory, docs) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("task")
    sizes = {"train": 60, "validation": 30, "test": 400}
    return out, rt.write_task(out, sizes, seed=0)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_split_by_package_and_module(built, docs):
    out, meta = built
    module_of = {d.qualname: d.module for d in docs}
    seen: dict[str, str] = {}
    for split in rt.SPLITS:
        for r in _rows(out / f"{split}.jsonl"):
            for key in (module_of[r["id"]], module_of[r["id"]].split(".")[0]):
                assert seen.setdefault(key, split) == split, f"{key} in {seen[key]} and {split}"
    assert set(seen.values()) == set(rt.SPLITS)
    assert {s: meta["splits"][s]["questions"] for s in rt.SPLITS} == {
        "train": 60,
        "validation": 30,
        "test": 400,
    }


def test_at_least_400_test_groups_one_per_function(built):
    out, meta = built
    rows = _rows(out / "test.jsonl")
    groups = {r["group"] for r in rows}
    assert len(groups) >= 400 and meta["splits"]["test"]["groups"] == len(groups)
    assert all(r["group"] == r["id"] for r in rows)


def test_labels_point_at_the_documented_function(built, docs):
    out, _ = built
    by_name = {d.qualname: d for d in docs}
    for split in rt.SPLITS:
        rows = _rows(out / f"{split}.jsonl")
        for r in rows:
            d = by_name[r["id"]]
            assert r["choices"][r["label"]] == f" {d.name}"
            assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
            module_names = {x.name for x in docs if x.module == d.module}
            assert {c.strip() for c in r["choices"]} <= module_names
            # The answer is not spelled out in the docstring part of the question.
            text = r["context"].split("Docstring: ", 1)[1]
            assert not re.search(rf"(?<![\w.]){re.escape(d.name)}(?!\w)", text), r["id"]
        # compatlm reads the file as a task, with its groups.
        kind, examples = load_local_jsonl(out / f"{split}.jsonl", kind="multiple_choice")
        assert kind == "multiple_choice"
        assert [e.group for e in examples] == [r["group"] for r in rows]
    labels = [r["label"] for r in _rows(out / "test.jsonl")]
    assert len(set(labels)) == 4  # positions are shuffled, not always the first


def test_contexts_fit_the_token_limit(docs):
    count = len  # one "token" per character: the tightest possible limit still holds
    rows = rt.make_rows(docs[:300], count_tokens=count, max_tokens=140)
    assert rows and all(len(r["context"]) <= 140 for r in rows)


def test_task_is_reused_when_the_recipe_matches(built):
    out, meta = built
    before = (out / "test.jsonl").stat().st_mtime_ns
    assert rt.write_task(out, meta["recipe"]["sizes"], seed=0) == meta
    assert (out / "test.jsonl").stat().st_mtime_ns == before


def test_too_few_questions_is_refused(docs):
    rows = rt.make_rows(docs[:50])
    with pytest.raises(ValueError, match="split test"):
        rt.split_rows(rows, sizes={"test": 10_000})


# --------------------------------------------------------------------------- compression


@pytest.fixture(scope="module")
def tiny_tied(tmp_path_factory) -> Path:
    tok = make_tokenizer()
    path = tmp_path_factory.mktemp("tied")
    make_llama(tok, tied=True).save_pretrained(path, safe_serialization=True)  # as SmolLM2
    tok.save_pretrained(path)
    return path


def _state(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()


def test_compressed_base_same_shapes_and_tokenizer_mlp_low_rank(tiny_tied, tmp_path):
    out = compress_base(tiny_tied, tmp_path / "svd4", rank=4)
    old, new = _state(tiny_tied), _state(out)
    assert {k: v.shape for k, v in old.items()} == {k: v.shape for k, v in new.items()}
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (tiny_tied / name).read_bytes()
    cfg_old = json.loads((tiny_tied / "config.json").read_text())
    cfg_new = json.loads((out / "config.json").read_text())
    assert cfg_new["tie_word_embeddings"] is cfg_old["tie_word_embeddings"] is True
    mlp = [k for k in old if any(f"{m}.weight" in k for m in MLP_NAMES)]
    assert len(mlp) == 2 * len(MLP_NAMES)
    for k in old:
        if k in mlp:
            assert torch.linalg.matrix_rank(new[k]).item() <= 4 < torch.linalg.matrix_rank(old[k])
            assert not torch.equal(new[k], old[k])
        else:
            assert torch.equal(new[k], old[k]), k  # attention, norms, embeddings untouched
    doc = json.loads((out / "compression.json").read_text())
    assert doc["recipe"]["rank"] == 4 and doc["matrices"] == len(mlp)


def test_compression_is_cached_and_rebuilt_for_another_recipe(tiny_tied, tmp_path):
    out = compress_base(tiny_tied, tmp_path / "c", rank=8)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert compress_base(tiny_tied, out, rank=8) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    compress_base(tiny_tied, out, rank=2, prune=0.5)
    doc = json.loads((out / "compression.json").read_text())
    assert (doc["recipe"]["rank"], doc["recipe"]["prune"]) == (2, 0.5)
    w = _state(out)["model.layers.0.mlp.up_proj.weight"]
    assert (w == 0).float().mean().item() >= 0.5


def test_low_rank_is_the_best_approximation():
    torch.manual_seed(0)
    w = torch.randn(12, 7)
    approx = low_rank(w, 3)
    s = torch.linalg.svdvals(w)
    # Eckart-Young: the error is the norm of the dropped singular values.
    assert (w - approx).norm().item() == pytest.approx(s[3:].norm().item(), rel=1e-5)


def test_prune_only_keeps_the_rest_and_needs_a_recipe(tiny_tied, tmp_path):
    out = compress_base(tiny_tied, tmp_path / "p", rank=None, prune=0.5)
    old, new = _state(tiny_tied), _state(out)
    for k in old:
        if any(f"{m}.weight" in k for m in MLP_NAMES):
            zeros = new[k] == 0
            assert zeros.float().mean().item() >= 0.5
            # What survives is the large-magnitude half, unchanged.
            assert torch.equal(new[k][~zeros], old[k][~zeros])
            assert old[k][~zeros].abs().min() >= old[k][zeros].abs().max()
        else:
            assert torch.equal(new[k], old[k]), k
    assert json.loads((out / "compression.json").read_text())["recipe"]["method"] == (
        "magnitude_prune_mlp"
    )
    with pytest.raises(ValueError, match="rank"):
        compress_base(tiny_tied, tmp_path / "none", rank=None, prune=0.0)


def test_means_compare_a_method_with_new_over_the_seeds_it_has():
    from real_update_run import means

    def m(nfr: float) -> dict:
        return {
            "accuracy_new": {"value": 0.5},
            "accuracy_old": {"value": 0.6},
            "negative_flip_rate": {"value": nfr},
            "positive_flip_rate": {"value": 0.01},
        }

    # seed 1 has no MUSCLE (nothing passed the floor): new's 0.30 there is not its baseline
    seeds = {
        "0": {"methods": {"new": m(0.10), "muscle": m(0.08)}, "build_seconds": {"muscle": 5}},
        "1": {"methods": {"new": m(0.30)}, "build_seconds": {}},
    }
    out = means(seeds)
    assert out["new"]["nfr"] == 0.2 and out["new"]["seeds"] == 2
    assert out["muscle"]["seeds"] == 1 and out["muscle"]["nfr_change_vs_new_percent"] == -20.0
    assert out["muscle"]["build_seconds"] == 5 and out["old"]["accuracy"] == 0.6


def test_committed_results_name_no_machine_paths():
    from common import REPO, portable

    home = str(Path.home())
    doc = {"a": [f"{REPO}/runs/x", {"b": f"{home}/.cache/c+{REPO}/runs/y"}], "n": 3, "s": "pkg:x"}
    assert portable(doc) == {"a": ["runs/x", {"b": "~/.cache/c+runs/y"}], "n": 3, "s": "pkg:x"}


def test_temperature_flag_reaches_muscle_and_defaults_to_the_committed_run(tmp_path) -> None:
    # The committed results/real_update.json was measured at T = 2: the default must stay 2 so
    # its command still reproduces it, and --temperature must reach the MUSCLE config.
    import real_update as ru
    from real_update_run import Study

    default = ru.parse_args(["--work", str(tmp_path / "a")])
    assert default.temperature == 2.0
    a = ru.parse_args(["--work", str(tmp_path / "b"), "--temperature", "1"])
    study = Study(a)
    assert ru.compat_cfg(study, "old+x", "new+y", seed=0)["temperature"] == 1.0
    study.save()  # what a finished stage does: the settings are on disk from then on
    # A resume with another temperature would mix two studies in one result: refused.
    with pytest.raises(SystemExit, match="temperature"):
        Study(ru.parse_args(["--work", str(tmp_path / "b"), "--temperature", "2"]))
    # More seeds extend the same study (seed k's stages depend on k alone): accepted.
    more = Study(ru.parse_args(["--work", str(tmp_path / "b"), "--temperature", "1", "--seeds", "5"]))  # fmt: skip
    assert more.state["settings"]["seeds"] == 5


def test_below_floor_rebuild_sets_nested_knobs_where_the_sweep_did(tmp_path, monkeypatch):
    # A grid knob may be a dotted path (optim.lr); the rebuild must nest it as the sweep's
    # overrides did, not add a stray top-level "optim.lr" key beside the real optim section.
    import real_update as ru
    from real_update_run import Study

    study = Study(ru.parse_args(["--work", str(tmp_path / "w")]))
    seen: dict = {}
    monkeypatch.setattr(ru, "build", lambda method, cfg, out: seen.update(cfg=cfg) or "s")
    ru.rebuild_muscle(study, "old+x", "new+y", 0, {"mask": "old_correct", "optim.lr": 0.5})
    cfg = seen["cfg"]
    assert cfg["mask"] == "old_correct" and cfg["optim"]["lr"] == 0.5
    assert "optim.lr" not in cfg
    base = ru.compat_cfg(study, "old+x", "new+y", seed=0)
    assert cfg["optim"]["seed"] == base["optim"]["seed"] == 0  # the rest of optim is kept


def test_versus_control_pairs_the_seeds_that_have_both():
    from real_update_versus import versus_control

    def m(nfr: float | None) -> dict:
        return {"negative_flip_rate": {"value": nfr}}

    seeds = {  # new 0.20 / 0.10 / 0.10; seed 2 has no MUSCLE row at all
        "0": {"methods": {"new": m(0.20), "muscle_every_seed": m(0.15), "continue_ce": m(0.18)}},
        "1": {"methods": {"new": m(0.10), "muscle_every_seed": m(0.09), "continue_ce": m(0.08)}},
        "2": {"methods": {"new": m(0.10), "continue_ce": m(0.05)}},
    }
    out = versus_control(seeds)
    per = out["delta_nfr_percent_per_seed"]
    assert per["0"] == {"muscle_every_seed": pytest.approx(-25.0), "continue_ce": pytest.approx(-10.0)}  # fmt: skip
    assert per["2"]["muscle_every_seed"] is None and out["seeds_compared"] == 2
    # MUSCLE − control per seed: −25 − (−10) = −15 and −10 − (−20) = +10
    assert out["difference"]["mean"] == pytest.approx(-2.5)
    assert out["difference"]["n_seeds"] == 2 and out["difference"]["p_value"] is not None
    none = versus_control({"0": {"methods": {"new": m(0.0), "continue_ce": m(0.0)}}})
    assert none["difference"] is None and "NFR_new > 0" in none["reason"]


def test_pooled_versus_control_clusters_questions_over_seeds(tmp_path):
    from real_update_versus import pooled_versus_control

    def write(seed: int, role: str, right: dict[str, bool]) -> None:
        d = tmp_path / f"seed{seed}" / "test" / "predictions" / "t"
        d.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"example_id": q, "correct": c}) for q, c in right.items()]
        (d / f"{role}.jsonl").write_text("\n".join(lines) + "\n")

    qs = [f"q{i}" for i in range(6)]
    old = dict.fromkeys(qs, True)
    # seed 0: new misses q0-q3, MUSCLE q0, control q0-q1; seed 1 (rows in another order):
    # new misses q0-q1, MUSCLE (its below-floor point) q0 and q2, control q0. Per question
    # MUSCLE − control: q1 −1, q2 +1, the rest 0, so every sign flip is as extreme: p = 1.
    write(0, "old", old)
    write(0, "new", {q: q not in ("q0", "q1", "q2", "q3") for q in qs})
    write(0, "muscle", {q: q != "q0" for q in qs})
    write(0, "continue_ce", {q: q not in ("q0", "q1") for q in qs})
    write(1, "old", {q: True for q in reversed(qs)})
    write(1, "new", {q: q not in ("q0", "q1") for q in reversed(qs)})
    write(1, "muscle_below_floor", {q: q not in ("q0", "q2") for q in qs})
    write(1, "continue_ce", {q: q != "q0" for q in qs})
    out = pooled_versus_control(tmp_path, [0, 1], "t", n_resamples=200)
    # flips pooled: new 6, MUSCLE 3, control 3 -> Δ% −50 each, difference 0 points
    assert out["flips"] == {"new": 6, "muscle_every_seed": 3, "continue_ce": 3}
    assert out["delta_nfr_percent"]["muscle_every_seed"]["value"] == pytest.approx(-50.0)
    diff = out["method_minus_control_points"]
    assert diff["value"] == pytest.approx(0.0) and out["questions"] == 6
    lo, hi = diff["ci"]
    assert lo <= 0.0 <= hi and diff["permutation_p_value"] == pytest.approx(1.0)
    # seed 1's control answers a question seed 0 does not have: refused, not silently joined
    (tmp_path / "seed1/test/predictions/t/continue_ce.jsonl").write_text('{"example_id": "zz", "correct": true}\n')  # fmt: skip
    with pytest.raises(SystemExit, match="differ"):
        pooled_versus_control(tmp_path, [0, 1], "t", n_resamples=10)
    (tmp_path / "seed1/test/predictions/t/muscle_below_floor.jsonl").unlink()
    assert "seed 1 has no MUSCLE" in pooled_versus_control(tmp_path, [0, 1], "t", 10)["reason"]


def test_validation_flips_sums_the_points_the_selection_read(tmp_path):
    from real_update_versus import validation_flips

    def point(name: str, kind: str, flips: int | None) -> dict:
        return {"name": name, "kind": kind, "negative_flip_rate": {"numerator": flips, "denominator": 10}}  # fmt: skip

    def write(seed: int, new: int, a: int, b: int, ctrl: int) -> None:
        d = tmp_path / f"seed{seed}" / "sweep"
        d.mkdir(parents=True)
        pts = [point("mask__a", "candidate", a), point("mask__b", "candidate", b)]
        doc = {"new": point("new", "new", new), "points": [*pts, point("continue_ce", "control", ctrl)]}  # fmt: skip
        (d / "selection.json").write_text(json.dumps(doc))

    write(0, new=4, a=2, b=9, ctrl=3)  # seed 0 selected mask__a
    write(1, new=6, a=9, b=5, ctrl=7)  # seed 1: nothing past the floor; mask__b most accurate
    seeds = {
        "0": {"muscle_selected": {"name": "mask__a"}},
        "1": {"muscle_selected": {"name": None, "below_floor": {"name": "mask__b"}}},
    }
    out = validation_flips(tmp_path, seeds)
    # new 10, MUSCLE 2 + 5 = 7, control 3 + 7 = 10: −30 % and 0 %, MUSCLE − control −30 points
    assert out["flips"] == {"new": 10, "muscle_every_seed": 7, "continue_ce": 10}
    assert out["questions"] == 20 and out["per_seed"]["1"]["muscle_point"] == "mask__b"
    assert out["delta_nfr_percent"]["muscle_every_seed"] == pytest.approx(-30.0)
    assert out["delta_nfr_percent"]["continue_ce"] == pytest.approx(0.0)
    assert out["method_minus_control_points"] == pytest.approx(-30.0)
    sel = tmp_path / "seed1" / "sweep" / "selection.json"
    doc = json.loads(sel.read_text())
    doc["points"][1]["negative_flip_rate"]["denominator"] = 9  # scored on another question set
    sel.write_text(json.dumps(doc))
    assert "seed 1's validation NFRs count different questions" in validation_flips(tmp_path, seeds)["reason"]  # fmt: skip
    seeds["1"]["muscle_selected"] = {"name": None}  # no MUSCLE point scored at all
    assert "no MUSCLE point" in validation_flips(tmp_path, seeds)["reason"]
