"""Progress bars of long scoring and generation work: one look for eval and rerank.

A rich bar on stderr (stdout stays for results and pipes), one line per job with its count and
time remaining; ``enabled=False`` (``runtime.progress=false``, logs, CI) draws nothing. Training
has its own bar over optimiser steps (:mod:`compatlm.train.progress`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Progress]:
    """A started rich ``Progress``; add one job per phase with ``add_task(description, total)``."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    ) as bar:
        yield bar
