"""Comparing prediction sets: join, integrity checks, flips, metrics.json.

Owns the step from predictions to numbers. :func:`compare_sets` (pure) joins two
:class:`~compatlm.eval.records.PredictionSet` on ``example_id``, verifies ``example_hash`` and
``prompt_hash`` where both sides are hashed the same way, reports unmatched rows instead of
dropping them silently, and measures flips (:mod:`compatlm.eval.metrics`). Sides known to use
different ``tokenizers`` are checked on example hashes alone, stated in ``prompt_hash_check``.
:mod:`compatlm.eval.compare_io` turns it into files (``compare_files``, ``compare_run``).

Everything runs on the sets' columns (:mod:`compatlm.eval.columns`): the join merges the two
sorted id arrays, checks compare whole arrays and name the first offending instance in the
reference file's order, and flips are index arrays (:class:`~compatlm.eval.flips.FlipTable`),
so 2M-instance comparisons cost seconds and no per-instance objects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from compatlm.config import CompareConfig
from compatlm.errors import CompatlmError
from compatlm.eval.columns import Coded, Columns
from compatlm.eval.flips import FlipTable, flip_masks, within_noise
from compatlm.eval.metrics import measure
from compatlm.eval.records import PredictionSet
from compatlm.eval.text_column import same_kind, text_block, text_differs
from compatlm.paths import flips_relpath
from compatlm.paths import safe_name as safe_name  # re-exported: report code imports it here

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
    n_groups: int | None
    n_groups_reason: str | None
    clustered: bool
    unmatched: dict[str, Any]
    counts: dict[str, Any]
    metrics: dict[str, Any]
    similarity: dict[str, Any]
    slices: dict[str, Any]
    noise: dict[str, Any]
    warnings: list[str]
    flips: FlipTable = field(repr=False)
    relative_to_baseline: dict[str, Any] | None = None
    # Per side: the model spec, the metric that decided ``correct`` and the lm-eval filter, as
    # the prediction files state them (the report header names what was compared).
    scoring: dict[str, Any] | None = None
    # Set by compare_io when names collide after sanitising (see paths.unique_flips_paths).
    flips_file: str | None = field(default=None, repr=False)
    # Why prompt hashes were not compared (the sides' tokenizers differ); None = compared.
    prompt_hash_check: str | None = None

    @property
    def flips_relpath(self) -> str:
        return self.flips_file or flips_relpath(self.task, self.reference, self.other)

    def to_json(self) -> dict[str, Any]:
        """The metrics.json entry: every field except the flips, plus the flips file path."""
        skip = ("flips", "flips_file")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        if self.prompt_hash_check is None:  # stated only when skipped: other outputs unchanged
            del out["prompt_hash_check"]
        out["files"] = {**self.files, "flips": self.flips_relpath}
        return out


def _first(ps: PredictionSet, rows: np.ndarray) -> list[str]:
    return ps.ids(rows[:_FIRST_IDS])


def join(a: Columns, b: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Match rows of ``a`` and ``b`` by example_id.

    Returns (M,) int64 rows of ``a`` and (M,) the rows of ``b`` holding the same ids, in
    ``a``'s file order, then the rows only in ``a`` and only in ``b``, each in file order.
    Both id arrays are sorted already (the loader's duplicate check sorts them); a stable sort
    of the two sorted runs put end to end is a linear merge, and ids are unique within a file,
    so equal neighbours are exactly the matches, ``a``'s first.
    """
    da, db = same_kind(a.ids.data, b.ids.data)  # ids with NUL bytes: Python strings
    if da is a.ids.data and db is b.ids.data:
        oa, ob = a.sort_order(), b.sort_order()
    else:  # one side converted to variable-width strings: sort in that representation
        oa, ob = np.argsort(da, kind="stable"), np.argsort(db, kind="stable")
    merged = np.concatenate([da[oa], db[ob]])  # (Na + Nb,)
    order = np.argsort(merged, kind="stable")
    ordered = merged[order]
    eq = np.flatnonzero(ordered[1:] == ordered[:-1])  # (M,) positions of matched pairs
    ia = oa[order[eq]]
    ib = ob[order[eq + 1] - len(da)]
    by_a = np.argsort(ia, kind="stable")
    ia, ib = ia[by_a], ib[by_a]
    in_a = np.zeros(len(da), dtype=bool)
    in_a[ia] = True
    in_b = np.zeros(len(db), dtype=bool)
    in_b[ib] = True
    return ia, ib, np.flatnonzero(~in_a), np.flatnonzero(~in_b)


