"""Reference builds of the demo family: the build platform is recorded, and a family's bases are
compared bit for bit with the documented build (matches / differs / no reference)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from test_demo_family import micro_recipe

from compatlm.demo import reference
from compatlm.demo.family import build_or_load_family
from compatlm.demo.recipe import FamilyRecipe
from compatlm.report.demo import _build_text, render_html, render_markdown


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_or_load_family(
        micro_recipe(), cache_dir=tmp_path_factory.mktemp("cache"), progress=False, workers=1
    )


def test_build_records_the_kernels_it_ran_on(built):
    plat = built.info["build_platform"]
    assert plat["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert plat["torch"] == torch.__version__
    # An unlisted recipe (the micro one) has nothing to compare with, and says so.
    assert built.build["status"] == "no_reference" and built.build["reference"] is None
    manifest = json.loads((built.root / "manifest.json").read_text())
    assert built.build["weights_sha256"] == {
        r: manifest["files"][f"{r}/model.safetensors"] for r in ("old", "new")
    }


def _ref(name: str, hashes: dict[str, str | None]) -> dict:
    return {"name": name, "cpu_capability": "AVX512", "torch": "2.13.0+cpu",
            "weights_sha256": hashes, "validation": {}}  # fmt: skip


def test_identical_bases_match_and_others_differ_with_a_warning(built, monkeypatch, caplog):
    key = built.recipe.key()
    manifest = reference.manifest_of(built.root)
    hashes = reference.weights_sha256(manifest)
    other = {"old": hashes["old"], "new": "0" * 64}  # the old base alone is not the build
    monkeypatch.setitem(reference.REFERENCE_BUILDS, key, [_ref("a", other), _ref("b", hashes)])
    got = reference.check_reference(key, built.info, manifest)
    assert got["status"] == "matches" and got["reference"] == "b"
    monkeypatch.setitem(reference.REFERENCE_BUILDS, key, [_ref("a", other)])
    with caplog.at_level(logging.WARNING, logger="compatlm.demo.reference"):
        got = reference.check_reference(key, built.info, manifest)
    assert got["status"] == "differs" and got["reference"] == "a"
    here = torch.backends.cpu.get_cpu_capability()
    assert f"CPU kernels here: {here}, reference: AVX512" in got["message"]
    assert got["message"] in caplog.text
    # An unreadable manifest has no hashes: it can never pass for the reference.
    assert reference.check_reference(key, built.info, {})["status"] == "differs"


def test_the_default_recipe_has_a_reference_build():
    refs = reference.REFERENCE_BUILDS[FamilyRecipe.default().key()]
    for ref in refs:
        assert set(ref["weights_sha256"]) == {"old", "new"}
        assert all(len(h) == 64 for h in ref["weights_sha256"].values())
        assert {"demo_hellaswag", "demo_piqa"} <= set(ref["validation"])


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        ({"status": "matches", "reference": "x", "build_platform": {"cpu_capability": "AVX2"}},
         "identical to reference build x (CPU kernels AVX2)"),
        ({"status": "differs", "reference": "x", "build_platform": {"cpu_capability": "AVX2"}},
         "differs from reference build x (CPU kernels here: AVX2)"),
        ({"status": "no_reference", "build_platform": None}, "no reference build recorded"),
        ({}, "not recorded"),
    ],
)  # fmt: skip
def test_report_line_per_status(build, expected):
    assert expected in _build_text(build)


def test_demo_report_shows_the_build_and_escapes_it():
    build = {"status": "differs", "reference": "<b>x</b>", "build_platform": {}}
    summary = {"roles": ["old", "new"], "tasks": {}, "seeds": [0], "notes": [],
               "context": {"family": {"build": build}}}  # fmt: skip
    md = render_markdown(summary, {}, None)
    assert "- **Family build**: differs from reference build &lt;b&gt;x&lt;/b&gt; \\(" in md
    page = render_html(summary, {}, None)
    assert "<th>Family build</th><td>differs from reference build &lt;b&gt;x&lt;/b&gt;" in page
    assert "<b>x</b>" not in page
