"""The training recipes, each one function that reads top to bottom: :func:`~compatlm.train.
recipes.task.train_task` (a LoRA task adapter) and :func:`~compatlm.train.recipes.compat.
train_compat` (the MUSCLE compatibility adapter and its same-budget controls, arXiv 2407.09435).

A recipe checks its inputs, builds the student, the teachers and a step function from the
components beside it (``compatlm.train.*``) and hands them to the one training loop
(:func:`compatlm.train.loop.run_training`). Components never import a recipe.
"""
