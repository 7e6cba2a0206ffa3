"""Which data a sweep reads, and when: one split to select on, one split to look at once.

:func:`split_task` turns the sweep's ``task`` and a split name into the task config of that
split (a directory's per-split file, a ``{split}`` path filled in, or a hub split);
:func:`sweep_splits` does so for both splits of a sweep config (either of its forms).
:func:`check_selection_split` loads the selection split completely before any candidate is
built, so a missing split or one without labels fails in seconds, not after training.
:func:`check_test_split_exists` only checks that the test split's file is there: its contents
(and labels) are not opened until the winner is fixed (see :mod:`compatlm.methods.sweep`).
"""

from __future__ import annotations

from pathlib import Path

from compatlm.config import TaskConfig
from compatlm.errors import CompatlmError
from compatlm.io import read_jsonl
from compatlm.methods.sweep_config import SweepConfig
from compatlm.tasks.base import get_task_spec
from compatlm.tasks.registry import reads_splits, split_in_path

SPLIT_TOKEN = "{split}"
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


def _is_compatlm_jsonl(task: TaskConfig) -> bool:
    """A local task in compatlm's own JSONL format (not a hub schema read by a loader)."""
    return not reads_splits(task)


def _split_files(directory: Path, split: str) -> list[Path]:
    """Data files named after ``split`` (``validation.jsonl``, ``data/test-0000-of-0001.parquet``,
    ``validation/part.jsonl``). Unlike the task loaders there is no one-file fallback: a
    directory holding only ``test.jsonl`` must not be read as the validation split."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
    return [p for p in files if split_in_path(p.relative_to(directory).as_posix(), split)]


def split_task(task: TaskConfig, split: str, field: str) -> TaskConfig:
    """The task config of ``split`` (``field`` names the setting, e.g. ``select.split``)."""
    if task.split is not None:
        raise CompatlmError(
            f"task.split: {task.split!r} is set, but a sweep picks splits with select.split and"
            " select.test_split; remove task.split"
        )
    if task.path is None:
        if get_task_spec(task.name) is None:
            raise CompatlmError(
                f"task.path: task {task.name!r} is not built in; give a directory of per-split"
                f" files or a path with {SPLIT_TOKEN}"
            )
        return task.model_copy(update={"split": split})  # a hub split, read by the loader
    if SPLIT_TOKEN in task.path:
        path = Path(task.path.replace(SPLIT_TOKEN, split)).expanduser()
        if not path.exists():
            raise CompatlmError(
                f"{field} {split!r}: task file {path} does not exist (task.path {task.path})"
            )
        return task.model_copy(update={"path": str(path), "split": split})
    root = Path(task.path).expanduser()
    if root.is_file():
        raise CompatlmError(
            f"task.path: {root} is one file, so it holds no split {split!r}; use a directory"
            f" with {split}.jsonl (one file per split) or a path containing {SPLIT_TOKEN}"
        )
    if not root.is_dir():
        raise CompatlmError(f"task.path: {root} does not exist")
    files = _split_files(root, split)
    if not files:
        found = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and p.suffix in DATA_SUFFIXES
        )
        raise CompatlmError(
            f"{field} {split!r}: no data file for this split in task directory {root} (found:"
            f" {', '.join(found[:6]) or 'none'}); name the file after the split, e.g."
            f" {split}.jsonl"
        )
    if len(files) == 1:
        return task.model_copy(update={"path": str(files[0]), "split": split})
    if _is_compatlm_jsonl(task):
        raise CompatlmError(
            f"{field} {split!r}: several files match in {root}"
            f" ({', '.join(p.name for p in files[:4])}); a compatlm JSONL split is one file"
        )
    # Sharded hub-schema split: the task's loader reads the same files from the directory.
    return task.model_copy(update={"split": split})


def sweep_splits(
    cfg: SweepConfig,
) -> tuple[TaskConfig, str, TaskConfig | None, str | None, str, str]:
    """(selection task, its split, test task or None, its split, and the config fields that
    name them, for messages) of either form of the sweep config."""
    rule = cfg.rule()
    if rule is None:
        assert cfg.validation is not None  # SweepConfig's validator ensures it
        val_split = cfg.validation.split or "validation"
        test_split = (cfg.test.split or "test") if cfg.test is not None else None
        return cfg.validation, val_split, cfg.test, test_split, "validation", "test"
    assert cfg.task is not None
    val = split_task(cfg.task, rule.split, "select.split")
    if rule.test_split is False:
        return val, rule.split, None, None, "select.split", "select.test_split"
    test = split_task(cfg.task, rule.test_split, "select.test_split")
    return val, rule.split, test, rule.test_split, "select.split", "select.test_split"


def _missing_label(path: Path) -> tuple[int, str] | None:
    """(line, field) of the first row of a compatlm JSONL file that carries no label."""
    for line, obj in read_jsonl(path):
        if "choices" in obj and obj.get("label") is None:
            return line, "label"
        if "prompt" in obj and obj.get("reference") is None:
            return line, "reference"
    return None


def check_selection_split(task: TaskConfig, where: str) -> int:
    """Load the selection split now (before training): it must exist and carry labels.
    ``where`` names it in messages (``select.split 'validation'``). Returns its size."""
    from compatlm.tasks import resolve_task

    path = Path(task.path).expanduser() if task.path is not None else None
    if path is not None and path.is_file() and _is_compatlm_jsonl(task):
        missing = _missing_label(path)
        if missing is not None:
            line, key = missing
            raise CompatlmError(
                f"{where}: task file {path} has no labels (line {line} has no {key!r});"
                " selection needs a labelled split"
            )
    try:
        resolved = resolve_task(task, where)
    except CompatlmError as err:
        text = str(err)
        if text.startswith(where):
            raise
        raise CompatlmError(f"{where}: {text}") from None
    return len(resolved.examples)


def check_test_split_exists(task: TaskConfig, where: str) -> None:
    """The test split's file must exist; nothing in it is read here (no labels before the
    winner is fixed). Hub splits are checked when they are loaded."""
    if task.path is None:
        return
    path = Path(task.path).expanduser()
    if not path.exists():
        raise CompatlmError(f"{where}: task file {path} does not exist")


def same_file(a: TaskConfig, b: TaskConfig) -> bool:
    """Two split configs that read the very same local file (selection would see test)."""
    if a.path is None or b.path is None:
        return a.path == b.path and a.name == b.name and a.split == b.split
    pa, pb = Path(a.path).expanduser(), Path(b.path).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve() and a.split == b.split
