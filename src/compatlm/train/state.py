"""The training loop's resumable state: its counters and the running sums of the current epoch,
as ``checkpoint/state.json`` holds them (:mod:`compatlm.train.checkpoint` writes the file).

:class:`EpochSums` is what one process has summed over the micro-batches of the epoch so far:
token-weighted losses (Σ loss·n, so that the epoch's mean is a ratio of sums, never a mean of
per-batch means), token counts, and the per-token counts of the mechanism diagnostics
(:data:`compatlm.train.diagnostics.COUNT_KEYS`). At the end of an epoch the sums of all
processes are added up (one float64 tensor, :meth:`EpochSums.to_list` order) and become a row
of ``train_log.jsonl`` (:meth:`EpochSums.history_row`).

On disk the sums are a flat list in field order with the count keys last (state.json and the
per-process ``rng_<i>.pt``); :meth:`EpochSums.from_list` also reads the shorter list of a
checkpoint written before the diagnostics counters existed (the missing sums start at 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from compatlm.train.diagnostics import COUNT_KEYS
from compatlm.train.losses import LossOutput


def _zero_counts() -> dict[str, float]:
    return dict.fromkeys(COUNT_KEYS, 0.0)


@dataclass
class EpochSums:
    """Sums over the micro-batches of one epoch (see the module docstring)."""

    loss: float = 0.0  # Σ loss·n
    ce: float = 0.0  # Σ ce·n
    kd: float = 0.0  # Σ kd·n
    loss_tokens: float = 0.0  # Σ n, the valid (loss) tokens
    old_tokens: float = 0.0  # Σ tokens the mask sent to teacher_old
    counts: dict[str, float] = field(default_factory=_zero_counts)  # COUNT_KEYS → Σ count

    def add(self, out: LossOutput, loss: float) -> None:
        """Add one micro-batch's step output (``loss``: its detached loss as a float)."""
        n = out.n_tokens
        self.loss += loss * n
        self.ce += float(out.ce.detach()) * n
        self.kd += float(out.kd.detach()) * n
        self.loss_tokens += n
        self.old_tokens += out.n_old_tokens
        for key in COUNT_KEYS:
            self.counts[key] += out.counts.get(key, 0)

    def to_list(self) -> list[float]:
        return [
            self.loss,
            self.ce,
            self.kd,
            self.loss_tokens,
            self.old_tokens,
            *(self.counts[k] for k in COUNT_KEYS),
        ]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> EpochSums:
        """The inverse of :meth:`to_list`; a shorter (older) list is padded with zeros."""
        n = 5 + len(COUNT_KEYS)
        v = [*values, *[0.0] * n][:n]
        return cls(v[0], v[1], v[2], v[3], v[4], dict(zip(COUNT_KEYS, v[5:], strict=True)))

    def history_row(self, *, epoch: int, step: int, lr: float) -> dict[str, Any]:
        """The ``train_log.jsonl`` fields of an epoch whose sums (over processes) these are."""
        n = max(self.loss_tokens, 1.0)
        return {
            "epoch": epoch,
            "step": step,
            "train_loss": self.loss / n,
            "train_ce": self.ce / n,
            "train_kd": self.kd / n,
            "old_token_fraction": self.old_tokens / n,
            "lr": lr,
            "counts": {
                "loss_tokens": int(self.loss_tokens),
                "old_tokens": int(self.old_tokens),
                **{k: int(self.counts[k]) for k in COUNT_KEYS},
            },
        }


@dataclass
class LoopState:
    """Counters saved in ``checkpoint/state.json``."""

    epoch: int = 0  # current epoch, 0-based
    batches_done: int = 0  # micro-batches of the current epoch already trained
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    sums: EpochSums = field(default_factory=EpochSums)  # the current epoch's, on this process
    lrs: list[float] = field(default_factory=list)
    order_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``sums`` as its flat list, in its place among the fields)."""
        data = asdict(self)
        data["sums"] = self.sums.to_list()
        return data

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> LoopState:
        """A state read from a checkpoint (unknown keys, e.g. ``world_size``, are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in state.items() if k in known}
        values["sums"] = EpochSums.from_list(state.get("sums", []))
        return cls(**values)
