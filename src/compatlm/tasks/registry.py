"""The built-in tasks and :func:`resolve_task`: one ``TaskConfig`` → a :class:`ResolvedTask`.

Built-in names: the paper's ``hellaswag``, ``piqa``, ``gsm8k``, ``samsum`` (hub datasets, or a
local copy in the hub schema via ``path``) and their ``demo_*`` twins, which are local
compatlm-JSONL files produced by ``compatlm demo`` and take their defaults from the real task
(shorter generations, since the demo's tiny models answer in a few tokens). Any other name is a
local compatlm-JSONL task: give ``path`` (``kind`` is inferred from the first line if omitted).
Precedence: the user's TaskConfig value, else the spec's default, else the kind's default.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

from compatlm.config import TaskConfig
from compatlm.errors import CompatlmError
from compatlm.tasks.base import (
    MC_METRICS,
    Example,
    Kind,
    ResolvedTask,
    TaskSpec,
    get_task_spec,
    register_task,
    task_names,
)
from compatlm.tasks.extract import get_extractor
from compatlm.tasks.hf import load_gsm8k, load_hellaswag, load_piqa, load_samsum
from compatlm.tasks.local import load_local_jsonl
from compatlm.tasks.similarity import check_generation_metric

log = logging.getLogger(__name__)

# lm-eval 0.4.13 gsm8k `until`; SAMSum prompts are "Dialogue: ...\nSummary:", so a model that
# starts a new dialogue or a blank line has finished its summary.
GSM8K_STOP = ("Question:", "</s>", "<|im_end|>")
SAMSUM_STOP = ("Dialogue:", "Summary:", "\n\n")

_BUILTIN = (
    TaskSpec(
        "hellaswag",
        "multiple_choice",
        "acc_norm",
        load_hellaswag,
        "validation",
        description="HellaSwag sentence completion (4 endings), lm-eval prompt",
    ),
    TaskSpec(
        "piqa",
        "multiple_choice",
        "acc",
        load_piqa,
        "validation",
        description="PIQA physical commonsense (2 solutions), lm-eval prompt",
    ),
    TaskSpec(
        "gsm8k",
        "generation",
        "exact_match",
        load_gsm8k,
        "test",
        extract="gsm8k",
        stop=GSM8K_STOP,
        max_new_tokens=256,
        description="GSM8K grade-school math, exact match of the final number",
    ),
    TaskSpec(
        "samsum",
        "generation",
        "rouge1",
        load_samsum,
        "test",
        stop=SAMSUM_STOP,
        max_new_tokens=128,
        pass_threshold=0.5,
        description="SAMSum dialogue summarisation, ROUGE-1 >= threshold counts as correct",
    ),
)
DEMO_MAX_NEW_TOKENS = 48

for _spec in _BUILTIN:
    register_task(_spec)
    register_task(
        dataclasses.replace(
            _spec,
            name=f"demo_{_spec.name}",
            loader=None,
            max_new_tokens=min(_spec.max_new_tokens, DEMO_MAX_NEW_TOKENS),
            description=f"demo twin of {_spec.name} (local file from `compatlm demo`)",
        )
    )


def _generic_spec(name: str, kind: Kind) -> TaskSpec:
    if kind == "multiple_choice":
        return TaskSpec(name, kind, "acc")
    return TaskSpec(name, kind, "exact_match")


def _check_metric(kind: Kind, metric: str, where: str) -> None:
    if kind == "multiple_choice":
        if metric not in MC_METRICS:
            raise CompatlmError(
                f"{where}.metric: {metric!r} is not a multiple-choice metric;"
                f" expected one of {', '.join(MC_METRICS)}"
            )
    else:
        check_generation_metric(metric, f"{where}.metric")


def _source_kind(cfg: TaskConfig, where: str) -> tuple[TaskSpec | None, Kind | None]:
    spec = get_task_spec(cfg.name)
    if spec is None and cfg.path is None:
        raise CompatlmError(
            f"{where}.name: {cfg.name!r} is not a built-in task (built-in:"
            f" {', '.join(task_names())}); set `path` to a local JSONL file to use any name"
        )
    if spec is not None and spec.loader is None and cfg.path is None:
        raise CompatlmError(
            f"{where}.path: task {cfg.name!r} is a local file (made by `compatlm demo`); give its path"
        )
    if spec is not None and cfg.kind is not None and cfg.kind != spec.kind:
        raise CompatlmError(f"{where}.kind: task {cfg.name!r} is {spec.kind}, not {cfg.kind}")
    return spec, spec.kind if spec is not None else cfg.kind


def check_task_config(cfg: TaskConfig, where: str = "task") -> dict[str, Any]:
    """Validate a task without downloading anything (names, metric, extraction, paths, and the
    whole file for local compatlm-JSONL tasks); returns its effective settings."""
    spec, kind = _source_kind(cfg, where)
    if cfg.path is not None and not Path(cfg.path).expanduser().exists():
        raise CompatlmError(f"{where}.path: {cfg.path} does not exist")
    examples: list[Example] = []
    if spec is not None and spec.loader is not None:
        source = cfg.path or f"hf:{cfg.name}"  # rows are read at eval time, not now
    else:
        assert cfg.path is not None  # guaranteed by _source_kind
        _warn_split_ignored(cfg, where)
        kind, examples = load_local_jsonl(cfg.path, kind)
        source = cfg.path
    assert kind is not None
    task = _finish(cfg, where, spec, kind, examples, source)
    out = task.describe()
    if not examples:
        out["n_examples"] = None  # unknown until the hub dataset is read
    return out


def reads_splits(cfg: TaskConfig) -> bool:
    """True when ``cfg.split`` chooses rows (a built-in task read through its loader); a local
    JSONL file is one split, whatever ``split`` says."""
    spec = get_task_spec(cfg.name)
    return spec is not None and spec.loader is not None


def _warn_split_ignored(cfg: TaskConfig, where: str) -> None:
    """A ``split`` given with a local JSONL file selects nothing; say so unless the file is
    visibly that split's (``.../validation.jsonl``, ``data/test-0000.jsonl``), as the sweep's
    per-split files are."""
    assert cfg.path is not None
    if cfg.split is None or split_in_path(Path(cfg.path).as_posix(), cfg.split):
        return
    log.warning(
        "%s.split: %r selects nothing: %s is one JSONL file, read whole (split applies to"
        " built-in hub tasks); remove it, or give the split's own file",
        where,
        cfg.split,
        cfg.path,
    )


def split_in_path(path: str, split: str) -> bool:
    """Whether a path names ``split`` as a word of its own (``validation.jsonl``,
    ``data/test-0000-of-0001.parquet``; not ``contest.jsonl`` for ``test``)."""
    return re.search(rf"(^|[/_-]){re.escape(split)}([/_.-]|$)", path) is not None


def resolve_task(cfg: TaskConfig, where: str = "task") -> ResolvedTask:
    """Load a task's examples and decide every setting (see the module docstring)."""
    spec, kind = _source_kind(cfg, where)
    if spec is not None and spec.loader is not None:
        examples = spec.loader(cfg.path, cfg.split or spec.default_split)
        source = cfg.path or f"hf:{cfg.name}"
        kind = spec.kind
    else:
        assert cfg.path is not None  # guaranteed by _source_kind
        _warn_split_ignored(cfg, where)
        kind, examples = load_local_jsonl(cfg.path, kind)
        source = cfg.path
    if not examples:
        raise CompatlmError(f"{where}: task {cfg.name!r} has no examples in {source}")
    return _finish(cfg, where, spec, kind, examples, source)


