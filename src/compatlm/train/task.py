"""Old import path of the task-adapter recipe, kept for code that still imports it: the recipe
is :mod:`compatlm.train.recipes.task`."""

from compatlm.train.recipes.task import train_task

__all__ = ["train_task"]
