"""Continuation log-likelihoods computed in full (``runtime.scoring: full``, lm-eval's way):
every (context, continuation) pair is one forward row, and the shared pieces of both scoring
paths — :class:`ChoiceScore`, :class:`ScoringWork`, the request checks, the per-choice score.

The cached path (:mod:`compatlm.eval.kv_scoring`) builds on these and the multiple-choice
runner (:mod:`compatlm.eval.runner`, which re-exports them) picks one of the two, so they live
below both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from compatlm.errors import CompatlmError
from compatlm.prompts import ScoringRequest, scoring_input


@dataclass(frozen=True)
class ChoiceScore:
    loglikelihood: float  # summed log-prob of the continuation tokens
    is_greedy: bool  # every continuation token is the model's argmax


@dataclass
class ScoringWork:
    """What the model computed, summed over forwards (for benchmarks and logs)."""

    forwards: int = 0
    positions: int = 0  # token positions run, padding included (rows x width per forward)
    real_positions: int = 0  # of which not padding
    logit_positions: int = 0  # positions whose vocabulary logits were computed


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def check_requests(requests: Sequence[ScoringRequest], max_length: int) -> None:
    """Refuse requests that cannot be scored (an empty or over-long continuation)."""
    for req in requests:
        if len(req.continuation_ids) == 0:
            raise CompatlmError("a choice tokenises to nothing after its context; cannot score it")
        if len(req.continuation_ids) > max_length:
            raise CompatlmError(
                f"a choice is {len(req.continuation_ids)} tokens, longer than the model's"
                f" maximum length {max_length}"
            )


def choice_score(logits: torch.Tensor, target: Sequence[int]) -> ChoiceScore:
    """Score of one continuation from the logits [C, V] at the C positions predicting it."""
    cont_logits = logits.float()  # [C, V]: fp32 so a bf16 model's scores are not summed in bf16
    logp = torch.log_softmax(cont_logits, dim=-1)  # [C, V]
    tgt = torch.tensor(target, device=logp.device)  # [C]
    ll = logp.gather(1, tgt[:, None]).sum()
    greedy = bool((cont_logits.argmax(dim=-1) == tgt).all())
    return ChoiceScore(float(ll), greedy)


@torch.inference_mode()
def score_requests(
    model: torch.nn.Module,
    requests: Sequence[ScoringRequest],
    *,
    batch_size: int,
    max_length: int,
    pad_token_id: int = 0,
    on_batch: Callable[[int], None] | None = None,
    work: ScoringWork | None = None,
) -> list[ChoiceScore]:
    """Continuation log-likelihood of every request, in the order given, each (context,
    continuation) pair computed in full (``runtime.scoring: full``, lm-eval's way).

    Requests whose model input is identical share one forward row: the same request twice,
    and — the common case of single-token answers (" A"/" B"/" C"/" D") — choices that differ
    only in their last token (input = context + continuation[:-1]); lm-eval's one-token
    continuation cache does the same. ``on_batch(n)`` is called after each forward with the
    number of rows it ran; ``work`` accumulates the positions computed.
    """
    check_requests(requests, max_length)
    prepared = [scoring_input(req, max_length) for req in requests]  # (input ids, n_cont)
    row_of: dict[tuple[int, ...], int] = {}
    for ids, _ in prepared:
        row_of.setdefault(tuple(ids), len(row_of))
    inputs = list(row_of)
    users: list[list[int]] = [[] for _ in inputs]  # input row -> requests scored on it
    for r, (ids, _) in enumerate(prepared):
        users[row_of[tuple(ids)]].append(r)
    # Longest first; ties broken by the tokens themselves so the order is deterministic.
    order = sorted(range(len(inputs)), key=lambda i: (-len(inputs[i]), inputs[i]))
    device = device_of(model)
    scores: list[ChoiceScore | None] = [None] * len(requests)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = len(inputs[idx[0]])  # sorted longest first
        input_ids = torch.full((len(idx), width), pad_token_id, dtype=torch.long)  # [B, T]
        attention = torch.zeros((len(idx), width), dtype=torch.long)  # [B, T]
        for row, i in enumerate(idx):
            input_ids[row, : len(inputs[i])] = torch.tensor(inputs[i], dtype=torch.long)
            attention[row, : len(inputs[i])] = 1
        logits = model(
            input_ids=input_ids.to(device), attention_mask=attention.to(device)
        ).logits  # [B, T, V]
        for row, i in enumerate(idx):
            length = len(inputs[i])
            for r in users[i]:
                n_cont = prepared[r][1]
                # Positions length-n_cont .. length-1 predict the n_cont continuation tokens.
                target = requests[r].continuation_ids
                scores[r] = choice_score(logits[row, length - n_cont : length], target)
        if work is not None:
            work.forwards += 1
            work.positions += len(idx) * width
            work.real_positions += sum(len(inputs[i]) for i in idx)
            work.logit_positions += len(idx) * width
        if on_batch is not None:
            on_batch(len(idx))
    return scores  # type: ignore[return-value]
