"""Checking a GGUF file before anything is converted or loaded.

A GGUF file (llama.cpp's format) is a header — magic ``GGUF``, version, key/value metadata,
one info record per tensor (name, shape, quantisation type, offset) — followed by the aligned
tensor data. :func:`check_gguf` reads only the header and turns every problem compatlm can see
there into one line naming the file: too small or truncated (the header or the tensor data ends
past the end of the file), not a GGUF at all (wrong magic bytes), an unknown version, an
architecture transformers cannot load from GGUF (named, with the supported ones), or a tensor
whose quantisation type the ``gguf`` package cannot dequantise.

Why not ``gguf.GGUFReader``: it builds a numpy view per array element, which takes ~40 s on the
262k-token vocabulary of Gemma 3, and on a truncated file it fails deep inside numpy. The header
walk here skips arrays it does not need (a seek for fixed-size items) and reads the same bytes.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compatlm.errors import CompatlmError

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # 1 stored 32-bit counts and was replaced in 2023; llama.cpp writes 3
MIN_SIZE = 24  # magic, version, tensor count, metadata count
DEFAULT_ALIGNMENT = 32
INSTALL_HINT = "pip install 'compatlm[real]'"

# GGUF value types -> struct format of one item (8 = string and 9 = array are variable-size).
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
# general.architecture values transformers maps to another name before its support check
# (see transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint).
_ARCH_ALIASES = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
}
# Supported by transformers' GGUF loader but not decoder-only language models.
_NOT_CAUSAL = {"t5", "umt5", "t5encoder", "general", "tokenizer"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_name: str  # a GGMLQuantizationType name: F32, Q4_K, ...
    offset: int  # from the start of the tensor data
    nbytes: int


@dataclass(frozen=True)
class GgufHeader:
    path: Path
    version: int
    architecture: str
    name: str | None
    data_offset: int  # where tensor data starts in the file
    size: int  # of the file
    tensors: tuple[TensorInfo, ...] = field(repr=False)

    def type_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.type_name] = counts.get(t.type_name, 0) + 1
        return dict(sorted(counts.items()))


class _Truncated(Exception):
    pass


_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_ITEM = {vtype: struct.Struct("<" + fmt) for vtype, fmt in _SCALARS.items()}


class _Reader:
    """Little-endian reads from a memory-mapped file that say where it ended too early."""

    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self.buf, self.size, self.pos = buf, size, 4  # after the magic bytes

    def unpack(self, item: struct.Struct) -> Any:
        if self.pos + item.size > self.size:
            raise _Truncated(self.size)
        value = item.unpack_from(self.buf, self.pos)[0]
        self.pos += item.size
        return value

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise _Truncated(self.size)
        self.pos += n

    def string(self) -> bytes:
        n = int(self.unpack(_U64))
        self.skip(n)
        return self.buf[self.pos - n : self.pos]

    def value(self, vtype: int, keep: bool) -> object:
        """One metadata value; ``keep=False`` skips it (returns None)."""
        if vtype in _ITEM:
            if not keep:
                self.skip(_ITEM[vtype].size)
                return None
            return self.unpack(_ITEM[vtype])
        if vtype == _STRING:
            raw = self.string()
            return raw.decode("utf-8", "replace") if keep else None
        if vtype == _ARRAY:
            item_type, count = int(self.unpack(_U32)), int(self.unpack(_U64))
            if item_type in _ITEM:
                self.skip(count * _ITEM[item_type].size)
            elif item_type == _STRING:
                self._skip_strings(count)
            else:
                for _ in range(count):
                    self.value(item_type, keep=False)
            return None
        raise ValueError(f"unknown metadata value type {vtype} at byte {self.pos - 4}")

    def _skip_strings(self, count: int) -> None:
        # The hot loop: a vocabulary is 50k-260k strings (and as many merges).
        buf, pos, size, length = self.buf, self.pos, self.size, _U64.unpack_from
        for _ in range(count):
            if pos + 8 > size:
                raise _Truncated(size)
            pos += 8 + length(buf, pos)[0]
        if pos > size:
            raise _Truncated(size)
        self.pos = pos


def _fail(path: Path, detail: str) -> CompatlmError:
    return CompatlmError(f"GGUF file {path}: {detail}")


def quant_sizes() -> dict[str, tuple[int, int]]:
    """``{type name: (elements per block, bytes per block)}`` from the gguf package."""
    try:
        from gguf.constants import GGML_QUANT_SIZES
    except ImportError:
        raise CompatlmError(
            f"GGUF bases need the gguf package, which is not installed; {INSTALL_HINT}"
        ) from None
    return {t.name: sizes for t, sizes in GGML_QUANT_SIZES.items()}


def dequantisable() -> set[str]:
    """Type names the installed gguf package can turn back into floats."""
    import gguf.quants
    from gguf.constants import GGMLQuantizationType

    traits = getattr(gguf.quants, "_type_traits", None)
    if traits is None:  # pragma: no cover - a gguf release that renamed its registry
        return {t.name for t in GGMLQuantizationType}
    return {"F32", "F16", *(t.name for t in traits)}


def supported_architectures() -> list[str]:
    """GGUF architectures transformers can load as a causal language model."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in _NOT_CAUSAL)


