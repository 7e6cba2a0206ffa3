"""Comparing prediction sets: join, integrity checks, flips, metrics.json.

Owns the step from predictions to numbers. :func:`compare_sets` (pure) joins two
:class:`~compatlm.eval.records.PredictionSet` on ``example_id``, verifies ``example_hash`` and
``prompt_hash`` where both sides are hashed the same way, reports unmatched rows instead of
dropping them silently, and measures flips (:mod:`compatlm.eval.metrics`).
:mod:`compatlm.eval.compare_io` turns it into files (``compare_files``, ``compare_run``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from compatlm.config import CompareConfig
from compatlm.errors import CompatlmError
from compatlm.eval.metrics import measure
from compatlm.eval.records import Prediction, PredictionSet

log = logging.getLogger(__name__)

_FIRST_IDS = 10  # how many unmatched / mismatched ids to name


@dataclass
class Comparison:
    """The outcome of comparing a reference set with another one on one task."""

    task: str
    kind: str | None
    reference: str
    other: str
    files: dict[str, str]
    n: int
    unmatched: dict[str, Any]
    counts: dict[str, Any]
    metrics: dict[str, Any]
    similarity: dict[str, Any]
    slices: dict[str, Any]
    noise: dict[str, Any]
    warnings: list[str]
    flips: list[dict[str, Any]] = field(repr=False)
    relative_to_baseline: dict[str, Any] | None = None

    @property
    def flips_relpath(self) -> str:
        return f"flips/{safe_name(self.task)}/{safe_name(self.reference)}_vs_{safe_name(self.other)}.jsonl"

    def to_json(self) -> dict[str, Any]:
        """The metrics.json entry: every field except the flips, plus the flips file path."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "flips"}
        out["files"] = {**self.files, "flips": self.flips_relpath}
        return out


def safe_name(name: str) -> str:
    """A task/role name usable as one path component (no separators, no dot-dirs)."""
    cleaned = re.sub(r"[^\w.+-]", "_", name)
    return cleaned if cleaned.strip(".") else "_"


def _first(ids: list[str]) -> list[str]:
    return ids[:_FIRST_IDS]


def _check_pairs(
    old: PredictionSet, new: PredictionSet, ids: list[str], cfg: CompareConfig, warnings: list[str]
) -> int:
    """Hash and target checks on matched rows; returns how many example hashes were verified."""
    same_scheme = old.hash_scheme == new.hash_scheme
    verified = 0
    prompt_diff: list[str] = []
    target_diff: list[str] = []
    for i in ids:
        a, b = old.rows[i], new.rows[i]
        if a.example_hash is not None and b.example_hash is not None and same_scheme:
            if a.example_hash != b.example_hash:
                raise CompatlmError(
                    f"example {i!r} differs between the files: example_hash {a.example_hash} in "
                    f"{old.path}:{old.lines[i]} vs {b.example_hash} in {new.path}:{new.lines[i]}"
                    " (different data under the same id)"
                )
            verified += 1
        hashed = same_scheme and None not in (a.prompt_hash, b.prompt_hash)
        if hashed and a.prompt_hash != b.prompt_hash:
            prompt_diff.append(i)
        if a.target is not None and b.target is not None and a.target != b.target:
            target_diff.append(i)
    if not same_scheme and any(old.rows[i].example_hash for i in ids):
        warnings.append(
            f"example/prompt hashes not verified: {old.hash_scheme} and {new.hash_scheme} "
            "files hash differently"
        )
    if prompt_diff:
        first = prompt_diff[0]
        msg = (
            f"prompt_hash differs on {len(prompt_diff)} of {len(ids)} matched instances (first: "
            f"{first!r}: {old.rows[first].prompt_hash} in {old.path} vs "
            f"{new.rows[first].prompt_hash} in {new.path}): the models saw different tokens"
        )
        if not cfg.allow_prompt_mismatch:
            raise CompatlmError(msg + "; pass --allow-prompt-mismatch to compare anyway")
        warnings.append(msg)
    if target_diff:
        first = target_diff[0]
        msg = (
            f"target differs on {len(target_diff)} of {len(ids)} matched instances (first: "
            f"{first!r}: {old.rows[first].target!r} vs {new.rows[first].target!r})"
        )
        if same_scheme:
            raise CompatlmError(f"{old.path} vs {new.path}: {msg}")
        warnings.append(msg)
    return verified


