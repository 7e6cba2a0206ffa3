"""Multiple-choice scoring on a shared context's KV cache (``runtime.scoring: cached``).

lm-eval 0.4.13 runs every (context, choice) pair in full: a 4-choice HellaSwag question with a
60-token context and 20-token endings costs 4 x 80 token positions and 4 x 80 rows of logits.
Here each distinct context runs once and its choices run as continuations on its cached keys
and values: 60 + 4 x 20 positions, and logits only where a continuation token is predicted.
The model input of every request is exactly the one of the full path
(:func:`compatlm.prompts.scoring_input`: lm-eval's ``context_enc + continuation_enc``, left-
truncated, last token dropped), so per-instance answers are the same up to float rounding:

* **Plan** (:func:`plan_prefixes`, pure): requests sharing ``context_ids`` form a group; its
  prefix is the longest common prefix of the members' model inputs, cut so that the position
  predicting each member's first continuation token lies inside it (``s + 1`` for the member
  whose scoring starts earliest). Untruncated, that is the context itself — also when a
  tokenizer merged the context's last token with the choice's first, because the input is
  ``context_ids + continuation_ids`` either way. A group whose inputs share no token (choices
  truncated by different amounts) goes to the full path.
* **Context pass**: prefixes sorted longest first over the whole task, ``batch_size`` per
  forward, LEFT-padded with explicit position ids, so the last column is every row's last
  prefix token and ``logits_to_keep=1`` computes its logits (they predict the first
  continuation token) and nothing else.
* **Continuation pass**: each distinct remainder (model input minus prefix) runs, right-padded,
  on the rows of the cache it continues (``batch_select_indices`` on a shallow copy: one row
  per choice, the context pass's cache untouched), with the prefix's padding mask in front and
  position ids continuing from the prefix length. At most ``batch_size`` rows per forward, so
  memory stays within the full path's for the same batch size.

A request's scored logits are [prefix's last logits] + [its remainder's logits]; the last
``n_cont`` of them are scored exactly as in :func:`compatlm.eval.full_scoring.score_requests`.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache

from compatlm.eval.full_scoring import (
    ChoiceScore,
    ScoringWork,
    check_requests,
    choice_score,
    device_of,
    score_requests,
)
from compatlm.prompts import ScoringRequest, scoring_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefixGroup:
    """Requests scored on one cached prefix: ``prefix + rests[k]`` is member k's model input."""

    prefix: tuple[int, ...]
    members: tuple[int, ...]  # request indices
    rests: tuple[tuple[int, ...], ...]  # per member: its input after the prefix (may be empty)
    n_cont: tuple[int, ...]  # per member: continuation tokens scored


def _common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        tok = first[i]
        if any(s[i] != tok for s in seqs):
            return i
    return n


def plan_prefixes(
    requests: Sequence[ScoringRequest], max_length: int
) -> tuple[list[PrefixGroup], list[int]]:
    """Prefix groups of ``requests`` and the indices left to the full path (see module doc)."""
    prepared = [scoring_input(req, max_length) for req in requests]  # (input ids, n_cont)
    by_context: dict[tuple[int, ...], list[int]] = {}
    for i, req in enumerate(requests):
        by_context.setdefault(req.context_ids, []).append(i)
    groups: list[PrefixGroup] = []
    full: list[int] = []
    for members in by_context.values():
        inputs = [prepared[i][0] for i in members]
        # Member k scores positions s_k .. len-1 (s_k = len - n_cont); position s_k must be
        # the prefix's last position or after it, so the prefix ends at most at min(s_k) + 1.
        first_scored = min(
            len(ids) - prepared[i][1] for ids, i in zip(inputs, members, strict=True)
        )
        p = min(_common_prefix_len(inputs), first_scored + 1)
        if p < 1:
            full.extend(members)
            continue
        groups.append(
            PrefixGroup(
                prefix=tuple(inputs[0][:p]),
                members=tuple(members),
                rests=tuple(tuple(ids[p:]) for ids in inputs),
                n_cont=tuple(prepared[i][1] for i in members),
            )
        )
    return groups, full


