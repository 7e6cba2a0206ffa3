"""The real task of ``bench/real_update.py``: "which function does this docstring belong to?".

Owns harvesting Python standard-library docstrings offline (``sys.stdlib_module_names`` and the
public submodules of its packages, imported here with their output silenced; ``inspect.getdoc``
of every public function, builtin and class method defined in the module), turning them into
4-choice multiple-choice rows in compatlm's task format, and splitting them by source.

Why this task: it is text nobody on this machine wrote (the standard library's own docs), it
needs no network, and the answer depends on knowledge a pretrained base has (what ``json.dumps``
does) rather than on anything a task adapter can memorise from other functions.

One row per function:

* ``context``: ``Python standard library, <module[.Class]>.`` + the docstring's first paragraph
  (signature lines such as ``S.lower() -> str`` dropped, the function's own name masked as
  ``___``, cut to ``max_tokens`` tokens) + ``Function name:``;
* ``choices``: the function's name and three other names of the same class (or module; else
  of the same module) that the docstring does not mention, in a seeded order; ``label``: the
  index of the right one;
* ``id`` and ``group``: the qualified name (``json.dumps``, ``json.JSONDecoder.decode``): the
  group is the function, so the ≥ N test groups the study needs are ≥ N test functions;
  ``slice``: ``function`` or ``method``.

Docstrings that occur more than once (inherited or re-exported ones) are dropped: the question
would have two right answers. Splits are by top-level package (``asyncio.tasks`` and
``asyncio.events`` land together), so no module, and no package, is in two splits: a test
question is never about a module the adapters were trained on. The split of a package is a
seeded hash of its name, so it does not depend on which modules this Python version ships.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import io
import json
import pkgutil
import random
import re
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Modules whose import has effects (a browser, a poem, a window) or that are tests, not API.
SKIP = {
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "test",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
    "encodings",  # hundreds of codecs with the same encode/decode docstrings
    "__main__",
}
SPLITS = ("train", "validation", "test")
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->\s*.*)?$")


@dataclass(frozen=True)
class Doc:
    module: str  # the defining module, e.g. "json.decoder"
    container: str  # module or module.Class
    name: str  # the function's own name
    doc: str  # inspect.getdoc text

    @property
    def qualname(self) -> str:
        return f"{self.container}.{self.name}"

    @property
    def package(self) -> str:
        return self.module.split(".")[0]


def _quiet_import(name: str) -> Any | None:
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # any module may fail to import (or exit) here: skip it
        return None


def stdlib_modules() -> dict[str, Any]:
    """Importable public standard-library modules and their public submodules, by name."""
    mods: dict[str, Any] = {}
    for name in sorted(sys.stdlib_module_names):
        if name in SKIP or name.startswith("_"):
            continue
        mod = _quiet_import(name)
        if mod is None:
            continue
        mods[name] = mod
        for info in pkgutil.iter_modules(getattr(mod, "__path__", None) or [], name + "."):
            parts = info.name.split(".")[1:]
            if any(p.startswith("_") for p in parts):
                continue
            sub = _quiet_import(info.name)
            if sub is not None:
                mods[info.name] = sub
    return mods


def _callable_doc(obj: Any) -> str | None:
    if not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethoddescriptor(obj)):
        return None
    doc = inspect.getdoc(obj)
    return doc if doc and len(doc) >= 20 else None


def harvest(modules: dict[str, Any] | None = None) -> list[Doc]:
    """Every public function/method with a docstring, attributed to its defining module."""
    modules = stdlib_modules() if modules is None else modules
    found: dict[str, Doc] = {}
    for mname, mod in sorted(modules.items()):
        for name, obj in sorted(vars(mod).items()):
            if name.startswith("_"):
                continue
            doc = _callable_doc(obj)
            # Only where it is defined: os.path.join is posixpath's, not os's.
            if doc and getattr(obj, "__module__", mname) in (mname, None):
                found.setdefault(f"{mname}.{name}", Doc(mname, mname, name, doc))
            if inspect.isclass(obj) and getattr(obj, "__module__", None) == mname:
                for mem, member in sorted(vars(obj).items()):
                    mdoc = None if mem.startswith("_") else _callable_doc(member)
                    if mdoc:
                        container = f"{mname}.{name}"
                        found.setdefault(f"{container}.{mem}", Doc(mname, container, mem, mdoc))
    counts: dict[str, int] = defaultdict(int)
    for d in found.values():
        counts[d.doc] += 1
    return [d for _, d in sorted(found.items()) if counts[d.doc] == 1]


def excerpt(doc: str, mask: Iterable[str], max_chars: int = 320) -> str:
    """The docstring's first paragraph, signature lines dropped and ``mask`` names hidden."""
    lines = doc.strip().splitlines()
    while lines and _SIGNATURE.match(lines[0].strip()):
        lines.pop(0)
    para: list[str] = []
    for line in lines:
        if not line.strip():
            if para:
                break
            continue
        para.append(line.strip())
    text = " ".join(" ".join(para).split())
    for name in sorted(set(mask), key=len, reverse=True):
        text = re.sub(rf"(?<![\w.]){re.escape(name)}(?!\w)", "___", text)
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0] + " ..."
    return text


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text) is not None


