"""Run-directory paths and file-safe names: the ONE place they are built.

A run directory (``compatlm eval``, ``compare``, ``rerank`` ...) has a fixed layout::

    config.yaml  env.json  noise.json  metrics.json  report.md  report.html
    predictions/<task>/<role>.jsonl
    examples/<task>.jsonl                       (prompt and choices shown beside each flip)
    flips/<task>/<reference>_vs_<other>.jsonl
    plots/<task>_<reference>_vs_<other>_<what>.png
    .compatlm-run.json  .compatlm.lock          (compatlm's own bookkeeping, see rundir.py)

Two kinds of names become path components:

- names the user chose in a config (task names, role names): :func:`check_name` validates them
  when the config is checked, before a model loads or ``--out`` is touched, and
  :meth:`RunLayout.predictions` re-checks them so nothing can be written outside the run;
- names read from files (the ``task`` / ``role`` fields of prediction files, lm-eval task
  names): :func:`safe_name` sanitises them, and :func:`unique_flips_paths` makes sure that two
  comparisons whose names only differ in sanitised characters (``a b`` vs ``a_b``) never share
  a flips file or a plot.

Every component is at most :data:`MAX_NAME_BYTES` bytes of UTF-8, well under the 255 bytes
file systems allow for one name; longer sanitised names are cut and given a hash suffix.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from compatlm.errors import CompatlmError

NAME_RULE = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
_NAME = re.compile(NAME_RULE)
MAX_NAME_BYTES = 200  # one path component; file systems allow 255 (suffixes need the rest)
_HASH_CHARS = 8

MARKER = ".compatlm-run.json"  # written into every run directory compatlm creates
LOCK = ".compatlm.lock"  # flock'ed by the process writing the run
INCOMPLETE = ".compatlm-incomplete"  # present while a set of outputs is being swapped in
STAGING = ".compatlm-staging"  # where a set of outputs is written before it is swapped in
BOOKKEEPING = (MARKER, LOCK)  # files that do not make a directory "non-empty"


def check_name(field: str, name: object) -> str:
    """Return ``name`` if it is a file-safe task or role name, else raise one line naming the
    field, the value and the rule (letters, digits, ``_ . + -``; first a letter or digit;
    not ``.``/``..``; at most 200 bytes of UTF-8)."""
    rule = (
        "letters, digits and _ . + - only, starting with a letter or digit,"
        f" at most {MAX_NAME_BYTES} bytes"
    )
    if not isinstance(name, str) or not name:
        raise CompatlmError(f"{field}: name {name!r} is empty; expected {rule}")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise CompatlmError(f"{field}: name {name[:40]!r}... is {size} bytes long; expected {rule}")
    if name in (".", "..") or not _NAME.match(name):
        raise CompatlmError(f"{field}: name {name!r} is not file-safe; expected {rule}")
    return name


def _digest(*parts: str) -> str:
    text = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha1(text).hexdigest()[:_HASH_CHARS]


def fit(name: str, limit: int = MAX_NAME_BYTES, *, key: str | None = None) -> str:
    """``name`` if it fits in ``limit`` bytes, else its longest prefix that leaves room for
    ``-<hash>`` (hash of ``key``, default the name itself, so distinct long names stay distinct)."""
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return name
    head = raw[: limit - _HASH_CHARS - 1].decode("utf-8", "ignore")  # never split a character
    return f"{head}-{_digest(key if key is not None else name)}"


def safe_name(name: str) -> str:
    """A name read from a file as one path component: separators, spaces, ``$`` and other
    characters become ``_``, a leading dot too (no hidden files, no ``..``), at most
    :data:`MAX_NAME_BYTES` bytes. Not injective: see :func:`unique_flips_paths`."""
    cleaned = re.sub(r"[^\w.+-]", "_", str(name))
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return fit(cleaned or "_", key=str(name))


def flips_relpath(task: str, reference: str, other: str) -> str:
    """``flips/<task>/<reference>_vs_<other>.jsonl`` (POSIX, relative to the run directory)."""
    pair = fit(f"{safe_name(reference)}_vs_{safe_name(other)}", key=f"{reference}\x00{other}")
    return f"flips/{safe_name(task)}/{pair}.jsonl"


def plot_stem(flips: str) -> str:
    """The plot name of a comparison, derived from its flips path so that distinct plot names
    follow from :func:`unique_flips_paths` (``flips/t/a_vs_b.jsonl`` -> ``t_a_vs_b``)."""
    parts = list(PurePosixPath(flips).with_suffix("").parts)
    if parts and parts[0] == "flips":
        parts = parts[1:]
    return fit("_".join(safe_name(p) for p in parts) or "_", key=flips)


def plot_relpath(comp: Mapping[str, Any], what: str) -> str:
    """``plots/<stem>_<what>.png`` of one metrics.json comparison entry."""
    flips = (comp.get("files") or {}).get("flips")
    if not isinstance(flips, str):
        flips = flips_relpath(str(comp["task"]), str(comp["reference"]), str(comp["other"]))
    return f"plots/{plot_stem(flips)}_{safe_name(what)}.png"


def unique_flips_paths(
    keys: Sequence[tuple[str, str, str]], sources: Sequence[str]
) -> tuple[list[str], list[str | None]]:
    """Flips paths for comparisons ``keys`` = (task, reference, other) such that no two share a
    flips file or a plot name, and per comparison a warning when it was renamed (else None).

    Names that only differ after sanitising (``a b`` / ``a_b``), or the same task name in two
    prediction directories, would otherwise overwrite each other's flips. Within a colliding
    group the first comparison whose names are already file-safe keeps the plain path; the
    others get ``-<hash>`` (of their names and ``sources``, so a rerun gives the same path)
    appended to the task component.
    """
    paths = [flips_relpath(*k) for k in keys]
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(plot_stem(p).casefold(), []).append(i)
    warnings: list[str | None] = [None] * len(keys)
    for members in groups.values():
        if len(members) < 2:
            continue
        clean = [i for i in members if all(safe_name(n) == n for n in keys[i])]
        keep = clean[0] if clean else None
        for i in members:
            if i == keep:
                continue
            task, ref, other = keys[i]
            tag = _digest(task, ref, other, sources[i])
            paths[i] = flips_relpath(fit(f"{safe_name(task)}-{tag}"), ref, other)
            warnings[i] = (
                f"task {task!r} ({ref} vs {other}) shares its file name with another comparison"
                f" after making it file-safe; its flips are in {paths[i]}"
            )
    stems = [plot_stem(p).casefold() for p in paths]
    if len(set(stems)) != len(stems):  # only if two hashes collide as well
        dup = next(p for p, s in zip(paths, stems, strict=True) if stems.count(s) > 1)
        raise CompatlmError(f"two comparisons would share the flips file {dup}; rename a task")
    return paths, warnings


@dataclass(frozen=True)
class RunLayout:
    """Paths inside one run directory ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def noise(self) -> Path:
        return self.root / "noise.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def flips_dir(self) -> Path:
        return self.root / "flips"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def incomplete(self) -> Path:
        return self.root / INCOMPLETE

    @property
    def staging(self) -> Path:
        return self.root / STAGING

    def predictions(self, task: str, role: str) -> Path:
        """``predictions/<task>/<role>.jsonl``; both names must be file-safe (they were checked
        with the config; checked again here so no path can leave the run directory)."""
        return self.predictions_dir / check_name("task", task) / f"{check_name('role', role)}.jsonl"

    def examples(self, task: str) -> Path:
        """``examples/<task>.jsonl``: the prompt and choices of each example eval scored."""
        return self.root / "examples" / f"{check_name('task', task)}.jsonl"

    def flips(self, task: str, reference: str, other: str) -> Path:
        return self.root / flips_relpath(task, reference, other)

    def rerank(self, task: str) -> Path:
        """``rerank/<task>/`` of ``compatlm rerank`` (samples and choices)."""
        return self.root / "rerank" / check_name("task", task)
