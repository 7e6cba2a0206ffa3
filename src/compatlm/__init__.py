"""compatlm: measure and reduce regression (negative flips) across base-model updates."""

__version__ = "0.1.0"
