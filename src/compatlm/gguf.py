"""GGUF bases: a ``.gguf`` file as the base of a ModelSpec, converted once, cached, verified.

A spec's base may name a GGUF file (llama.cpp's format, what many small models ship as), a
directory holding exactly one, or a packaged model ``pkg:<name>`` (:mod:`compatlm.gguf_packages`,
:func:`packaged_model`). :func:`resolve_spec` turns such a spec into one whose base is a plain
Hugging Face directory, so every guard rail of :mod:`compatlm.models` (config check, meta-device
skeleton, adapter fit, tokenizer fingerprint) applies to it unchanged:

1. the file's header is checked (:func:`compatlm.gguf_header.check_gguf`: size, magic bytes,
   truncation, architecture, quantisation types) — milliseconds, before any output;
2. its sha256 names the cache entry ``$COMPATLM_CACHE/gguf/<sha256>/`` (default root
   ``~/.cache/compatlm``);
3. a missing entry is built: transformers loads the GGUF (``gguf_file=``), dequantising every
   tensor to float32, and the model is saved as ``model.safetensors`` + ``config.json`` +
   tokenizer files, then ``manifest.json`` (source sha256, every file's size and sha256) — all
   in a temp directory renamed into place, under a lock, so a killed build leaves nothing that
   looks complete and two processes never build the same entry twice;
4. an existing entry is verified against its manifest on first use in a process; a mismatch is
   a one-line error naming the file (the cache is never silently trusted or rebuilt).

Float32 keeps the dequantised values exactly; ``runtime.dtype`` casts at load time as for any
base, which is what transformers' own GGUF loading does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compatlm.errors import CompatlmError
from compatlm.gguf_header import GgufHeader, check_gguf
from compatlm.gguf_packages import (
    PACKAGE_PREFIX,
    PACKAGED,
    cache_root,
    file_sha256,
    link_packaged,
    packaged_model,
)

__all__ = [
    "PACKAGED",
    "PACKAGE_PREFIX",
    "cache_dir",
    "check_gguf",
    "gguf_file",
    "is_gguf_base",
    "link_packaged",
    "materialize",
    "packaged_model",
    "resolve_spec",
]

log = logging.getLogger(__name__)

FORMAT = 1  # of a cache entry; bump when its layout changes
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
# (GGUF path, size, mtime, cache root) -> its entry, verified once per process
_verified: dict[tuple[str, int, int, str], Path] = {}


def cache_dir() -> Path:
    """Where converted GGUF bases live: ``$COMPATLM_CACHE/gguf`` (default ~/.cache/compatlm)."""
    return cache_root() / "gguf"


def is_gguf_base(base: str) -> bool:
    """Whether a spec's base names a GGUF (without touching the file system for ``pkg:``)."""
    if base.startswith(PACKAGE_PREFIX) or base.lower().endswith(".gguf"):
        return True
    path = Path(base).expanduser()
    return path.is_dir() and not (path / "config.json").exists() and bool(_ggufs_in(path))


def _ggufs_in(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix.lower() == ".gguf")
    except OSError:
        return []


def gguf_file(base: str) -> Path | None:
    """The GGUF file a spec's base names, or None for a Hugging Face directory or hub id."""
    if base.startswith(PACKAGE_PREFIX):
        return packaged_model(base[len(PACKAGE_PREFIX) :])
    path = Path(base).expanduser()
    if base.lower().endswith(".gguf"):
        if not path.exists():
            raise CompatlmError(f"base model {base}: path does not exist")
        if path.is_dir():
            raise CompatlmError(f"base model {base}: a directory, expected a .gguf file")
        return path
    if not path.is_dir() or (path / "config.json").exists():
        return None
    found = _ggufs_in(path)
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise CompatlmError(
            f"base model {base}: the directory holds {len(found)} GGUF files ({names});"
            " name one of them as the base"
        )
    return found[0] if found else None


def resolve_spec(spec: Any) -> Any:
    """``spec`` with a GGUF base replaced by its converted cache entry (built if needed);
    any other spec unchanged. A GGUF base has no revision."""
    from compatlm.spec import ModelSpec

    spec = ModelSpec.parse(spec)
    path = gguf_file(spec.base)
    if path is None:
        return spec
    if spec.base_revision:
        raise CompatlmError(
            f"base model {spec.base}: a GGUF file has no revisions (found @{spec.base_revision})"
        )
    return ModelSpec(str(materialize(path)), None, spec.adapter, spec.adapter_revision)