def _flip_types(a: Prediction, b: Prediction, inconsistent: bool, d: float | None, tol: float):
    types = []
    if a.correct and not b.correct:
        types.append("negative")
    if not a.correct and b.correct:
        types.append("positive")
    if inconsistent and not b.correct:
        types.append("inconsistency")
    if d is not None and d < -tol:
        types.append("similarity_negative")
    if d is not None and d > tol:
        types.append("similarity_positive")
    return types


def _side(p: Prediction) -> dict[str, Any]:
    return {
        "output": p.output,
        "parsed": p.parsed,
        "target": p.target,
        "correct": p.correct,
        "score": p.score,
        "margin": p.margin,
    }


def _build_flips(
    task: str,
    ids: list[str],
    a_rows: list[Prediction],
    b_rows: list[Prediction],
    inconsistent: np.ndarray | None,
    scores: tuple[np.ndarray, np.ndarray] | None,
    slice_of: list[str | None],
    tolerance: float,
    noise_margin: float | None,
    roles: tuple[str, str],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One flips-file line per flipped instance, and the within-noise counts."""
    flips: list[dict[str, Any]] = []
    within = {"flips_within_noise": 0, "negative_flips_within_noise": 0}
    for k, (i, a, b) in enumerate(zip(ids, a_rows, b_rows, strict=True)):
        d = None if scores is None else float(scores[1][k] - scores[0][k])
        changed = bool(inconsistent[k]) if inconsistent is not None else False
        types = _flip_types(a, b, changed, d, tolerance)
        if not types:
            continue
        # A flip whose decision margin is tiny on both sides may be numerical noise (same model,
        # other batch size or dtype flips it too): label it instead of hiding it.
        noisy = None
        if noise_margin is not None and a.margin is not None and b.margin is not None:
            noisy = abs(a.margin) < noise_margin and abs(b.margin) < noise_margin
            within["flips_within_noise"] += noisy
            within["negative_flips_within_noise"] += noisy and "negative" in types
        flips.append(
            {
                "task": task,
                "example_id": i,
                "flip": types[0],
                "flip_types": types,
                "slice": slice_of[k],
                "reference_role": roles[0],
                "other_role": roles[1],
                "reference": _side(a),
                "other": _side(b),
                "score_delta": d,
                "within_noise": noisy,
            }
        )
    noise: dict[str, Any] = {"noise_margin": noise_margin}
    noise.update(within if noise_margin is not None else dict.fromkeys(within))
    return flips, noise


def compare_sets(
    old: PredictionSet,
    new: PredictionSet,
    cfg: CompareConfig,
    *,
    noise_margin: float | None = None,
    reference: str | None = None,
    other: str | None = None,
) -> Comparison:
    """Join ``old`` (the reference) and ``new`` on example_id and measure flips. No I/O."""
    ref_label, other_label = reference or old.label, other or new.label
    if old.kind and new.kind and old.kind != new.kind:
        raise CompatlmError(
            f"cannot compare {old.kind} predictions ({old.path}) with {new.kind} ones ({new.path})"
        )
    ids = [i for i in old.rows if i in new.rows]
    old_only = [i for i in old.rows if i not in new.rows]
    new_only = [i for i in new.rows if i not in old.rows]
    if not ids:
        raise CompatlmError(
            f"no example_id in common between {old.path} ({len(old)} rows, first "
            f"{_first(list(old.rows))[:3]}) and {new.path} ({len(new)} rows, first "
            f"{_first(list(new.rows))[:3]})"
        )
    warnings: list[str] = list(old.notes) + list(new.notes)
    verified = _check_pairs(old, new, ids, cfg, warnings)
    task = old.task or new.task or "task"
    if old.task and new.task and old.task != new.task:
        msg = f"task names differ: {old.task!r} ({old.path}) vs {new.task!r} ({new.path})"
        if verified < len(ids):
            raise CompatlmError(msg + "; example hashes cannot prove they are the same data")
        warnings.append(msg + " (example hashes match, compared anyway)")
    unmatched = {
        "reference_only": {"count": len(old_only), "first_ids": _first(old_only)},
        "other_only": {"count": len(new_only), "first_ids": _first(new_only)},
    }
    if old_only or new_only:
        msg = (
            f"unmatched rows: {len(old_only)} only in {ref_label} ({old.path}), "
            f"{len(new_only)} only in {other_label} ({new.path}); compared {len(ids)}"
        )
        warnings.append(msg)
        log.warning(msg)

    a_rows = [old.rows[i] for i in ids]
    b_rows = [new.rows[i] for i in ids]
    oc = np.array([p.correct for p in a_rows], dtype=bool)  # (N,)
    nc = np.array([p.correct for p in b_rows], dtype=bool)  # (N,)
    has_parsed = all(p.has_parsed for p in a_rows) and all(p.has_parsed for p in b_rows)
    inconsistent = (
        np.array([p.parsed != q.parsed for p, q in zip(a_rows, b_rows, strict=True)], dtype=bool)
        if has_parsed
        else None
    )
    sim_reason = None
    scores = None
    if "multiple_choice" in (old.kind, new.kind):
        sim_reason = "multiple choice: scores are choice probabilities, not similarities"
    else:
        missing = sum(
            p.score is None or q.score is None for p, q in zip(a_rows, b_rows, strict=True)
        )
        if missing:
            sim_reason = f"score missing on {missing} of {len(ids)} matched instances"
        else:
            scores = (
                np.array([p.score for p in a_rows], dtype=np.float64),  # (N,)
                np.array([q.score for q in b_rows], dtype=np.float64),  # (N,)
            )
    opts = {
        "inconsistency_reason": "undefined: parsed answers are missing on one side",
        "similarity_reason": sim_reason,
        "tolerance": cfg.tolerance,
        "bootstrap": cfg.bootstrap,
        "confidence": cfg.confidence,
        "seed": cfg.seed,
    }
    whole = measure(oc, nc, inconsistent=inconsistent, scores=scores, **opts)

    slice_of = [
        p.slice if p.slice is not None else q.slice for p, q in zip(a_rows, b_rows, strict=True)
    ]
    slices: dict[str, Any] = {}
    if any(s is not None for s in slice_of):
        keys = np.array(["(none)" if s is None else s for s in slice_of], dtype=object)
        for name in sorted(set(keys.tolist())):
            m = keys == name  # (N,) bool mask of this slice
            slices[name] = measure(
                oc[m],
                nc[m],
                inconsistent=None if inconsistent is None else inconsistent[m],
                scores=None if scores is None else (scores[0][m], scores[1][m]),
                **opts,
            )

    flips, noise = _build_flips(
        task, ids, a_rows, b_rows, inconsistent, scores, slice_of, cfg.tolerance, noise_margin,
        (ref_label, other_label),
    )  # fmt: skip
    return Comparison(
        task=task,
        kind=old.kind or new.kind,
        reference=ref_label,
        other=other_label,
        files={"reference": str(old.path), "other": str(new.path)},
        n=whole["n"],
        unmatched=unmatched,
        counts=whole["counts"],
        metrics=whole["metrics"],
        similarity=whole["similarity"],
        slices=slices,
        noise=noise,
        warnings=warnings,
        flips=flips,
    )
