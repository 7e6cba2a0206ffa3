"""Candidate builders: the alternatives a user weighs against MUSCLE, and MUSCLE itself.

Every method is registered once in :mod:`compatlm.methods.registry` (name, paper, config, what
it produces) and implemented by one module here: ``port``, ``interpolate``, ``task_arithmetic``
(full-weight merges in ``merge``), ``muscle``, ``pct``, ``controls`` (``continue_ce``,
``kd_new``) and ``rerank``. Weight-space methods write a candidate directory and return a
ModelSpec string the evaluator loads like any other model; ``rerank`` produces predictions.
Choose methods by name through :func:`get_method`.
"""

from __future__ import annotations

from compatlm.methods.registry import METHODS, Method, get_method, method_names, register

__all__ = ["METHODS", "Method", "get_method", "method_names", "register"]