def _finish(
    cfg: TaskConfig,
    where: str,
    spec: TaskSpec | None,
    kind: Kind,
    examples: list[Example],
    source: str,
) -> ResolvedTask:
    """Merge the user's settings over the defaults and validate them."""
    defaults = spec or _generic_spec(cfg.name, kind)
    metric = cfg.metric or defaults.metric
    _check_metric(kind, metric, where)
    extract = cfg.extract or defaults.extract
    get_extractor(extract, f"{where}.extract")  # validate a regex now, not mid-run
    if kind == "multiple_choice":
        gen_keys = ("max_new_tokens", "stop", "no_repeat_ngram_size", "extract", "pass_threshold")
        ignored = [k for k in gen_keys if getattr(cfg, k) is not None]
        if ignored:
            log.warning("%s: %s only apply to generation tasks; ignored", where, ", ".join(ignored))
    if cfg.limit is not None:
        examples = examples[: cfg.limit]
    return ResolvedTask(
        name=cfg.name,
        kind=kind,
        examples=tuple(examples),
        metric=metric,
        source=source,
        split=cfg.split or defaults.default_split,
        extract=extract,
        stop=tuple(cfg.stop) if cfg.stop is not None else defaults.stop,
        max_new_tokens=cfg.max_new_tokens or defaults.max_new_tokens,
        no_repeat_ngram_size=cfg.no_repeat_ngram_size or 0,
        pass_threshold=(
            cfg.pass_threshold if cfg.pass_threshold is not None else defaults.pass_threshold
        ),
        chat_template=cfg.chat_template,
    )