def materialize(path: Path) -> Path:
    """The verified cache entry of the GGUF file ``path``, converting it on first use."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except OSError as err:
        raise CompatlmError(f"GGUF file {path}: cannot read ({err.strerror or err})") from None
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, str(cache_dir()))
    if key in _verified and _verified[key].is_dir():
        return _verified[key]
    header = check_gguf(path)
    digest = file_sha256(path)
    entry = cache_dir() / digest
    if entry.exists() or not _build(path, header, digest, entry):
        verify_entry(entry, digest)  # (an entry this call just built was hashed as it was written)
    _verified[key] = entry
    return entry


def _manifest_error(entry: Path, detail: str) -> CompatlmError:
    return CompatlmError(
        f"GGUF cache {entry}: {detail}; delete that directory and compatlm converts the GGUF again"
    )


def verify_entry(entry: Path, digest: str) -> dict[str, Any]:
    """Check every file of a cache entry against its manifest (size, then sha256)."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        source = manifest["source"]["sha256"]
    except FileNotFoundError:
        raise _manifest_error(entry, f"no {MANIFEST} (not made by compatlm?)") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _manifest_error(entry, f"unreadable {MANIFEST} ({err})") from None
    if source != digest:
        raise _manifest_error(entry, f"{MANIFEST} belongs to another GGUF (sha256 {source})")
    if manifest.get("format") != FORMAT:
        raise _manifest_error(entry, f"cache format {manifest.get('format')!r}, expected {FORMAT}")
    for rel, want in files.items():
        path = entry / rel
        if not path.is_file():
            raise _manifest_error(entry, f"{rel} is missing")
        size = path.stat().st_size
        if size != want["size"]:
            raise _manifest_error(
                entry, f"{rel} has {size} bytes, the cache manifest says {want['size']}"
            )
        if file_sha256(path) != want["sha256"]:
            raise _manifest_error(entry, f"{rel} sha256 mismatch vs the cache manifest")
    return manifest


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    import fcntl

    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # another process converting the same file: wait for it
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(path: Path, header: GgufHeader, digest: str, entry: Path) -> bool:
    """Convert ``path`` into ``entry``; False when another process built it meanwhile."""
    root = entry.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = root / f".{digest}.lock"
        lock.touch()
    except OSError as err:
        raise CompatlmError(
            f"GGUF cache {root}: not writable ({err.strerror or err});"
            " set COMPATLM_CACHE to a writable directory"
        ) from None
    with _lock(lock):
        if entry.exists():
            return False  # built by another process while we waited
        for stale in root.glob(f".{digest}.tmp-*"):  # a killed build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.tmp-", dir=root))
        try:
            start = time.perf_counter()
            log.info("converting GGUF %s (%s) into %s", path, header.architecture, entry)
            _convert(path, tmp)
            _write_manifest(tmp, path, header, digest, time.perf_counter() - start)
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True


@contextlib.contextmanager
def _one_reader() -> Iterator[None]:
    """Let transformers parse the file once: its config, tokenizer and weight loading each
    open a new ``gguf.GGUFReader``, and one such parse of a 262k-token vocabulary takes ~40 s.
    The reader is read-only (a memory map), so sharing it is safe."""
    import gguf

    real = gguf.GGUFReader
    readers: dict[str, Any] = {}

    def shared(path: Any, *args: Any, **kwargs: Any) -> Any:
        key = os.path.realpath(os.fspath(path))
        if key not in readers:
            readers[key] = real(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared  # transformers imports it from gguf at call time
    try:
        yield
    finally:
        gguf.GGUFReader = real
        readers.clear()


def _convert(path: Path, out: Path) -> None:
    """GGUF -> float32 safetensors + config + tokenizer in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # A GGUF file carries no model code: nothing to trust, so never run any.
    where = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
    try:
        with _one_reader():
            tokenizer = AutoTokenizer.from_pretrained(**where, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                **where, dtype=torch.float32, trust_remote_code=False
            )
    except NotImplementedError as err:  # a tensor type gguf cannot dequantise
        raise CompatlmError(f"GGUF file {path}: {_first_line(err)}") from None
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        raise CompatlmError(
            f"GGUF file {path}: transformers cannot load it ({_first_line(err)})"
        ) from None
    # transformers keeps GGUF-loaded models marked as quantised and refuses to save them
    # ("quantized with gguf and is not serializable"), although every tensor is a plain float
    # tensor by now: drop the marks, then save as any model.
    model.hf_quantizer = None
    for obj in (model, model.config):
        if hasattr(obj, "quantization_config"):
            with contextlib.suppress(AttributeError):
                delattr(obj, "quantization_config")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _write_manifest(
    entry: Path, source: Path, header: GgufHeader, digest: str, seconds: float
) -> None:
    import importlib.metadata

    from compatlm.io import atomic_write_json

    files = {
        p.relative_to(entry).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(entry.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    if WEIGHTS not in files:
        raise CompatlmError(f"GGUF file {source}: conversion wrote no {WEIGHTS}")
    atomic_write_json(
        entry / MANIFEST,
        {
            "format": FORMAT,
            "source": {"name": source.name, "size": header.size, "sha256": digest},
            "architecture": header.architecture,
            "model_name": header.name,
            "tensor_types": header.type_counts(),
            "dtype": "float32",
            "versions": {
                lib: importlib.metadata.version(lib) for lib in ("transformers", "gguf", "torch")
            },
            "convert_seconds": round(seconds, 1),
            "files": files,
        },
    )