def lookup(cols: Columns, ids: list[str]) -> np.ndarray:
    """(len(ids),) int64 row of each id in ``cols`` (-1 where absent)."""
    if not ids or not len(cols):
        return np.full(len(ids), -1, dtype=np.int64)
    data, needles = same_kind(cols.ids.data, text_block(ids).data)
    order = cols.sort_order() if data is cols.ids.data else np.argsort(data, kind="stable")
    ordered = data[order]
    pos = np.minimum(np.searchsorted(ordered, needles), len(ordered) - 1)
    return np.where(ordered[pos] == needles, order[pos], -1)


def _differs(a: Coded, ia: np.ndarray, b: Coded, ib: np.ndarray) -> np.ndarray:
    """(M,) bool: the value of row ia[k] of ``a`` != that of row ib[k] of ``b`` (Python
    equality of int/str/None values: 1 and "1" differ, None equals None)."""
    return a.codes[ia] != a.translate(b)[b.codes[ib]]


def _nulls(c: Coded, rows: np.ndarray) -> np.ndarray:
    """(len(rows),) bool: the value of each row is None."""
    is_none = np.array([v is None for v in c.values], dtype=bool)
    return is_none[c.codes[rows]] if len(c.values) else np.zeros(len(rows), dtype=bool)


def _check_pairs(
    old: PredictionSet,
    new: PredictionSet,
    ia: np.ndarray,
    ib: np.ndarray,
    cfg: CompareConfig,
    warnings: list[str],
    tokenizers: tuple[str, str] | None = None,
) -> tuple[int, str | None]:
    """Hash and target checks on matched rows; returns how many example hashes were verified
    and why prompt hashes were not compared (``tokenizers`` differ), or None."""
    a, b = old.columns, new.columns
    same_scheme = old.hash_scheme == new.hash_scheme
    n = len(ia)
    verified = 0
    skipped = None
    if same_scheme:
        both = a.example_hash.present(ia) & b.example_hash.present(ib)
        bad = np.flatnonzero(both & text_differs(a.example_hash, ia, b.example_hash, ib))
        if len(bad):
            i, j = int(ia[bad[0]]), int(ib[bad[0]])
            raise CompatlmError(
                f"example {a.ids.get(i)!r} differs between the files: example_hash "
                f"{a.example_hash.get(i)} in {old.path}:{int(a.lines[i])} vs "
                f"{b.example_hash.get(j)} in {new.path}:{int(b.lines[j])}"
                " (different data under the same id)"
            )
        verified = int(both.sum())
        hashed = a.prompt_hash.present(ia) & b.prompt_hash.present(ib)
        prompt_diff = np.flatnonzero(hashed & text_differs(a.prompt_hash, ia, b.prompt_hash, ib))
        if tokenizers is not None and tokenizers[0] != tokenizers[1] and verified == n:
            # Other token ids are expected; example hashes (not over tokens) prove the same data.
            skipped = (
                f"skipped: tokenizers differ ({old.label} {tokenizers[0]} vs {new.label}"
                f" {tokenizers[1]}); example hashes verified on {verified} instances"
            )
            warnings.append(f"prompt_hash check {skipped}")
            prompt_diff = prompt_diff[:0]
    else:
        prompt_diff = np.array([], dtype=np.int64)
        if a.example_hash.nonempty(ia).any():
            warnings.append(
                f"example/prompt hashes not verified: {old.hash_scheme} and {new.hash_scheme} "
                "files hash differently"
            )
    given = ~_nulls(a.target, ia) & ~_nulls(b.target, ib)
    target_diff = np.flatnonzero(given & _differs(a.target, ia, b.target, ib))
    if len(prompt_diff):
        i, j = int(ia[prompt_diff[0]]), int(ib[prompt_diff[0]])
        msg = (
            f"prompt_hash differs on {len(prompt_diff)} of {n} matched instances (first: "
            f"{a.ids.get(i)!r}: {a.prompt_hash.get(i)} in {old.path} vs "
            f"{b.prompt_hash.get(j)} in {new.path}): the models saw different tokens"
        )
        if not cfg.allow_prompt_mismatch:
            raise CompatlmError(msg + "; pass --allow-prompt-mismatch to compare anyway")
        warnings.append(msg)
    if len(target_diff):
        i, j = int(ia[target_diff[0]]), int(ib[target_diff[0]])
        msg = (
            f"target differs on {len(target_diff)} of {n} matched instances (first: "
            f"{a.ids.get(i)!r}: {a.target.get(i)!r} vs {b.target.get(j)!r})"
        )
        if same_scheme:
            raise CompatlmError(f"{old.path} vs {new.path}: {msg}")
        warnings.append(msg)
    return verified, skipped


