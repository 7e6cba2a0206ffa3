"""Who is evaluated with which model: the roles of an eval config and their models per task.

A role is ``old``, ``new``, a candidate, or a name that only a task's ``models`` mentions. Each
role has a default ModelSpec and may use another one per task (each task has its own adapter);
:func:`model_groups` turns that into "load this model once, run these tasks with it", the
order of work of ``compatlm eval`` and of its noise-floor step. :func:`tokenizer_check`
fingerprints every role's tokenizer before any model is loaded, so a tokenizer change between
old and new is known (and said) at the start of a run, not after the first model was scored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from compatlm.config import EvalConfig, RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.eval.checks import check_task_names
from compatlm.models import load_tokenizer, tokenizer_fingerprint
from compatlm.paths import check_name
from compatlm.spec import ModelSpec
from compatlm.tasks import ResolvedTask

log = logging.getLogger(__name__)

RESERVED_ROLES = ("old", "new")
_ROLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def roles_of(cfg: EvalConfig) -> list[tuple[str, ModelSpec | None]]:
    """``[(role, default spec)]`` in evaluation order: old, new, candidates, then roles named
    only in a task's ``models`` (default None). Task and role names must be file-safe (the
    specs themselves were parsed when the config loaded)."""
    check_task_names(cfg)
    roles: list[tuple[str, ModelSpec | None]] = [("old", cfg.old), ("new", cfg.new)]
    roles += list(cfg.candidates.items())
    for task in cfg.tasks:
        roles += [(r, None) for r in task.models if r not in dict(roles)]
    folded = [r.casefold() for r, _ in roles]
    for name, _ in roles[2:]:
        reserved = name.casefold() in RESERVED_ROLES or folded.count(name.casefold()) > 1
        if reserved or not _ROLE_NAME.match(name) or "_vs_" in name:
            raise CompatlmError(
                f"candidates: name {name[:60]!r} must be a file-safe name (letters, digits,"
                " _ . -), not 'old'/'new' in any case, unique ignoring case, without '_vs_'"
            )
        check_name("candidates", name)  # the length limit
    return roles


def task_specs(cfg: EvalConfig, role: str, default: ModelSpec | None) -> dict[str, ModelSpec]:
    """``{task name: spec}`` the role is evaluated with (a task's own ``models`` win)."""
    out = {}
    for task in cfg.tasks:
        spec = task.models.get(role, default)
        if spec is not None:
            out[task.name] = spec
    return out


def model_groups(
    cfg: EvalConfig,
    role: str,
    default: ModelSpec | None,
    tasks: Sequence[ResolvedTask],
    *,
    kind: str | None = None,
) -> dict[ModelSpec, list[ResolvedTask]]:
    """The role's tasks (of ``kind``, if given) grouped by the model they run with, in task
    order: each model is loaded once and only one is in memory at a time."""
    specs = task_specs(cfg, role, default)
    groups: dict[ModelSpec, list[ResolvedTask]] = {}
    for task in tasks:
        spec = specs.get(task.name)
        if spec is not None and (kind is None or task.kind == kind):
            groups.setdefault(spec, []).append(task)
    return groups


@dataclass
class TokenizerCheck:
    """Every role's tokenizer fingerprint (its first model's, in task order) and the warnings
    for models that tokenise differently from old."""

    fingerprints: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def tokenizer_check(
    cfg: EvalConfig, tasks: Sequence[ResolvedTask], runtime: RuntimeConfig
) -> TokenizerCheck:
    """Fingerprint the tokenizer of every model of every role (tokenizers only: no weights),
    warn once per model that tokenises differently from old.

    Prompt hashes are over token ids, so they necessarily differ across tokenizers; the data
    is then proven the same by the example hashes instead (the comparison at the end of the
    run says so in metrics.json).
    """
    check = TokenizerCheck()
    seen: dict[ModelSpec, str] = {}
    for role, default in roles_of(cfg):
        for spec in model_groups(cfg, role, default, tasks):
            if spec not in seen:
                seen[spec] = tokenizer_fingerprint(load_tokenizer(spec, runtime))
            check.fingerprints.setdefault(role, seen[spec])
            old = check.fingerprints["old"]
            if seen[spec] != old:
                msg = (
                    f"{role} ({spec}) tokenises differently from old ({cfg.old}): tokenizer"
                    f" {seen[spec]} vs {old}; prompt hashes will differ, so the comparison"
                    " verifies example hashes instead"
                )
                log.warning(msg)
                check.warnings.append(msg)
    return check
