"""File I/O that never leaves half-written output.

Owns: atomic writes (temp file in the same directory + ``os.replace``), strict JSONL reading
with file:line error messages, the resumable append-only JSONL writer used for predictions and
``env.json``. The run-directory rules (``prepare_out_dir``) are :mod:`compatlm.rundir`'s.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compatlm.errors import input_error


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Serialise strictly: NaN/inf are refused (JSON has no such values; use null + reason)."""
    return json.dumps(
        obj, indent=indent, default=_json_default, allow_nan=False, ensure_ascii=False
    )


def _umask() -> int:
    # The process umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes | Iterable[bytes]) -> Path:
    """Write ``data`` (bytes, or chunks of bytes written as they come) to ``path`` so that
    readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; outputs get the permissions any new file would get.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            for chunk in (data,) if isinstance(data, bytes) else data:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, dumps(obj, indent=2) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    # Streamed in batches of lines: a flips file of 300k rows never exists as one string.
    return atomic_write_bytes(path, _jsonl_batches(rows))


def _jsonl_batches(rows: Iterable[Any], size: int = 4096) -> Iterator[bytes]:
    batch: list[str] = []
    for row in rows:
        batch.append(dumps(row))
        if len(batch) == size:
            yield ("\n".join(batch) + "\n").encode("utf-8")
            batch = []
    if batch:
        yield ("\n".join(batch) + "\n").encode("utf-8")


def read_jsonl(path: str | Path, *, allow_empty: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; errors name file and line.

    Raises :class:`CompatlmError` for a missing file, non-UTF-8 bytes, a line :func:`parse_json`
    refuses, a line that is not a JSON object, or (unless ``allow_empty``) an empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise input_error("file not found" if not path.exists() else "not a file", path)
    n = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise input_error(f"not valid UTF-8 (byte {err.start})", path, lineno) from None
            if not text.strip():
                continue
            obj = parse_json(text, path, lineno)
            if not isinstance(obj, dict):
                raise input_error(
                    f"expected a JSON object, found {type(obj).__name__}", path, lineno
                )
            n += 1
            yield lineno, obj
    if n == 0 and not allow_empty:
        raise input_error("file is empty (no JSON lines)", path)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON; use null")


MAX_JSON_DEPTH = 64  # prediction/task/lm-eval rows nest ~6 levels; Python's limit is ~1000
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_MSG = "contains a lone surrogate escape (\\ud800-\\udfff), which is not text"


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys silently; in a prediction or task line that hides
    # which value was meant (two "correct" fields), so it is an error.
    obj = dict(pairs)  # built in C; the key-by-key loop only runs when something repeats
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


# What json.loads(text, **options) builds on every call; one instance serves every line.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_refuse_duplicates)


def parse_json(text: str, path: str | Path, line: int | None = None) -> Any:
    """Strict JSON: what ``json.loads`` accepts minus NaN/Infinity, repeated keys in an object,
    nesting deeper than :data:`MAX_JSON_DEPTH` and lone surrogates (``"\\ud800"`` decodes but
    cannot be written back as UTF-8, so it would crash at write time). Errors name
    ``path:line`` and, below the top level, the top-level field the problem is in."""
    try:
        obj = _DECODER.decode(text)
    except _DuplicateKey as err:
        raise input_error(f"duplicate key {err.key!r} in one JSON object", path, line) from None
    except RecursionError:
        raise input_error(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", path, line) from None
    except ValueError as err:
        raise input_error(f"malformed JSON ({err})", path, line) from None
    # The walk below costs more than the parse. It can only find something when the line holds
    # a surrogate (raw, or as a \uD800-\uDFFF escape: decoded strings get characters no other
    # way) or at least MAX_JSON_DEPTH brackets (depth <= brackets + 1); most lines have neither.
    shallow = text.count("{") + text.count("[") < MAX_JSON_DEPTH
    if shallow and not _SURROGATE.search(text) and not _SURROGATE_ESCAPE.search(text):
        return obj
    # Iterative walk (a recursive one is what deep nesting breaks): depth and strings.
    stack: list[tuple[Any, int, str | None]] = [(obj, 1, None)]
    while stack:
        node, depth, field = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise input_error(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", path, line, field)
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise input_error(_SURROGATE_MSG, path, line, field)
        elif isinstance(node, dict):
            for key, value in node.items():
                if _SURROGATE.search(key):
                    raise input_error(f"a key {_SURROGATE_MSG}", path, line, field)
                stack.append((value, depth + 1, key if field is None else field))
        elif isinstance(node, list):
            stack.extend((value, depth + 1, field) for value in node)
    return obj


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class JsonlAppender:
    """Append-only JSONL writer for resumable runs.

    Each :meth:`write` (one row) or :meth:`write_many` (a chunk of rows) is one ``write`` of
    whole lines followed by flush + fsync, so a killed process loses at most that chunk and
    leaves at most one truncated last line; :func:`load_resumable` drops it on resume. One fsync
    per chunk rather than per row: fsync costs milliseconds on a busy disk (measured: 1,000
    per-row fsyncs took 3.7 s of an 18 s eval while other jobs wrote to disk).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, row: Any) -> None:
        self.write_many([row])

    def write_many(self, rows: Sequence[Any]) -> None:
        if not rows:
            return
        self._fh.write("".join(dumps(row) + "\n" for row in rows))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_resumable(path: str | Path) -> list[dict]:
    """Rows already written by a :class:`JsonlAppender`, validated before anything is changed.

    Every complete line must be a JSON object (errors name file:line, and the file is left as
    it is). Only a final line without its newline — a write cut short by a kill — is cut off,
    and only when it looks like the start of a JSON object line.
    """
    return [row for _, row in load_resumable_lines(path)]


def load_resumable_lines(
    path: str | Path, check: Callable[[int, dict], None] | None = None
) -> list[tuple[int, dict]]:
    """:func:`load_resumable` with the line number of every row; ``check(line, row)`` runs on
    every row before anything is truncated (a row it refuses leaves the file as it is)."""
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise input_error("not a file", path)
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1  # everything after the last newline is an interrupted write
    rows: list[tuple[int, dict]] = []
    for lineno, raw in enumerate(data[:keep].split(b"\n")[:-1], start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise input_error(f"not valid UTF-8 (byte {err.start})", path, lineno) from None
        if not text.strip():
            continue
        obj = parse_json(text, path, lineno)
        if not isinstance(obj, dict):
            raise input_error(f"expected a JSON object, found {type(obj).__name__}", path, lineno)
        if check is not None:
            check(lineno, obj)
        rows.append((lineno, obj))
    if keep != len(data):
        tail = data[keep:]
        if tail.strip() and not tail.lstrip().startswith(b"{"):
            lineno = data[:keep].count(b"\n") + 1
            raise input_error(
                "not a JSON line and not a write cut short (a cut-off line starts with '{')",
                path,
                lineno,
            )
        with path.open("r+b") as fh:
            fh.truncate(keep)
    return rows


def git_hash() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def env_info(**extra: Any) -> dict[str, Any]:
    """Versions and machine facts for ``env.json``; ``extra`` adds seed, device, dtype, …"""
    import importlib.metadata as md

    versions = {}
    for pkg in (
        "compatlm",
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "datasets",
        "tokenizers",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
        "git_hash": git_hash(),
        # When the run started (UTC): reports show it as the run's date.
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["cuda_devices"] = [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ]
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    info.update(extra)
    return info