def _join_groups(
    old: PredictionSet, new: PredictionSet, ia: np.ndarray, ib: np.ndarray
) -> np.ndarray | None:
    """(M,) int code of each matched instance's group, or None when neither file has groups.

    One file's groups serve both when only it has them; when both have them they must agree,
    since a group is a property of the example, not of the model that answered it.
    """
    if not (old.has_groups or new.has_groups):
        return None
    a, b = old.columns, new.columns
    if old.has_groups and new.has_groups:
        bad = np.flatnonzero(_differs(a.group, ia, b.group, ib))
        if len(bad):
            i, j = int(ia[bad[0]]), int(ib[bad[0]])
            raise CompatlmError(
                f"example {a.ids.get(i)!r} is in group {a.group.get(i)!r} in "
                f"{old.path}:{int(a.lines[i])} but in group {b.group.get(j)!r} in "
                f"{new.path}:{int(b.lines[j])} (an example's group must be the same in both "
                "files)"
            )
    src, rows = (a, ia) if old.has_groups else (b, ib)
    codes = src.group.codes[rows]  # (M,) codes in order of first appearance in the file
    # Renumbered in order of first appearance among the matched instances, as the statistics
    # have always seen them (the bootstrap's draws depend on the numbering).
    present, first = np.unique(codes, return_index=True)
    renumber = np.zeros(len(src.group.values), dtype=np.int64)
    renumber[present[np.argsort(first)]] = np.arange(len(present))
    return renumber[codes]  # (M,)


def _check_measure(old: PredictionSet, new: PredictionSet, cfg: CompareConfig) -> list[str]:
    """Refuse rows whose ``correct`` was decided by different metrics or lm-eval filters.

    ``acc`` vs ``acc_norm`` or ``none`` vs ``strict-match`` answer different questions; flips
    between them would be artefacts of the measurement. Allowed, it becomes a warning.
    """
    notes = []
    for what, a, b in (("metric", old.metric, new.metric), ("filter", old.filter, new.filter)):
        if a is None or b is None or a == b:
            continue  # unknown on one side (minimal foreign lines) or the same: nothing to say
        msg = f"{what} differs: {a!r} in {old.path} vs {b!r} in {new.path}"
        if not cfg.allow_metric_mismatch:
            raise CompatlmError(
                f"{msg}: correct means different things; pass --allow-metric-mismatch to "
                "compare anyway"
            )
        notes.append(f"{msg} (compared anyway: --allow-metric-mismatch)")
    return notes


def _join_slices(
    a: Coded, ia: np.ndarray, b: Coded, ib: np.ndarray
) -> tuple[np.ndarray, list[Any]]:
    """(M,) codes into a values list: each matched instance's slice, the reference's unless
    it has none."""
    values = list(a.values)
    index = {v: c for c, v in enumerate(values)}
    for v in b.values:
        if v not in index:
            index[v] = len(values)
            values.append(v)
    b_codes = np.array([index[v] for v in b.values], dtype=np.int64)[b.codes[ib]]
    codes = np.where(_nulls(a, ia), b_codes, a.codes[ia])
    return codes, values


