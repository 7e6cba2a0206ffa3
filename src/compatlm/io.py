"""File I/O that never leaves half-written output.

Owns: atomic writes (temp file in the same directory + ``os.replace``), strict JSONL reading
with file:line error messages, the resumable append-only JSONL writer used for predictions,
run-directory preparation (refuse a non-empty ``--out`` without ``--overwrite``) and ``env.json``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from compatlm.errors import CompatlmError, input_error


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


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
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


def atomic_write_jsonl(path: str | Path, rows: list[Any]) -> Path:
    return atomic_write_text(path, "".join(dumps(r) + "\n" for r in rows))


def read_jsonl(path: str | Path, *, allow_empty: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; errors name file and line.

    Raises :class:`CompatlmError` for a missing file, non-UTF-8 bytes, malformed JSON, NaN/inf
    literals, a line that is not a JSON object, or (unless ``allow_empty``) an empty file.
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
            try:
                obj = json.loads(text, parse_constant=_reject_constant)
            except ValueError as err:
                raise input_error(f"malformed JSON ({err})", path, lineno) from None
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
    """Rows already written by a :class:`JsonlAppender`; a truncated final line is cut off."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1  # everything after the last newline is an interrupted write
    if keep != len(data):
        with path.open("r+b") as fh:
            fh.truncate(keep)
    rows = []
    for line in data[:keep].decode("utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def prepare_out_dir(out: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``out`` for a run. A non-empty directory is refused unless ``overwrite`` (which
    empties it) or ``resume`` (which keeps what is there so the run continues from it)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CompatlmError(f"--out {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif not resume:
            raise CompatlmError(
                f"--out {out}: directory is not empty; pass --overwrite to replace it"
                " or --resume to continue the run in it"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CompatlmError(f"--out {out}: cannot create directory ({err.strerror})") from None
    if not os.access(out, os.W_OK):
        raise CompatlmError(f"--out {out}: directory is not writable")
    return out


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
