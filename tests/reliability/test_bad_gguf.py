"""Bad GGUF bases through ``compatlm eval``: exit code 2, ONE ``error:`` line naming the file and
the problem, no traceback, ``--out`` never created, no model weights loaded (the same contract
as the bad-input corpus in test_bad_inputs.py; the broken files are made from a tiny GGUF here
because they are binary)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from contract import refused
from workloads import write_mc_task

import compatlm.gguf as gguf_bases
import compatlm.gguf_packages as packages
from compatlm.cli import main
from gguf_files import write_llama_gguf, write_raw_gguf
from helpers import make_llama


@dataclass(frozen=True)
class Case:
    id: str
    old: str  # the old model's spec, templated with {files}
    expect: tuple[str, ...]
    # Malformed specs fail while the config loads (naming the field), the rest at preflight.
    prefix: str = "error: old: "


CASES = [
    Case("empty", "{files}/empty.gguf", ("empty.gguf", "0 bytes, too small for a GGUF header")),
    Case("not-gguf", "{files}/zip.gguf", ("zip.gguf", "not a GGUF file", "magic bytes b'PK")),
    Case("truncated-header", "{files}/cut_header.gguf", ("cut_header.gguf", "truncated: the header")),
    Case("truncated-data", "{files}/cut_data.gguf", ("cut_data.gguf", "truncated: its tensor data ends at byte")),
    Case("architecture", "{files}/bert.gguf", ("bert.gguf", "architecture 'bert' cannot be loaded", "supported: ", "llama")),
    Case("quant-type", "{files}/q8k.gguf", ("q8k.gguf", "quantised as Q8_K", "cannot dequantise")),
    Case("two-in-dir", "{files}/two", ("two", "holds 2 GGUF files (a.gguf, b.gguf)", "name one of them")),
    Case("missing", "{files}/absent.gguf", ("absent.gguf", "path does not exist")),
    Case("revision", "{files}/good.gguf@main", ("eval.yaml: field 'old'", "a GGUF base has no revision (found @main)"), "error: "),
    Case("unknown-package", "pkg:llama-7b", ("eval.yaml: field 'old'", "unknown packaged model 'llama-7b'", "pkg:smollm2-135m"), "error: "),
    Case("adapter-of-other-size", "{files}/good.gguf+{wide_adapter}", ("wide_adapter",)),
    Case("corrupted-cache", "{files}/cached.gguf", ("model.safetensors sha256 mismatch vs the cache manifest", "delete that directory")),
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tiny_tokenizer, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_gguf")
    good = write_llama_gguf(root / "good.gguf", make_llama(tiny_tokenizer, seed=4), tiny_tokenizer)
    data = good.read_bytes()
    (root / "empty.gguf").write_bytes(b"")
    (root / "zip.gguf").write_bytes(b"PK\x03\x04" + data[4:])
    (root / "cut_header.gguf").write_bytes(data[:2000])
    (root / "cut_data.gguf").write_bytes(data[:-4096])
    write_raw_gguf(root / "bert.gguf", "bert")
    write_raw_gguf(root / "q8k.gguf", "llama", {"token_embd.weight": ("Q8_K", 256)})
    (root / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(good, root / "two" / name)
    # Another model (other seed) so its cache entry is its own, then corrupted below.
    write_llama_gguf(root / "cached.gguf", make_llama(tiny_tokenizer, seed=6), tiny_tokenizer)
    return root


@pytest.fixture(scope="module")
def cache_root(files, tmp_path_factory) -> Path:
    """A cache holding good.gguf converted (so a case that fails after conversion shows only its
    error) and a corrupted entry for cached.gguf."""
    root = tmp_path_factory.mktemp("gguf_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPATLM_CACHE", str(root))
        gguf_bases.materialize(files / "good.gguf")
        entry = gguf_bases.materialize(files / "cached.gguf")
    assert entry.name == hashlib.sha256((files / "cached.gguf").read_bytes()).hexdigest()
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x55
    weights.write_bytes(bytes(data))
    return root


@pytest.fixture
def cache(cache_root, monkeypatch) -> Path:
    monkeypatch.setenv("COMPATLM_CACHE", str(cache_root))
    monkeypatch.setattr(gguf_bases, "_verified", {})  # as a new process: nothing verified yet
    monkeypatch.setattr(packages, "_digests", {})
    return cache_root


def _config(tmp_path: Path, old: str, family: dict[str, Path]) -> Path:
    task = write_mc_task(tmp_path / "mc.jsonl", 4)
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        f"old: {old}\nnew: {family['new']}+{family['new_adapter']}\n"
        f"tasks:\n  - name: tiny_mc\n    path: {task}\n"
        "runtime:\n  device: cpu\n  progress: false\ncompare:\n  bootstrap: 0\n"
    )
    return cfg


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_gguf(case, files, cache, tiny_family, tmp_path, capsys, no_model_loads):
    old = case.old.format(files=files, wide_adapter=tiny_family["wide_adapter"])
    out = tmp_path / "out"
    argv = ["eval", _config(tmp_path, old, tiny_family), "--out", out]
    refused(argv, capsys, case.expect, out=out, prefix=case.prefix)


def test_good_gguf_passes_the_same_path(files, cache, tiny_family, tmp_path, capsys):
    """The control: the same config with the intact file runs (so the cases fail for their
    file, not for the config)."""
    out = tmp_path / "out"
    code = main(
        ["-q", "eval", str(_config(tmp_path, f"{files}/good.gguf", tiny_family)), "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    assert (out / "predictions" / "tiny_mc" / "old.jsonl").is_file()
