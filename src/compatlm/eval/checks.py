"""What ``compatlm eval`` checks before any model loads, and how it continues a run.

Names become paths, so task names must be file-safe (:func:`check_task_names`; role names:
:func:`compatlm.eval.roles.roles_of`) and unique. With ``--resume``
the recorded ``config.yaml`` must describe the same predictions
(:func:`check_resume_config`) and every prediction row already on disk must be a valid line of
an example of the task as it is now, same ``example_hash`` (:func:`validate_done`). A corrupt
file is named with file:line in one error line and left as it is (only a final line cut short
by a kill is truncated, see :func:`compatlm.io.load_resumable_lines`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from compatlm.config import EvalConfig, read_yaml
from compatlm.errors import CompatlmError
from compatlm.io import load_resumable_lines
from compatlm.paths import RunLayout, check_name
from compatlm.tasks import ResolvedTask, resolve_task

Done = dict[tuple[str, str], set[str]]  # (role, task) -> example ids already on disk


def check_task_names(cfg: EvalConfig) -> None:
    """Task names become ``predictions/<task>/`` directories: file-safe, and distinct even on a
    case-insensitive file system."""
    seen: dict[str, int] = {}
    for i, task in enumerate(cfg.tasks):
        check_name(f"tasks[{i}].name", task.name)
        first = seen.setdefault(task.name.casefold(), i)
        if first != i and cfg.tasks[first].name != task.name:
            raise CompatlmError(
                f"tasks[{i}].name: {task.name!r} differs from tasks[{first}].name"
                f" {cfg.tasks[first].name!r} only in case; their files would collide"
            )


def resolve_tasks(cfg: EvalConfig) -> list[ResolvedTask]:
    tasks = [resolve_task(t, f"tasks[{i}]") for i, t in enumerate(cfg.tasks)]
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CompatlmError(f"tasks: name {dupes[0]!r} appears twice; task names must be unique")
    if not tasks:
        raise CompatlmError("tasks: empty; give at least one task")
    return tasks


def check_resume_config(out: Path, cfg: EvalConfig) -> None:
    """Refuse to mix predictions of two configurations in one run directory.

    Settings that do not change predictions may differ: ``out`` (a moved run directory),
    ``compare`` (re-run in full at the end), the batch size (resuming after an out-of-memory
    error with a smaller one is the point) and the progress bar.
    """
    path = RunLayout(out).config
    if not path.is_file():
        return
    previous = read_yaml(path)  # one-line errors for a corrupt file, never a traceback
    current = cfg.model_dump(mode="json")
    for data in (previous, current):
        for key in ("out", "compare"):
            data.pop(key, None)
        for key in ("batch_size", "progress"):
            (data.get("runtime") or {}).pop(key, None)
    if previous != current:
        keys = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        raise CompatlmError(
            f"--resume {out}: config.yaml there differs from this run's configuration"
            f" (in {', '.join(keys)}); resume with the same config and overrides, or use --overwrite"
        )


def done_rows(path: Path, task: ResolvedTask, hashes: dict[str, str]) -> set[str]:
    """Example ids already written (resume), after checking they still describe the same data
    (every row is checked before a cut-off last line would be truncated)."""
    done: set[str] = set()

    def check(i: int, row: dict) -> None:
        eid = row.get("example_id")
        if not isinstance(eid, str) or eid not in hashes:
            raise CompatlmError(
                f"{path}:{i}: field 'example_id': {eid!r} is not an example of task {task.name};"
                " the task data changed since the interrupted run — use --overwrite"
            )
        if row.get("example_hash") != hashes[eid]:
            raise CompatlmError(
                f"{path}:{i}: field 'example_hash': example {eid!r} changed since the interrupted"
                " run — use --overwrite"
            )
        done.add(eid)

    load_resumable_lines(path, check)
    return done


def validate_done(
    out: Path, todo: Iterable[tuple[str, ResolvedTask]], hashes: dict[str, dict[str, str]]
) -> Done:
    """The rows on disk of every (role, task) in ``todo``, read and checked before any model
    loads (a corrupt file fails now with file:line, not after the old model has run again)."""
    layout = RunLayout(out)
    return {
        (role, task.name): done_rows(layout.predictions(task.name, role), task, hashes[task.name])
        for role, task in todo
    }
