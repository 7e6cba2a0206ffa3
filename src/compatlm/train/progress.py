"""The training progress bar (rich, on stderr, main process only)."""

from __future__ import annotations


class Progress:
    """A rich progress bar over optimiser steps with the latest loss; a no-op when disabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import MofNCompleteColumn, TextColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("[bold]train[/] epoch {task.fields[epoch]}"),
            *RichProgress.get_default_columns()[1:3],  # bar, percentage
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            *RichProgress.get_default_columns()[3:],  # time remaining
            console=Console(stderr=True),
        )
        self.task = self.bar.add_task("train", total=total, epoch=1, loss="-")
        self.bar.start()

    def update(self, step: int, loss: float, epoch: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, loss=f"{loss:.4f}", epoch=epoch + 1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