def compare_sets(
    old: PredictionSet,
    new: PredictionSet,
    cfg: CompareConfig,
    *,
    noise_margin: float | None = None,
    reference: str | None = None,
    other: str | None = None,
    tokenizers: tuple[str, str] | None = None,
) -> Comparison:
    """Join ``old`` (the reference) and ``new`` on example_id and measure flips. No I/O."""
    ref_label, other_label = reference or old.label, other or new.label
    if old.kind and new.kind and old.kind != new.kind:
        raise CompatlmError(
            f"cannot compare {old.kind} predictions ({old.path}) with {new.kind} ones ({new.path})"
        )
    a, b = old.columns, new.columns
    ia, ib, old_only, new_only = join(a, b)
    n = len(ia)
    if not n:
        raise CompatlmError(
            f"no example_id in common between {old.path} ({len(old)} rows, first "
            f"{old.ids(np.arange(min(3, len(old))))}) and {new.path} ({len(new)} rows, first "
            f"{new.ids(np.arange(min(3, len(new))))})"
        )
    measure_notes = _check_measure(old, new, cfg)
    warnings: list[str] = list(old.notes) + list(new.notes) + measure_notes
    verified, prompt_check = _check_pairs(old, new, ia, ib, cfg, warnings, tokenizers)
    task = old.task or new.task or "task"
    if old.task and new.task and old.task != new.task:
        msg = f"task names differ: {old.task!r} ({old.path}) vs {new.task!r} ({new.path})"
        if verified < n:
            raise CompatlmError(msg + "; example hashes cannot prove they are the same data")
        warnings.append(msg + " (example hashes match, compared anyway)")
    unmatched = {
        "reference_only": {"count": len(old_only), "first_ids": _first(old, old_only)},
        "other_only": {"count": len(new_only), "first_ids": _first(new, new_only)},
    }
    if len(old_only) or len(new_only):
        msg = (
            f"unmatched rows: {len(old_only)} only in {ref_label} ({old.path}), "
            f"{len(new_only)} only in {other_label} ({new.path}); compared {n}"
        )
        warnings.append(msg)
        log.warning(msg)

    oc, nc = a.correct[ia], b.correct[ib]  # (M,) bool
    has_parsed = bool(a.parsed_stated[ia].all() and b.parsed_stated[ib].all())
    inconsistent = _differs(a.parsed, ia, b.parsed, ib) if has_parsed else None  # (M,) bool
    sim_reason = None
    scores = None
    if "multiple_choice" in (old.kind, new.kind):
        sim_reason = "multiple choice: scores are choice probabilities, not similarities"
    else:
        sa, sb = a.score[ia], b.score[ib]  # (M,) float64, NaN = null
        missing = int((np.isnan(sa) | np.isnan(sb)).sum())
        if missing:
            sim_reason = f"score missing on {missing} of {n} matched instances"
        else:
            scores = (sa, sb)
    opts = {
        "inconsistency_reason": "undefined: parsed answers are missing on one side",
        "similarity_reason": sim_reason,
        "tolerance": cfg.tolerance,
        "bootstrap": cfg.bootstrap,
        "confidence": cfg.confidence,
        "seed": cfg.seed,
    }
    groups = _join_groups(old, new, ia, ib)  # (M,) or None
    whole = measure(oc, nc, inconsistent=inconsistent, scores=scores, groups=groups, **opts)

    slice_codes, slice_values = _join_slices(a.slice, ia, b.slice, ib)
    slices: dict[str, Any] = {}
    if any(slice_values[c] is not None for c in np.unique(slice_codes).tolist()):
        names = ["(none)" if v is None else v for v in slice_values]
        for name in sorted(set(names[c] for c in np.unique(slice_codes).tolist())):
            same = [c for c, v in enumerate(names) if v == name]
            m = np.isin(slice_codes, same)  # (M,) bool mask of this slice
            slices[name] = measure(
                oc[m],
                nc[m],
                inconsistent=None if inconsistent is None else inconsistent[m],
                scores=None if scores is None else (scores[0][m], scores[1][m]),
                groups=None if groups is None else groups[m],
                **opts,
            )

    delta = None if scores is None else scores[1] - scores[0]  # (M,) float64
    masks = flip_masks(oc, nc, inconsistent, delta, cfg.tolerance)
    fk = np.flatnonzero(masks)  # (F,) matched positions of flipped instances
    labels, noise = within_noise(
        (a.margin[ia[fk]], b.margin[ib[fk]]), (masks[fk] & 1).astype(bool), noise_margin
    )
    flips = FlipTable(
        task,
        (ref_label, other_label),
        (old, new),
        (ia[fk], ib[fk]),
        masks[fk],
        None if delta is None else delta[fk],
        labels,
        (slice_codes[fk], slice_values),
    )
    return Comparison(
        task=task,
        kind=old.kind or new.kind,
        reference=ref_label,
        other=other_label,
        files={"reference": str(old.path), "other": str(new.path)},
        n=whole["n"],
        n_groups=whole["n_groups"],
        n_groups_reason=whole["n_groups_reason"],
        clustered=whole["clustered"],
        unmatched=unmatched,
        counts=whole["counts"],
        metrics=whole["metrics"],
        similarity=whole["similarity"],
        slices=slices,
        noise=noise,
        warnings=warnings,
        flips=flips,
        scoring={
            side: {"model": ps.model, "metric": ps.metric, "filter": ps.filter}
            for side, ps in (("reference", old), ("other", new))
        },
        prompt_hash_check=prompt_check,
    )