def read_header(path: Path) -> GgufHeader:
    """The header of ``path``; size, magic, version and truncation problems are one line."""
    try:
        size = path.stat().st_size
        fh = path.open("rb")
    except OSError as err:
        raise _fail(path, f"cannot read ({err.strerror or err})") from None
    with fh:
        if size < MIN_SIZE:
            raise _fail(
                path, f"{size} bytes, too small for a GGUF header ({MIN_SIZE} bytes at least)"
            )
        magic = fh.read(4)
        if magic != MAGIC:
            raise _fail(
                path, f"not a GGUF file (magic bytes {magic!r}, expected {MAGIC!r}); corrupted?"
            )
        try:
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as err:
            raise _fail(path, f"cannot map it into memory ({err})") from None
        try:
            return _walk(path, _Reader(buf, size), size)
        except _Truncated as cut:
            raise _fail(
                path,
                f"truncated: the header continues past byte {cut.args[0]} but the file has"
                f" {size} bytes",
            ) from None
        except (ValueError, struct.error, OverflowError) as err:
            raise _fail(path, f"corrupted header ({err})") from None
        finally:
            buf.close()


def _walk(path: Path, r: _Reader, size: int) -> GgufHeader:
    version = int(r.unpack(_U32))
    if version not in VERSIONS:
        raise _fail(path, f"GGUF version {version} is not supported (expected 2 or 3)")
    n_tensors, n_kv = int(r.unpack(_U64)), int(r.unpack(_U64))
    # Each tensor info and key/value pair takes at least 8 bytes: larger counts mean corruption.
    if (n_tensors + n_kv) * 8 > size:
        raise _fail(
            path,
            f"truncated or corrupted: its header declares {n_tensors} tensors and {n_kv}"
            f" metadata keys, which cannot fit in {size} bytes",
        )
    wanted = {"general.architecture", "general.name", "general.alignment"}
    meta: dict[str, object] = {}
    for _ in range(n_kv):
        key = r.string().decode("utf-8", "replace")
        vtype = int(r.unpack(_U32))
        value = r.value(vtype, keep=key in wanted)
        if key in wanted:
            meta[key] = value
    sizes = quant_sizes()
    by_id = _type_names()
    infos = []
    for _ in range(n_tensors):
        name = r.string().decode("utf-8", "replace")
        n_dims = int(r.unpack(_U32))
        if n_dims > 8:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
        shape = tuple(int(r.unpack(_U64)) for _ in range(n_dims))
        type_id, offset = int(r.unpack(_U32)), int(r.unpack(_U64))
        type_name = by_id.get(type_id, f"type {type_id}")
        elements = 1
        for d in shape:
            elements *= d
        block, nbytes = sizes.get(type_name, (1, 0))
        infos.append(TensorInfo(name, shape, type_name, offset, elements // block * nbytes))
    alignment = meta.get("general.alignment") or DEFAULT_ALIGNMENT
    if not isinstance(alignment, int) or alignment <= 0:
        raise ValueError(f"general.alignment is {alignment!r}")
    here = r.pos
    data_offset = -(-here // alignment) * alignment
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _fail(path, "no general.architecture in its metadata; not a model file?")
    name = meta.get("general.name")
    return GgufHeader(
        path,
        version,
        arch,
        name if isinstance(name, str) else None,
        data_offset,
        size,
        tuple(infos),
    )


def _type_names() -> dict[int, str]:
    from gguf.constants import GGMLQuantizationType

    return {t.value: t.name for t in GGMLQuantizationType}


def check_gguf(path: Path) -> GgufHeader:
    """Every check that needs only the header (see the module docstring); the header if fine."""
    header = read_header(path)
    if not header.tensors:
        raise _fail(path, "holds no tensors")
    end = max(header.data_offset + t.offset + t.nbytes for t in header.tensors)
    if end > header.size:
        raise _fail(
            path,
            f"truncated: its tensor data ends at byte {end} but the file has {header.size}"
            " bytes (an interrupted download or copy?)",
        )
    arch = header.architecture
    supported = supported_architectures()
    if arch not in supported and _ARCH_ALIASES.get(arch) not in supported:
        import transformers

        raise _fail(
            path,
            f"architecture {arch!r} cannot be loaded from GGUF by transformers"
            f" {transformers.__version__}; supported: {', '.join(supported)}",
        )
    known = quant_sizes()
    usable = dequantisable()
    for t in header.tensors:
        if t.type_name not in known or t.type_name not in usable:
            import importlib.metadata

            version = importlib.metadata.version("gguf")
            raise _fail(
                path,
                f"tensor {t.name!r} is quantised as {t.type_name}, which gguf {version} cannot"
                f" dequantise (it can: {', '.join(sorted(usable))})",
            )
    return header