def supports_cached_scoring(model: torch.nn.Module) -> bool:
    """Whether the model's forward takes a KV cache and position ids (HF causal LMs do)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "past_key_values" in params and "position_ids" in params


def _keeps_logits(model: torch.nn.Module) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _select_rows(cache: Any, rows: torch.Tensor) -> Any:
    """The cache restricted (and repeated) to batch ``rows``, leaving ``cache`` as it is.

    Layers are shallow-copied and re-indexed: ``batch_select_indices`` re-binds the copy's
    tensors, and the continuation pass's ``update`` concatenates into new tensors, so the
    context pass's cache can serve every chunk of its continuations."""
    out = copy.copy(cache)
    out.layers = []
    for layer in cache.layers:
        new = copy.copy(layer)
        new.batch_select_indices(rows)
        out.layers.append(new)
    return out


@dataclass
class _Row:
    """One continuation-pass row: a distinct remainder of one context row."""

    ctx_row: int
    rest: tuple[int, ...]
    users: list[tuple[int, int]]  # (request index, n_cont)


@torch.inference_mode()
def score_requests_cached(
    model: torch.nn.Module,
    requests: Sequence[ScoringRequest],
    *,
    batch_size: int,
    max_length: int,
    pad_token_id: int = 0,
    on_batch: Callable[[int], None] | None = None,
    on_done: Callable[[list[tuple[int, ChoiceScore]]], None] | None = None,
    work: ScoringWork | None = None,
) -> list[ChoiceScore]:
    """Continuation log-likelihood of every request (order kept), contexts computed once.

    ``on_batch(n)`` after each forward with its number of rows; ``on_done([(index, score)])``
    after each context batch with the requests it finished; ``work`` accumulates the positions
    computed.
    """
    check_requests(requests, max_length)
    scores: list[ChoiceScore | None] = [None] * len(requests)
    if supports_cached_scoring(model):
        groups, full = plan_prefixes(requests, max_length)
    else:
        log.info("%s takes no KV cache; scoring every choice in full", type(model).__name__)
        groups, full = [], list(range(len(requests)))
    full_kwargs: dict[str, Any] = {
        "batch_size": batch_size,
        "max_length": max_length,
        "pad_token_id": pad_token_id,
        "on_batch": on_batch,
        "work": work,
    }

    def in_full(indices: list[int]) -> None:
        got = score_requests(model, [requests[i] for i in indices], **full_kwargs)
        for i, s in zip(indices, got, strict=True):
            scores[i] = s
        if on_done is not None:
            on_done([(i, scores[i]) for i in indices])  # type: ignore[misc]

    if full:  # inputs that share no prefix (truncated by different amounts), or no KV cache
        in_full(full)
    device = device_of(model)
    keep = {"logits_to_keep": 1} if _keeps_logits(model) else {}
    # Longest first over the whole task (ties by tokens: deterministic), as the full path.
    order = sorted(range(len(groups)), key=lambda g: (-len(groups[g].prefix), groups[g].prefix))
    for start in range(0, len(order), batch_size):
        batch = [groups[g] for g in order[start : start + batch_size]]
        width = len(batch[0].prefix)
        input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)  # [B, W]
        attention = torch.zeros((len(batch), width), dtype=torch.long)  # [B, W]
        positions = torch.zeros((len(batch), width), dtype=torch.long)  # [B, W]
        lengths = torch.tensor([len(g.prefix) for g in batch], dtype=torch.long)  # [B]
        for row, g in enumerate(batch):
            n = len(g.prefix)
            input_ids[row, width - n :] = torch.tensor(g.prefix, dtype=torch.long)
            attention[row, width - n :] = 1
            positions[row, width - n :] = torch.arange(n)
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            position_ids=positions.to(device),
            use_cache=True,
            **keep,
        )
        last = out.logits[:, -1]  # [B, V]: predicts each row's first continuation token
        cache = out.past_key_values
        if not isinstance(cache, Cache):  # a model that ignored use_cache: never score blind
            log.info("%s returned no KV cache; scoring in full", type(model).__name__)
            in_full([i for g in batch for i in g.members])
            continue
        _count(
            work, len(batch), width, int(lengths.sum()), len(batch) if keep else len(batch) * width
        )
        if on_batch is not None:
            on_batch(len(batch))
        _score_continuations(
            model, batch, last, cache, attention, lengths, scores, requests,
            batch_size=batch_size, pad_token_id=pad_token_id, on_batch=on_batch, work=work,
        )  # fmt: skip
        if on_done is not None:
            on_done([(i, scores[i]) for g in batch for i in g.members])  # type: ignore[misc]
    return scores  # type: ignore[return-value]


