"""Flipped instances of one comparison: which they are (arrays) and their flips-file lines.

Owns :func:`flip_table` (the flip types of every matched instance, vectorised, and the
within-noise counts) and :class:`FlipTable`, the flips of a
:class:`~compatlm.eval.compare.Comparison`. A table keeps row indices and a few small arrays,
and builds the flips-file dicts only while they are iterated, a chunk at a time, reading each
side's ``output`` back from its file: 300k flips as dicts would be ~0.5 GB.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from compatlm.eval.records import PredictionSet

# Bit k of a flip's type mask is TYPES[k]; a row's flip_types list is in this order.
TYPES = ("negative", "positive", "inconsistency", "similarity_negative", "similarity_positive")
_LISTS = [tuple(t for b, t in enumerate(TYPES) if m >> b & 1) for m in range(1 << len(TYPES))]
_CHUNK = 8192  # flips built per step of an iteration


def _floats(x: np.ndarray) -> list[float | None]:
    # NaN is how the columns store null scores and margins.
    return [None if v != v else v for v in x.tolist()]


class FlipTable(Sequence):
    """The flipped instances of one comparison, in the reference file's order.

    A sequence of flips-file rows (dicts), built on access. ``decorate`` (set by
    :meth:`set_decorate`) is called on every chunk of rows before they are handed out: the
    run-directory comparison attaches prompts and choices that way.
    """

    def __init__(
        self,
        task: str,
        roles: tuple[str, str],
        sets: tuple[PredictionSet, PredictionSet],
        rows: tuple[np.ndarray, np.ndarray],  # (F,) int64 row in each set
        masks: np.ndarray,  # (F,) uint8 flip-type bits
        delta: np.ndarray | None,  # (F,) float64 score change, or None without scores
        noisy: np.ndarray | None,  # (F,) int8: 1 within noise, 0 not, -1 unknown; or None
        slices: tuple[np.ndarray, list[Any]],  # (F,) codes into the values list
    ) -> None:
        self.task, self.roles = task, roles
        self._sets: tuple[PredictionSet, PredictionSet] | None = sets
        self._rows, self._masks, self._delta, self._noisy = rows, masks, delta, noisy
        self._slices = slices
        self._decorate: Callable[[list[dict[str, Any]]], Any] | None = None

    def __len__(self) -> int:
        return len(self._masks)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [row for s in range(*k.indices(len(self))) for row in self._build(s, s + 1)]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        return self._build(k, k + 1)[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, len(self), _CHUNK):
            yield from self._build(start, min(start + _CHUNK, len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, FlipTable)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FlipTable({self.task!r}, {len(self)} flips)"

    def release(self) -> None:
        """Drop the prediction sets (and so, once nothing else holds them, their columns):
        after the flips file is written the report renders from files alone."""
        self._sets = None  # type: ignore[assignment]

    def set_decorate(self, fn: Callable[[list[dict[str, Any]]], Any] | None) -> None:
        self._decorate = fn

    def example_ids(self) -> list[str]:
        """The example id of every flip, in order."""
        if self._sets is None:
            raise RuntimeError("the flips were released after they were written")
        return self._sets[0].ids(self._rows[0])

    def _sides(self, which: int, rows: np.ndarray) -> list[dict[str, Any]]:
        assert self._sets is not None
        ps = self._sets[which]
        cols = ps.columns
        outputs = ps.outputs(rows)
        parsed = cols.parsed.take(rows)
        target = cols.target.take(rows)
        correct = cols.correct[rows].tolist()
        score, margin = _floats(cols.score[rows]), _floats(cols.margin[rows])
        return [
            {"output": o, "parsed": p, "target": t, "correct": c, "score": s, "margin": m}
            for o, p, t, c, s, m in zip(
                outputs, parsed, target, correct, score, margin, strict=True
            )
        ]

    def _build(self, start: int, stop: int) -> list[dict[str, Any]]:
        # Thousands of fresh dicts would make the cyclic collector rescan them over and over
        # (it triggers on allocations; these hold no cycles): paused while a chunk is built.
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._rows_of(start, stop)
        finally:
            if paused:
                gc.enable()

    def _rows_of(self, start: int, stop: int) -> list[dict[str, Any]]:
        if self._sets is None:
            raise RuntimeError("the flips were released after they were written")
        ra, rb = self._rows[0][start:stop], self._rows[1][start:stop]
        ids = self._sets[0].ids(ra)  # type: ignore[index]
        refs, others = self._sides(0, ra), self._sides(1, rb)
        masks = self._masks[start:stop].tolist()
        delta = [None] * len(ra) if self._delta is None else self._delta[start:stop].tolist()
        noisy = [None] * len(ra) if self._noisy is None else self._noisy[start:stop].tolist()
        codes, values = self._slices
        slices = [values[c] for c in codes[start:stop].tolist()]
        task, (ref_role, other_role) = self.task, self.roles
        out = []
        for i, m, s, a, b, d, z in zip(ids, masks, slices, refs, others, delta, noisy, strict=True):
            types = list(_LISTS[m])
            out.append(
                {
                    "task": task,
                    "example_id": i,
                    "flip": types[0],
                    "flip_types": types,
                    "slice": s,
                    "reference_role": ref_role,
                    "other_role": other_role,
                    "reference": a,
                    "other": b,
                    "score_delta": d,
                    "within_noise": None if z is None or z < 0 else bool(z),
                }
            )
        if self._decorate is not None:
            self._decorate(out)
        return out


def flip_masks(
    oc: np.ndarray,
    nc: np.ndarray,
    inconsistent: np.ndarray | None,
    delta: np.ndarray | None,
    tolerance: float,
) -> np.ndarray:
    """(N,) uint8 flip-type bits of every matched instance (0 = not flipped).

    ``oc``/``nc``: (N,) bool correct of reference/other; ``inconsistent``: (N,) bool parsed
    answers differ; ``delta``: (N,) float64 other score minus reference score.
    """
    masks = (oc & ~nc).astype(np.uint8)  # negative
    masks |= (~oc & nc).astype(np.uint8) << 1  # positive
    if inconsistent is not None:
        masks |= (inconsistent & ~nc).astype(np.uint8) << 2
    if delta is not None:
        masks |= (delta < -tolerance).astype(np.uint8) << 3
        masks |= (delta > tolerance).astype(np.uint8) << 4
    return masks


def within_noise(
    margins: tuple[np.ndarray, np.ndarray], negative: np.ndarray, noise_margin: float | None
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """(F,) int8 within-noise label of each flip (1/0, -1 where a margin is missing) and the
    noise entry of metrics.json. ``margins``: (F,) float64 per side (NaN = null);
    ``negative``: (F,) bool the flip is a negative one.

    A flip whose decision margin is tiny on both sides may be numerical noise (the same model
    at another batch size or dtype flips it too): it is labelled, not hidden.
    """
    keys = ("flips_within_noise", "negative_flips_within_noise")
    noise: dict[str, Any] = {"noise_margin": noise_margin}
    if noise_margin is None:
        noise.update(dict.fromkeys(keys))
        return None, noise
    ma, mb = margins
    known = ~np.isnan(ma) & ~np.isnan(mb)
    noisy = known & (np.abs(ma) < noise_margin) & (np.abs(mb) < noise_margin)  # (F,) bool
    noise.update(zip(keys, (int(noisy.sum()), int((noisy & negative).sum())), strict=True))
    labels = np.where(known, noisy.astype(np.int8), np.int8(-1)).astype(np.int8)
    return labels, noise
