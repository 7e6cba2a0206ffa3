"""The demo cache: one directory per recipe hash, verified on every load, replaced atomically.

Owns where demo families live (``$COMPATLM_CACHE/demo/<recipe-hash>/``, default root
``~/.cache/compatlm``) and the rules that keep them trustworthy:

- an entry is built in a temp directory next to its final place and moved there with one
  ``os.replace``, so an interrupted build never leaves something that looks complete;
- ``manifest.json`` (written last) lists the sha256 of every file; loading re-hashes them all
  and treats any mismatch, missing file or unreadable manifest as "not cached" (rebuild);
- an unwritable cache root is a :class:`~compatlm.errors.CompatlmError` with a one-line hint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_json

log = logging.getLogger(__name__)

ENV_VAR = "COMPATLM_CACHE"
MANIFEST = "manifest.json"
_STALE_TMP_SECONDS = 3600.0  # a temp build dir untouched this long belongs to a dead build


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache root: ``cache_dir`` if given, else ``$COMPATLM_CACHE``, else ~/.cache/compatlm."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "compatlm"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(entry: Path, key: str, extra: dict | None = None) -> Path:
    """Hash every file under ``entry`` (except the manifest) into ``entry/manifest.json``."""
    files = {
        p.relative_to(entry).as_posix(): sha256_file(p)
        for p in sorted(entry.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    return atomic_write_json(entry / MANIFEST, {"key": key, "files": files, **(extra or {})})


def verify(entry: Path, key: str, required: Iterable[str] = ()) -> str | None:
    """``None`` if ``entry`` is a complete, untampered cache entry for ``key``; else why not."""
    manifest = entry / MANIFEST
    if not manifest.is_file():
        return "no manifest (missing or interrupted build)"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        files = data["files"]
        if data["key"] != key or not isinstance(files, dict):
            return "manifest belongs to another recipe"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable manifest ({err})"
    missing = [r for r in required if r not in files]
    if missing:
        return f"manifest lacks {missing[0]}"
    for rel, digest in files.items():
        path = entry / rel
        if not path.is_file():
            return f"missing file {rel}"
        if sha256_file(path) != digest:
            return f"checksum mismatch in {rel}"
    return None


def build_entry(
    entry: Path,
    key: str,
    build: Callable[[Path], dict | None],
    required: Iterable[str] = (),
) -> Path:
    """Build a cache entry with ``build(tmp_dir)`` and move it into place atomically.

    ``build`` fills the temp directory and may return extra manifest fields. If another process
    finished the same entry first, its (verified) entry wins and ours is discarded.
    """
    parent = entry.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=parent))
    except OSError as err:
        raise CompatlmError(
            f"demo cache {parent}: not writable ({err.strerror or err}); "
            f"set {ENV_VAR} to a writable directory"
        ) from None
    _remove_stale_tmps(parent, entry.name, keep=tmp)
    try:
        extra = build(tmp)
        write_manifest(tmp, key, extra)
        if entry.exists():  # a corrupt or partial entry: move it aside, then delete it
            trash = parent / f".{entry.name}.trash-{os.getpid()}-{time.time_ns()}"
            os.replace(entry, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:
            # Lost a race: someone installed the entry between our check and our rename.
            if verify(entry, key, required) is not None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry


def _remove_stale_tmps(parent: Path, name: str, keep: Path) -> None:
    now = time.time()
    for p in parent.glob(f".{name}.*"):
        if p == keep:
            continue
        try:
            if now - p.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass
