"""Run-directory safety: what compatlm may delete, resume, lock and clean up in ``--out``.

Rules (every command with ``--out``):

- every run directory compatlm creates gets a marker, ``.compatlm-run.json`` (kind + version);
  ``--overwrite`` only ever empties a directory carrying it, never anything else, and refuses
  even then when an input of the run (config file, task files, local models or adapters,
  compared files) lies inside ``--out``, when ``--out`` is a symbolic link, or when it is the
  file-system root, the home directory, the working directory or one of its ancestors;
- ``--resume`` continues only in a directory with the marker (of the same kind of run);
- one process writes a run at a time: ``.compatlm.lock`` is ``flock``-ed (non-blocking) for the
  whole command, a second process gets one line naming the first one's pid. The lock file is
  never deleted (deleting a lock file races with the next process opening it);
- temporary files of the atomic writer that a killed process left behind are removed when the
  run is resumed.

Locks are held until :func:`release_locks` (the CLI calls it when a command ends) or the process
exits; the same process may prepare the same directory again (a run that recompares itself).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from compatlm import __version__
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_json
from compatlm.paths import BOOKKEEPING, LOCK, MARKER, STAGING

MARKER_VERSION = 1
# tempfile.mkstemp(prefix=".<name>.", suffix=".tmp") in compatlm.io.atomic_write_bytes:
# eight random characters from [a-z0-9_] between them.
_ATOMIC_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_HELD: dict[Path, int] = {}  # resolved run directory -> open, flock'ed lock file descriptor


# Config keys naming outputs or caches (regenerable), not inputs a run reads.
_NOT_INPUTS = frozenset({"out", "cache_dir", "new_cache_dir"})


def input_paths(*sources: Any) -> list[Path]:
    """Local files and directories a run reads, found in its configs: every string (in pydantic
    models, mappings and lists, keys of :data:`_NOT_INPUTS` skipped) that is an existing path,
    or a ModelSpec whose base or adapter is one. ``--overwrite`` must never delete these."""
    from pydantic import BaseModel

    from compatlm.spec import ModelSpec

    found: list[Path] = []

    def visit(value: Any) -> None:
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        if isinstance(value, dict):
            for key, item in value.items():
                if key not in _NOT_INPUTS:
                    visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, (str, os.PathLike)) and str(value).strip():
            text = os.fspath(value)
            candidates = [text]
            if "+" in text or "@" in text:
                try:
                    spec = ModelSpec.parse(text)
                except CompatlmError:
                    spec = None
                if spec is not None:
                    candidates += [spec.base, spec.adapter or ""]
            found.extend(Path(c) for c in candidates if c and os.path.exists(c))

    for source in sources:
        visit(source)
    return found


def _contents(out: Path) -> list[Path]:
    """Entries of ``out`` that make it non-empty (compatlm's bookkeeping files do not)."""
    return [p for p in out.iterdir() if p.name not in BOOKKEEPING]


def read_marker(out: Path) -> dict[str, Any] | None:
    """The marker of ``out`` (None when there is none or it is unreadable)."""
    import json

    try:
        data = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _not_a_run(out: Path, action: str, owned_by: str = MARKER) -> CompatlmError:
    return CompatlmError(
        f"--out {out}: not a compatlm run directory (no {owned_by}); refusing to {action} it"
        " — choose an empty or new --out"
    )


def _protected(out: Path) -> str | None:
    """Why deleting the contents of ``out`` is never acceptable, or None."""
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if real == Path(real.anchor):
        return "is the file-system root"
    if real == Path.home().resolve():
        return "is the home directory"
    if cwd == real:
        return "is the working directory"
    if cwd.is_relative_to(real):
        return f"contains the working directory {cwd}"
    return None


def check_inputs_outside(out: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse ``--overwrite`` of an existing ``out`` that holds one of the run's inputs."""
    out = Path(out)
    if not out.is_dir():
        return
    real = out.resolve()
    for p in inputs:
        if Path(p).exists() and Path(p).resolve().is_relative_to(real):
            raise CompatlmError(
                f"--out {out}: contains the input {p}; --overwrite would delete it"
                " — choose another --out"
            )


def check_out_dir(
    out: str | Path,
    *,
    kind: str,
    overwrite: bool = False,
    resume: bool = False,
    inputs: Iterable[str | Path] = (),
    resumable: bool = True,
    owned_by: str = MARKER,
) -> None:
    """Every refusal of :func:`prepare_out_dir`, without writing anything (a multi-process run
    calls this on every process so they all fail together). ``owned_by`` names the file that
    shows compatlm made the directory (a teacher cache is recognised by its index instead)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CompatlmError(f"--out {out}: exists and is not a directory")
    if not out.is_dir():
        return
    contents = _contents(out)
    if not contents:
        return
    if overwrite:
        if out.is_symlink():
            raise CompatlmError(
                f"--out {out}: is a symbolic link; refusing to delete through it — pass the"
                f" directory it points to ({out.resolve()}) or choose a new --out"
            )
        why = _protected(out)
        if why:
            raise CompatlmError(f"--out {out}: {why}; refusing to delete it — choose a new --out")
        check_inputs_outside(out, inputs)
        if not (out / owned_by).is_file():
            raise _not_a_run(out, "delete", owned_by)
        return
    if resume:
        marker = read_marker(out)
        if owned_by == MARKER and marker is None:
            raise _not_a_run(out, "resume in")
        found = (marker or {}).get("kind", kind)
        if found != kind:
            raise CompatlmError(
                f"--out {out}: made by `compatlm {found}`, not `compatlm {kind}`; refusing to"
                " resume in it — choose another --out"
            )
        return
    hint = (
        "pass --overwrite to replace it or --resume to continue the run in it"
        if resumable
        else "pass --overwrite to replace it or choose another --out"
    )
    raise CompatlmError(f"--out {out}: directory is not empty; {hint}")


def lock(out: str | Path) -> None:
    """Hold ``out/.compatlm.lock`` for this process (no-op if it already does)."""
    out = Path(out)
    key = out.resolve()
    if key in _HELD:
        return
    try:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise CompatlmError(f"--out {out}: cannot create {LOCK} ({err.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise CompatlmError(
            f"--out {out}: another compatlm run (pid {pid}) is writing to this directory; wait"
            " for it to finish or choose another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    _HELD[key] = fd


def locked_elsewhere(directory: Path) -> bool:
    """True when another process holds ``directory``'s lock right now."""
    if directory.resolve() in _HELD or not (directory / LOCK).is_file():
        return False
    try:
        fd = os.open(directory / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def unlock(out: str | Path) -> None:
    """Release ``out``'s lock if this process holds it (before deleting ``out``)."""
    fd = _HELD.pop(Path(out).resolve(), None)
    if fd is not None:
        os.close(fd)


def release_locks() -> None:
    """Release every run lock this process holds (the end of a command)."""
    while _HELD:
        _, fd = _HELD.popitem()
        os.close(fd)


def remove_stale_tmps(out: Path) -> list[Path]:
    """Delete temp files of the atomic writer a killed process left in ``out`` (recursively,
    skipping nested run directories another process is writing). Returns what was removed."""
    removed: list[Path] = []
    for root, dirs, files in os.walk(out):
        here = Path(root)
        dirs[:] = [d for d in dirs if not locked_elsewhere(here / d)]
        for name in files:
            if _ATOMIC_TMP.match(name):
                (here / name).unlink(missing_ok=True)
                removed.append(here / name)
    return removed


def _empty(out: Path) -> None:
    """Delete everything in ``out`` except the lock file (held by us)."""
    for p in out.iterdir():
        if p.name == LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def prepare_out_dir(
    out: str | Path,
    *,
    kind: str = "run",
    overwrite: bool = False,
    resume: bool = False,
    inputs: Iterable[str | Path] = (),
    resumable: bool = True,
) -> Path:
    """Create (or reuse) ``out`` for a run of ``kind`` under the rules of the module docstring:
    refuse a non-empty directory unless ``overwrite`` (empties a compatlm run directory) or
    ``resume`` (keeps it); then lock it, remove stale temp files and write the marker."""
    out = Path(out)
    inputs = list(inputs)
    check_out_dir(
        out, kind=kind, overwrite=overwrite, resume=resume, inputs=inputs, resumable=resumable
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CompatlmError(f"--out {out}: cannot create directory ({err.strerror})") from None
    if not os.access(out, os.W_OK):
        raise CompatlmError(f"--out {out}: directory is not writable")
    lock(out)
    if overwrite and _contents(out):
        # Checked again under the lock: another run may have written here meanwhile.
        check_out_dir(out, kind=kind, overwrite=True, inputs=inputs)
        _empty(out)
    else:
        remove_stale_tmps(out)
        shutil.rmtree(out / STAGING, ignore_errors=True)
    if read_marker(out) is None or not _contents(out):
        marker = {"kind": kind, "version": MARKER_VERSION, "compatlm": __version__}
        atomic_write_json(out / MARKER, marker)
    return out
