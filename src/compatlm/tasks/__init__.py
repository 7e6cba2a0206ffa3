"""Task registry: multiple-choice and generation tasks from the hub or local JSONL files.

``resolve_task(TaskConfig)`` is the entry point; see :mod:`compatlm.tasks.registry` for the
built-in names and :mod:`compatlm.tasks.local` for the local file format.
"""

from compatlm.tasks.base import (
    Example,
    GenExample,
    Kind,
    MCExample,
    ResolvedTask,
    TaskSpec,
    get_task_spec,
    register_task,
    task_names,
)
from compatlm.tasks.extract import get_extractor, target_answer
from compatlm.tasks.registry import check_task_config, resolve_task
from compatlm.tasks.similarity import similarity

__all__ = [
    "Example",
    "GenExample",
    "Kind",
    "MCExample",
    "ResolvedTask",
    "TaskSpec",
    "check_task_config",
    "get_extractor",
    "get_task_spec",
    "register_task",
    "resolve_task",
    "similarity",
    "target_answer",
    "task_names",
]
