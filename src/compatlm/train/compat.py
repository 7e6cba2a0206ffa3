"""Old import path of the compatibility-adapter recipe, kept for code that still imports it:
the recipe is :mod:`compatlm.train.recipes.compat`."""

from compatlm.train.recipes.compat import cache_teacher, train_compat

__all__ = ["cache_teacher", "train_compat"]
