"""The demo family: recipe hashing, tokenizer, packing, and the verified, atomic cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from compatlm.demo import cache
from compatlm.demo.corpus import CorpusView
from compatlm.demo.family import (
    BaseRecipe,
    FamilyRecipe,
    SplitSizes,
    build_or_load_family,
    required_files,
)
from compatlm.demo.pretrain import (
    ModelShape,
    Packed,
    PretrainSettings,
    batch_labels,
    document_mask,
    make_model,
    pack,
    pretrain,
    train_tokenizer,
)
from compatlm.errors import CompatlmError

MIX = (0.3, 0.05, 0.3, 0.2, 0.1, 0.05)


def micro_recipe(**update) -> FamilyRecipe:
    """A family that builds in about a second: tiny corpora, one-layer models."""

    def base(seed: int, n_docs: int) -> BaseRecipe:
        return BaseRecipe(
            corpus=CorpusView(seed=seed, n_docs=n_docs, mix=MIX, max_n=9),
            shape=ModelShape(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32),
            train=PretrainSettings(seed=seed, seq_len=64, batch_size=8),
        )

    recipe = FamilyRecipe(
        vocab_size=300,
        task_sizes=SplitSizes(train=8, validation=4, test=8),
        old=base(1, 240),
        new=base(2, 320),
    )
    return recipe.model_copy(update=update)


@pytest.fixture(scope="module")
def tokenizer():
    from compatlm.demo.family import corpora

    docs = corpora(micro_recipe())
    return train_tokenizer(docs["old"] + docs["new"], 300)


def test_recipe_key_is_stable_and_sees_every_field():
    assert micro_recipe().key() == micro_recipe().key()
    assert len(micro_recipe().key()) == 16
    assert micro_recipe(task_seed=6).key() != micro_recipe().key()
    changed = micro_recipe()
    new = changed.new.model_copy(update={"train": PretrainSettings(seed=99, seq_len=64)})
    assert changed.model_copy(update={"new": new}).key() != micro_recipe().key()
    assert FamilyRecipe.default().key() != FamilyRecipe.quick().key()


def test_recipe_is_frozen_and_strict():
    recipe = micro_recipe()
    with pytest.raises(ValidationError):
        recipe.vocab_size = 5
    with pytest.raises(ValidationError):
        FamilyRecipe.model_validate({**recipe.model_dump(), "vocab": 3})
    # JSON round trip (what the build workers read) gives the same recipe and key
    assert FamilyRecipe.model_validate_json(recipe.model_dump_json()).key() == recipe.key()


def test_default_family_is_a_realistic_update():
    d = FamilyRecipe.default()
    assert d.skills and not FamilyRecipe.legacy().skills
    assert d.new.corpus.n_docs > d.old.corpus.n_docs  # more data
    assert d.new.shape.hidden_size > d.old.shape.hidden_size  # more parameters
    assert d.new.corpus.seed != d.old.corpus.seed
    old_w, new_w = d.old.corpus.weights, d.new.corpus.weights
    assert set(old_w) == set(new_w)  # every skill in both corpora...
    old_favours = {k for k in old_w if old_w[k] > new_w[k]}
    new_favours = {k for k in old_w if new_w[k] > old_w[k]}
    assert old_favours and new_favours  # ...but each view favours some skills the other does not
    assert min(d.task_sizes.validation, d.task_sizes.test) >= 400  # one row per group


def test_quick_family_stays_small():
    q, d = FamilyRecipe.quick(), FamilyRecipe.default()
    assert q.skills and q.key() != d.key()
    assert q.task_sizes.model_dump() == {"train": 64, "validation": 16, "test": 32}
    for role in ("old", "new"):
        small, full = getattr(q, role), getattr(d, role)
        assert small.corpus.n_docs <= 4_000 < full.corpus.n_docs
        assert small.shape.hidden_size <= 64 and small.corpus.weights == full.corpus.weights
    assert FamilyRecipe.named("legacy", quick=True).task_sizes == q.task_sizes


def test_skill_and_world_views_cannot_be_mixed():
    d, legacy = FamilyRecipe.default(), FamilyRecipe.legacy()
    with pytest.raises(ValidationError, match="must both be skill views or both world views"):
        FamilyRecipe.model_validate({**d.model_dump(), "new": legacy.new.model_dump()})
    # a recipe read back from recipe.json (what build workers do) keeps its corpus type
    again = FamilyRecipe.model_validate_json(d.model_dump_json())
    assert again.skills and again.key() == d.key()


def test_tokenizer_round_trips_and_keeps_leading_space_words(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    texts = [
        "Anna is a baker.",
        "Question: Tom had 7 coins.\nAnswer: Now Tom has 7 + 5 = 12 coins.\n#### 12",
        "Dialogue:\nAnna: Hi!\nSummary: Anna says hi. ünïcode ok",
    ]
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id  # Llama-style: BOS added by default
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    context, choice = "Goal: Find Anna.\nSolution:", " Anna works at the bakery."
    whole = tokenizer(context + choice)["input_ids"]
    parts = (
        tokenizer(context)["input_ids"] + tokenizer(choice, add_special_tokens=False)["input_ids"]
    )
    assert whole == parts  # the continuation tokenises the same alone or appended
    assert {tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token} == {
        "<pad>",
        "<bos>",
        "<eos>",
    }
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(texts[1])["input_ids"] == tokenizer(texts[1])["input_ids"]


def test_pack_keeps_documents_whole_and_masks_across_them(tokenizer):
    docs = ["Anna is a baker.", "Tom has a dog.", "Ida loves fish."]
    lens = [len(tokenizer(d, add_special_tokens=False)["input_ids"]) + 2 for d in docs]
    seq = lens[0] + lens[1]  # the first two docs fill a row exactly, the third starts a new one
    packed = pack(docs, tokenizer, seq)
    assert packed.input_ids.shape == (2, seq)
    assert packed.segments[0].tolist() == [0] * lens[0] + [1] * lens[1]
    assert packed.segments[1].tolist() == [0] * lens[2] + [-1] * (seq - lens[2])
    assert packed.positions[0].tolist() == list(range(lens[0])) + list(range(lens[1]))
    assert packed.n_tokens() == sum(lens)
    labels = batch_labels(*packed)
    assert labels[0, 0] == labels[0, lens[0]] == -100  # each doc's <bos> is not a target
    assert (labels[1, lens[2] :] == -100).all()  # nor is padding
    mask = document_mask(packed.segments)  # (2, 1, seq, seq)
    assert mask.shape == (2, 1, seq, seq)
    assert mask[0, 0, lens[0], lens[0] - 1].item() is False  # doc 2 cannot see doc 1
    assert mask[0, 0, lens[0] + 1, lens[0]].item() is True  # but sees itself causally
    assert mask[0, 0, 0, 1].item() is False  # causal
    assert mask[1, 0, -1].sum().item() == 1  # a padding row attends to itself only


def test_packed_row_scores_like_separate_documents(tokenizer):
    model = make_model(
        ModelShape(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32), tokenizer, 0
    )
    model.config._attn_implementation = "sdpa"
    docs = ["Anna is a baker.", "Tom has a dog."]
    packed = pack(docs, tokenizer, 64)
    with torch.no_grad():
        together = model(
            input_ids=packed.input_ids,
            attention_mask=document_mask(packed.segments),
            position_ids=packed.positions,
        ).logits[0]
        n0 = int((packed.segments[0] == 0).sum())
        for i, doc in enumerate(docs):
            ids = torch.tensor(
                [
                    [
                        tokenizer.bos_token_id,
                        *tokenizer(doc, add_special_tokens=False)["input_ids"],
                        tokenizer.eos_token_id,
                    ]
                ]
            )
            alone = model(input_ids=ids).logits[0]
            start = 0 if i == 0 else n0
            torch.testing.assert_close(
                together[start : start + ids.shape[1]], alone, atol=1e-5, rtol=1e-4
            )


def test_pretraining_is_seeded_and_learns(tokenizer):
    from compatlm.demo.family import corpora

    docs = corpora(micro_recipe())["old"]
    full = pack(docs, tokenizer, 64)
    rows = 8 * (full.input_ids.shape[0] // 8)  # whole batches: every row is seen each epoch
    data = Packed(*(t[:rows] for t in full))
    shape = ModelShape(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    settings = PretrainSettings(seed=3, seq_len=64, batch_size=8, epochs=2)
    losses: list[float] = []
    torch.set_num_threads(1)
    a = make_model(shape, tokenizer, 3)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    stats = pretrain(a, data, settings, on_step=lambda s, t, loss: losses.append(loss))
    b = make_model(shape, tokenizer, 3)
    pretrain(b, data, settings)
    assert stats["steps"] == len(losses) == 2 * rows // 8
    assert stats["tokens"] == 2 * data.n_tokens()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in before)
    assert any(not torch.equal(a.state_dict()[k], before[k]) for k in before)
    assert losses[-1] < losses[0]


def _build_count(monkeypatch) -> list[int]:
    import compatlm.demo.build as build

    calls: list[int] = []
    real = build.build_family

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "build_family", counting)
    return calls


def test_cache_builds_once_then_hits(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("COMPATLM_CACHE", str(tmp_path))
    calls = _build_count(monkeypatch)
    recipe = micro_recipe()
    fam = build_or_load_family(recipe, progress=False)
    assert calls == [1]
    assert fam.root == tmp_path / "demo" / recipe.key()
    assert [p.name for p in (tmp_path / "demo").iterdir()] == [recipe.key()]  # no temp left
    manifest = json.loads((fam.root / "manifest.json").read_text())
    assert set(required_files()) <= set(manifest["files"])
    for role_dir in (fam.old_dir, fam.new_dir):
        model = AutoModelForCausalLM.from_pretrained(role_dir)
        assert model.config.tie_word_embeddings is False
        assert AutoTokenizer.from_pretrained(role_dir).vocab_size == len(
            AutoTokenizer.from_pretrained(fam.tokenizer_dir)
        )
    assert AutoModelForCausalLM.from_pretrained(fam.new_dir).config.hidden_size == 16
    for task in fam.tasks:
        kind = fam.task_kind(task)
        rows = [json.loads(x) for x in (fam.task_dir(task) / "test.jsonl").read_text().splitlines()]
        assert len(rows) == 8
        assert ("choices" in rows[0]) == (kind == "multiple_choice")
    assert fam.info["tasks"]["demo_piqa"] == {
        "kind": "multiple_choice",
        "train": 8,
        "validation": 4,
        "test": 8,
    }
    again = build_or_load_family(recipe, progress=False)
    assert calls == [1]  # hit: nothing rebuilt
    assert again.root == fam.root and again.info == fam.info
    other = build_or_load_family(micro_recipe(task_seed=9), progress=False)
    assert calls == [1, 1] and other.root != fam.root


@pytest.mark.parametrize("damage", ["flip_byte", "delete_file", "delete_manifest", "bad_manifest"])
def test_cache_rebuilds_a_corrupt_or_partial_entry(tmp_path, monkeypatch, damage):
    calls = _build_count(monkeypatch)
    recipe = micro_recipe()
    fam = build_or_load_family(recipe, cache_dir=tmp_path, progress=False)
    target = fam.task_dir("demo_piqa") / "test.jsonl"
    original = target.read_bytes()
    if damage == "flip_byte":
        target.write_bytes(original[:10] + bytes([original[10] ^ 1]) + original[11:])
    elif damage == "delete_file":
        target.unlink()
    elif damage == "delete_manifest":
        (fam.root / "manifest.json").unlink()
    else:
        (fam.root / "manifest.json").write_text("{not json")
    assert cache.verify(fam.root, recipe.key(), required_files()) is not None
    again = build_or_load_family(recipe, cache_dir=tmp_path, progress=False)
    assert calls == [1, 1]
    assert target.read_bytes() == original  # rebuilt deterministically
    assert cache.verify(again.root, recipe.key(), required_files()) is None
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [recipe.key()]


def test_interrupted_build_leaves_nothing_that_looks_complete(tmp_path):
    entry = tmp_path / "demo" / "abc"

    def explode(tmp: Path) -> None:
        (tmp / "half.txt").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.build_entry(entry, "abc", explode)
    assert not entry.exists()
    assert list((tmp_path / "demo").iterdir()) == []


def test_manifest_for_another_recipe_is_rejected(tmp_path):
    entry = tmp_path / "e"
    entry.mkdir()
    (entry / "a.txt").write_text("x")
    cache.write_manifest(entry, "key1")
    assert cache.verify(entry, "key1", ["a.txt"]) is None
    assert cache.verify(entry, "key2") == "manifest belongs to another recipe"
    assert cache.verify(entry, "key1", ["b.txt"]) == "manifest lacks b.txt"


def test_unwritable_cache_is_a_one_line_user_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(CompatlmError) as err:
        build_or_load_family(micro_recipe(), cache_dir=blocker / "cache", progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "not writable" in message and "COMPATLM_CACHE" in message


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPATLM_CACHE", raising=False)
    assert cache.cache_root() == Path.home() / ".cache" / "compatlm"
    monkeypatch.setenv("COMPATLM_CACHE", str(tmp_path / "env"))
    assert cache.cache_root() == tmp_path / "env"
    assert cache.cache_root(tmp_path / "arg") == tmp_path / "arg"


def test_unknown_task_is_a_user_error(tmp_path):
    fam = build_or_load_family(micro_recipe(), cache_dir=tmp_path, progress=False)
    with pytest.raises(CompatlmError, match="demo_nope"):
        fam.task_dir("demo_nope")


@pytest.mark.slow
def test_parallel_build_matches_sequential_tasks(tmp_path):
    seq = build_or_load_family(micro_recipe(), cache_dir=tmp_path / "a", progress=False, workers=1)
    par = build_or_load_family(micro_recipe(), cache_dir=tmp_path / "b", progress=False, workers=2)
    assert par.info["workers"] == 2
    for task in seq.tasks:
        for split in ("train", "validation", "test"):
            a = (seq.task_dir(task) / f"{split}.jsonl").read_bytes()
            assert a == (par.task_dir(task) / f"{split}.jsonl").read_bytes()
    assert (seq.tokenizer_dir / "tokenizer.json").read_bytes() == (
        par.tokenizer_dir / "tokenizer.json"
    ).read_bytes()


def test_continued_recipe_keeps_old_shape_and_existing_keys():
    cont = FamilyRecipe.continued()
    assert cont.new.init_from == "old" and cont.new.shape == cont.old.shape
    assert cont.key() not in {FamilyRecipe.default().key(), FamilyRecipe.quick().key()}
    # continued is the legacy recipe with a continued new base, and its cache key is the one it
    # had before the skills family became the default.
    legacy = FamilyRecipe.legacy()
    assert cont.old == legacy.old and cont.new.corpus == legacy.new.corpus
    assert cont.key() == "b91ce3e78c2bf928"
    # Unset init_from is left out of the hash: caches built before the field existed still hit.
    assert legacy.key() == "e535ff32f4ee0089" == FamilyRecipe.named("legacy").key()
    small = FamilyRecipe.named("continued", quick=True)
    assert small.new.shape == small.old.shape and small.new.init_from == "old"
    with pytest.raises(CompatlmError, match="unknown demo family 'bigger'"):
        FamilyRecipe.named("bigger")


def test_continued_recipe_refuses_another_shape():
    r = micro_recipe()
    wide = r.new.model_copy(
        update={"init_from": "old", "shape": r.new.shape.model_copy(update={"hidden_size": 32})}
    )
    with pytest.raises(ValidationError, match="needs the old base's shape"):
        FamilyRecipe.model_validate({**r.model_dump(), "new": wide.model_dump()})


def test_continued_new_base_starts_from_the_old_weights(tmp_path):
    from transformers import LlamaForCausalLM

    from compatlm.demo.build import build_family

    r = micro_recipe()
    r = r.model_copy(update={"new": r.new.model_copy(update={"init_from": "old"})})
    build_family(r, tmp_path, progress=False, workers=2)  # continued: built one after the other
    old, new = (LlamaForCausalLM.from_pretrained(tmp_path / role) for role in ("old", "new"))
    fresh = make_model(r.new.shape, train_tokenizer(["a b c"], 300), r.new.train.seed)
    w = "model.layers.0.mlp.up_proj.weight"
    o, n = old.state_dict()[w], new.state_dict()[w]
    assert not torch.equal(o, n)  # it trained further...
    # ...from the old weights: far closer to them than a fresh init of the same shape is.
    assert (n - o).norm() < 0.5 * (fresh.state_dict()[w] - o).norm()