def _count(work: ScoringWork | None, rows: int, width: int, real: int, logit_rows: int) -> None:
    if work is not None:
        work.forwards += 1
        work.positions += rows * width
        work.real_positions += real
        work.logit_positions += logit_rows


def _score_continuations(
    model: torch.nn.Module,
    batch: Sequence[PrefixGroup],
    last: torch.Tensor,  # [B, V]
    cache: Any,
    attention: torch.Tensor,  # [B, W] the context pass's (left-padded) mask
    lengths: torch.Tensor,  # [B] prefix lengths
    scores: list[ChoiceScore | None],
    requests: Sequence[ScoringRequest],
    *,
    batch_size: int,
    pad_token_id: int,
    on_batch: Callable[[int], None] | None,
    work: ScoringWork | None,
) -> None:
    """Run the remainders of one context batch on its cache and score every member."""
    rows: dict[tuple[int, tuple[int, ...]], _Row] = {}
    for ctx_row, g in enumerate(batch):
        for i, rest, n_cont in zip(g.members, g.rests, g.n_cont, strict=True):
            if not rest:  # one-token continuation: the prefix's last logits are all it needs
                target = requests[i].continuation_ids
                scores[i] = choice_score(last[ctx_row, None], target)
                continue
            # Requests with the same input (choices differing only in their last token) share
            # one row, as in the full path.
            rows.setdefault((ctx_row, rest), _Row(ctx_row, rest, [])).users.append((i, n_cont))
    # Longest first so a chunk's rows have similar widths; ties by tokens for determinism.
    todo = sorted(rows.values(), key=lambda r: (-len(r.rest), r.ctx_row, r.rest))
    device = last.device
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        width = len(chunk[0].rest)
        input_ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)  # [R, C]
        cont_mask = torch.zeros((len(chunk), width), dtype=torch.long)  # [R, C]
        for j, r in enumerate(chunk):
            input_ids[j, : len(r.rest)] = torch.tensor(r.rest, dtype=torch.long)
            cont_mask[j, : len(r.rest)] = 1
        src = torch.tensor([r.ctx_row for r in chunk], dtype=torch.long)  # [R]
        # Cache slots: the prefix's own padding stays masked; new tokens follow the prefix.
        mask = torch.cat([attention[src], cont_mask], dim=1)  # [R, W + C]
        positions = lengths[src, None] + torch.arange(width)[None, :]  # [R, C]
        logits = model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            past_key_values=_select_rows(cache, src.to(device)),
            use_cache=True,
        ).logits  # [R, C, V]
        _count(work, len(chunk), width, sum(len(r.rest) for r in chunk), len(chunk) * width)
        if on_batch is not None:
            on_batch(len(chunk))
        for j, r in enumerate(chunk):
            # Logits at the prefix's last position, then at each remainder position.
            seq = torch.cat([last[r.ctx_row, None], logits[j, : len(r.rest)]])  # [1 + len, V]
            for i, n_cont in r.users:
                scores[i] = choice_score(seq[-n_cont:], requests[i].continuation_ids)