def split_of(package: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """The split of a top-level package: a seeded hash, so independent of the other packages."""
    u = int(hashlib.sha256(f"{seed}:{package}".encode()).hexdigest()[:12], 16) / 16**12
    edge = 0.0
    for split, frac in zip(SPLITS, fractions, strict=True):
        edge += frac
        if u < edge:
            return split
    return SPLITS[-1]


def make_rows(
    docs: list[Doc],
    *,
    seed: int = 0,
    count_tokens: Callable[[str], int] | None = None,
    max_tokens: int = 96,
) -> list[dict[str, Any]]:
    """One 4-choice row per docstring with 3 other names to choose from: names of the same
    class (or module), else of the same module, none of them a word of the docstring."""
    names: dict[str, list[str]] = defaultdict(list)
    for d in docs:
        for scope in {d.container, d.module}:
            if d.name not in names[scope]:
                names[scope].append(d.name)
    rows = []
    for d in docs:
        text = excerpt(d.doc, [d.name])  # the answer itself is masked
        # A distractor the docstring names would be a hint (usually: not that one).
        others = [[n for n in names[s] if n != d.name and not _mentions(text, n)]
                  for s in (d.container, d.module)]  # fmt: skip
        pool = next((o for o in others if len(o) >= 3), None)
        if pool is None or not text:
            continue
        rng = random.Random(f"{seed}:{d.qualname}")
        choices = [d.name, *rng.sample(pool, 3)]
        rng.shuffle(choices)
        head = f"Python standard library, {d.container}.\nDocstring: "
        tail = "\nFunction name:"
        # Short sequences: drop words from the excerpt until the context fits in max_tokens.
        words = text.split()
        while count_tokens and words and count_tokens(head + " ".join(words) + tail) > max_tokens:
            words = words[: max(1, len(words) * 4 // 5)] if len(words) > 1 else []
        if not words:
            continue
        rows.append(
            {
                "id": d.qualname,
                "context": head + " ".join(words) + tail,
                "choices": [f" {c}" for c in choices],
                "label": choices.index(d.name),
                "group": d.qualname,
                "slice": "function" if d.container == d.module else "method",
                "module": d.module,
            }
        )
    return rows


def split_rows(
    rows: list[dict[str, Any]],
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.4, 0.2, 0.4),
    sizes: dict[str, int] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Rows by split (by top-level package), each subsampled to ``sizes[split]`` (seeded)."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for r in rows:
        out[split_of(r["module"].split(".")[0], seed, fractions)].append(r)
    for split, want in (sizes or {}).items():
        have = out[split]
        if len(have) < want:
            raise ValueError(f"split {split}: {len(have)} questions, {want} wanted")
        out[split] = sorted(random.Random(f"{seed}:{split}").sample(have, want), key=_key)
    return out


def _key(row: dict[str, Any]) -> str:
    return row["id"]


def write_task(
    out_dir: Path,
    sizes: dict[str, int],
    *,
    seed: int = 0,
    count_tokens: Callable[[str], int] | None = None,
    max_tokens: int = 96,
) -> dict[str, Any]:
    """Write ``train/validation/test.jsonl`` and ``meta.json`` once; reuse them when present."""
    meta_path = out_dir / "meta.json"
    want = {"seed": seed, "sizes": sizes, "max_tokens": max_tokens, "python": sys.version}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("recipe") == want:
            return meta
    rows = make_rows(harvest(), seed=seed, count_tokens=count_tokens, max_tokens=max_tokens)
    splits = split_rows(rows, seed=seed, sizes=sizes)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, items in splits.items():
        # `module` only decided the split: compatlm's task format has no such field.
        text = "".join(
            json.dumps({k: v for k, v in r.items() if k != "module"}, ensure_ascii=False) + "\n"
            for r in items
        )
        tmp = out_dir / f".{split}.jsonl.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / f"{split}.jsonl")
        counts[split] = {
            "questions": len(items),
            "groups": len({r["group"] for r in items}),
            "packages": sorted({r["module"].split(".")[0] for r in items}),
        }
    meta = {"recipe": want, "available_questions": len(rows), "splits": counts}
    meta_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta
