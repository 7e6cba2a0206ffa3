"""The demo model family: offline build and cached loading.

Owns :func:`build_or_load_family`, which returns a :class:`Family` of paths — shared tokenizer,
``old`` and ``new`` base directories and the four task directories — building it once per
recipe (:mod:`compatlm.demo.build`) into the cache (:mod:`compatlm.demo.cache`). What a family
is made of, :class:`FamilyRecipe` and its :func:`corpora`, lives in :mod:`compatlm.demo.recipe`
and is re-exported here, its usual import path.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compatlm.demo import cache
from compatlm.demo.recipe import (
    ADAPTER_HINT,
    FAMILIES,
    FORMAT_VERSION,
    ROLES,
    SKILLS_FORMAT,
    BaseRecipe,
    FamilyRecipe,
    SplitSizes,
    corpora,
)
from compatlm.demo.tasks import SPLITS, TASKS, TaskKind
from compatlm.errors import CompatlmError

__all__ = [
    "ADAPTER_HINT",
    "FAMILIES",
    "FORMAT_VERSION",
    "ROLES",
    "SKILLS_FORMAT",
    "BaseRecipe",
    "Family",
    "FamilyRecipe",
    "SplitSizes",
    "build_or_load_family",
    "corpora",
    "required_files",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """A built demo family on disk (every path lives under ``root``)."""

    root: Path
    recipe: FamilyRecipe
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    info: dict[str, Any] = field(default_factory=dict)  # build stats from family.json
    # How the bases compare with the documented reference build (demo.reference.check_reference)
    build: dict[str, Any] = field(default_factory=dict)

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def old_dir(self) -> Path:
        return self.root / "old"

    @property
    def new_dir(self) -> Path:
        return self.root / "new"

    def base_dir(self, role: str) -> Path:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return self.root / role

    def task_dir(self, task: str) -> Path:
        """Directory with ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``."""
        self.task_kind(task)
        return self.root / "tasks" / task

    def task_kind(self, task: str) -> TaskKind:
        if task not in TASKS:
            raise CompatlmError(f"unknown demo task {task!r}; expected one of {sorted(TASKS)}")
        return TASKS[task]


def required_files() -> list[str]:
    files = ["family.json", "recipe.json", "tokenizer/tokenizer.json"]
    for role in ROLES:
        files += [f"{role}/config.json", f"{role}/model.safetensors", f"{role}/tokenizer.json"]
    files += [f"tasks/{t}/{s}.jsonl" for t in TASKS for s in SPLITS]
    return files


def build_or_load_family(
    recipe: FamilyRecipe | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> Family:
    """Return the family for ``recipe`` (default: :meth:`FamilyRecipe.default`), building it if
    the cache has no verified entry. ``cache_dir`` replaces the cache root (else
    ``$COMPATLM_CACHE``, else ``~/.cache/compatlm``); the entry is ``<root>/demo/<hash>``.
    ``workers``: processes for pre-training the two bases (default: 2 if the machine has 2+
    cores and the recipe is large enough to pay for starting them, else 1).
    """
    recipe = recipe or FamilyRecipe.default()
    key = recipe.key()
    entry = cache.cache_root(cache_dir) / "demo" / key
    problem = cache.verify(entry, key, required_files()) if entry.exists() else "not built yet"
    if problem is None:
        log.info("demo family %s: cache hit at %s", key, entry)
        return _load(entry, recipe)
    log.info("demo family %s: building into %s (%s)", key, entry, problem)
    # Imported here, not at the top: the build's workers run ``python -m compatlm.demo.build``,
    # which imports this package first, and runpy warns (on the workers' stderr) when the
    # module it is about to run as __main__ was already imported.
    from compatlm.demo.build import build_family

    n_workers = workers if workers is not None else _auto_workers(recipe)
    cache.build_entry(
        entry,
        key,
        lambda tmp: build_family(recipe, tmp, progress=progress, workers=n_workers),
        required_files(),
    )
    return _load(entry, recipe)


def _auto_workers(recipe: FamilyRecipe) -> int:
    # Two 1-thread processes beat one 2-thread process on these tiny matrices, but spawning a
    # process costs a few seconds of imports: only worth it for the full-size recipe.
    big = recipe.new.corpus.n_docs >= 10_000
    return 2 if big and (os.cpu_count() or 1) >= 2 else 1


def _load(entry: Path, recipe: FamilyRecipe) -> Family:
    from compatlm.demo.reference import check_reference, manifest_of

    info = json.loads((entry / "family.json").read_text(encoding="utf-8"))
    build = check_reference(recipe.key(), info, manifest_of(entry))
    return Family(root=entry, recipe=recipe, tasks=list(TASKS), info=info, build=build)
