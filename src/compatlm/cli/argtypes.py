"""argparse ``type=`` functions for numeric flags: the value is checked when it is parsed.

``type=float`` accepts ``inf`` and ``nan`` and ``type=int`` accepts ``-1``; such values used to
pass every check and crash after all models had run. These functions raise
``argparse.ArgumentTypeError``, which the CLI turns into one ``error:`` line naming the flag
(exit 2). The bounds match the config fields the flags feed (:mod:`compatlm.config`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit


def finite_float(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """A parser of a finite float in [low, high] (``low_open``/``high_open`` exclude ends)."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    wanted = "a finite number" + (f" {' and '.join(parts)}" if parts else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {wanted}, found {text!r}")
        return value

    return parse


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """A parser of an integer in [low, high]."""
    wanted = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, found {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, found {text!r}")
        return value

    return parse


seed = int_range(0, SEED_MAX)
non_negative_int = int_range(0)
non_negative_float = finite_float(0.0)
