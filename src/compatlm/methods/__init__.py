"""Candidate builders: the alternatives a user weighs against MUSCLE.

Each weight-space method (``port``, ``interpolate``, ``task_arithmetic``, ``muscle``) writes a
candidate directory and returns a ModelSpec string the evaluator loads like any other model;
``rerank`` produces predictions instead. Choose methods by name through
:func:`compatlm.methods.registry.get_method`.
"""

from __future__ import annotations

__all__ = ["get_method", "method_names"]


def __getattr__(name: str):
    # Lazy: importing compatlm.methods must not pull torch/transformers until a method is used.
    if name in __all__:
        from compatlm.methods import registry

        return getattr(registry, name)
    raise AttributeError(name)
