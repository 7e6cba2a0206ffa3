"""Multiple-choice scoring: batched continuation log-likelihoods and the per-example decision.

The MUSCLE paper scores classification tasks (HellaSwag, PIQA) by log-likelihood
(arXiv 2407.09435, Sec. 4); we reproduce lm-evaluation-harness 0.4.13 so that per-instance
answers agree with it (checked by ``bench/lmeval_agreement.py``):

* requests are tokenised by :mod:`compatlm.prompts` (context/continuation split, BOS, truncation);
* they run longest first (a memory error shows in the first batch, and neighbours in the sorted
  order have similar lengths, so little padding), right-padded with an attention mask;
* log-softmax is taken in fp32 over the continuation positions only, so a bf16 model's scores
  are not summed in bf16, and the [batch, time, vocab] fp32 copy is never materialised;
* ``acc`` picks the argmax of the summed log-probs, ``acc_norm`` the argmax of the sum divided
  by the choice's character length (without the leading delimiter), ties to the first choice.

Requests with the same model input share one forward row (see
:func:`compatlm.eval.full_scoring.score_requests`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compatlm.errors import CompatlmError
from compatlm.eval.full_scoring import ChoiceScore as ChoiceScore
from compatlm.eval.full_scoring import ScoringWork as ScoringWork
from compatlm.eval.full_scoring import check_requests as check_requests
from compatlm.eval.full_scoring import choice_score as choice_score
from compatlm.eval.full_scoring import device_of as device_of
from compatlm.eval.full_scoring import score_requests
from compatlm.prompts import (
    TARGET_DELIMITER,
    ScoringRequest,
    encode_choices,
    prompt_hash,
)
from compatlm.tasks.base import MCExample

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

SCORING_MODES = ("cached", "full")  # runtime.scoring; see compatlm.eval.kv_scoring


@dataclass(frozen=True)
class MCResult:
    example: MCExample
    loglikelihoods: tuple[float, ...]
    is_greedy: tuple[bool, ...]
    choice_lengths: tuple[int, ...]
    decision_scores: tuple[float, ...]
    pred: int
    prompt_hash: str


def decision_scores(
    loglikelihoods: Sequence[float], lengths: Sequence[int], metric: str
) -> list[float]:
    """The per-choice scores the decision is the argmax of (``acc``: raw; ``acc_norm``: per
    character; an empty choice counts as one character instead of dividing by zero)."""
    if metric == "acc":
        return [float(x) for x in loglikelihoods]
    if metric == "acc_norm":
        return [float(x) / max(n, 1) for x, n in zip(loglikelihoods, lengths, strict=True)]
    raise CompatlmError(f"metric {metric!r}: not a multiple-choice metric (acc | acc_norm)")


def argmax_first(values: Sequence[float]) -> int:
    """Index of the maximum, the first one on ties (as numpy.argmax)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _decide(
    ex: MCExample, reqs: Sequence[ScoringRequest], scores: Sequence[ChoiceScore], metric: str
) -> MCResult:
    lls = tuple(s.loglikelihood for s in scores)
    lengths = tuple(len(c) for c in ex.choices)
    decision = decision_scores(lls, lengths, metric)
    tokens = [list(reqs[0].context_ids)] + [list(r.continuation_ids) for r in reqs]
    return MCResult(
        example=ex,
        loglikelihoods=lls,
        is_greedy=tuple(s.is_greedy for s in scores),
        choice_lengths=lengths,
        decision_scores=tuple(decision),
        pred=argmax_first(decision),
        prompt_hash=prompt_hash(tokens),
    )


def score_multiple_choice(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[MCExample],
    *,
    metric: str,
    batch_size: int,
    max_length: int,
    delimiter: str = TARGET_DELIMITER,
    scoring: str = "cached",
    on_batch: Callable[[int], None] | None = None,
    on_results: Callable[[list[MCResult]], None] | None = None,
    work: ScoringWork | None = None,
) -> list[MCResult]:
    """Score every choice of every example and decide; one result per example, in order.

    ``scoring="cached"`` computes each context once and its choices on its KV cache, batched
    over the whole of ``examples`` (:mod:`compatlm.eval.kv_scoring`); ``"full"`` computes every
    (context, choice) pair in full. ``on_results`` receives finished results in completion
    order, at least ``4 * batch_size`` at a time (the rest at the end), for writing as the
    work proceeds; in full mode the examples are then scored in windows of that size.
    """
    if scoring not in SCORING_MODES:
        raise CompatlmError(f"scoring {scoring!r}: expected one of {' | '.join(SCORING_MODES)}")
    per_example = [
        encode_choices(tokenizer, ex.context, ex.choices, delimiter=delimiter) for ex in examples
    ]
    flat = [req for reqs in per_example for req in reqs]
    owner = [e for e, reqs in enumerate(per_example) for _ in reqs]  # request -> example
    first = [0]  # example -> index of its first request in ``flat``
    for reqs in per_example:
        first.append(first[-1] + len(reqs))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    flat_scores: list[ChoiceScore | None] = [None] * len(flat)
    results: list[MCResult | None] = [None] * len(examples)
    flush_every = 4 * batch_size  # as many examples as the pipeline wrote per chunk before
    pending: list[MCResult] = []
    remaining = [len(reqs) for reqs in per_example]

    def done(scored: Sequence[tuple[int, ChoiceScore]]) -> None:
        for r, score in scored:
            flat_scores[r] = score
            e = owner[r]
            remaining[e] -= 1
            if remaining[e] == 0:
                own = flat_scores[first[e] : first[e + 1]]
                results[e] = _decide(examples[e], per_example[e], own, metric)  # type: ignore[arg-type]
                pending.append(results[e])  # type: ignore[arg-type]
        if on_results is not None and len(pending) >= flush_every:
            on_results(pending[:])
            pending.clear()

    kwargs: dict[str, Any] = {
        "batch_size": batch_size,
        "max_length": max_length,
        "pad_token_id": pad,
        "on_batch": on_batch,
        "work": work,
    }
    if scoring == "full":
        window = flush_every if on_results is not None else max(len(examples), 1)
        for start in range(0, len(examples), window):
            lo, hi = first[start], first[min(start + window, len(examples))]
            done(
                list(zip(range(lo, hi), score_requests(model, flat[lo:hi], **kwargs), strict=True))
            )
    else:
        # Imported here: the cached path needs transformers' Cache, which ``scoring: full``
        # (and importing the runner at all) should not load.
        from compatlm.eval.kv_scoring import score_requests_cached

        score_requests_cached(model, flat, on_done=done, **kwargs)
    if on_results is not None and pending:
        on_results(pending[:])
    return results  # type: ignore[return-value]


def mc_prediction(
    result: MCResult, *, task: str, role: str, model: str, metric: str, example_hash: str
) -> dict[str, Any]:
    """A schema-1 prediction line for one multiple-choice example (field order = the schema)."""
    ex = result.example
    probs = softmax(result.decision_scores)
    others = [s for i, s in enumerate(result.decision_scores) if i != result.pred]
    margin = result.decision_scores[result.pred] - max(others) if others else None
    return {
        "schema_version": 1,
        "task": task,
        "kind": "multiple_choice",
        "role": role,
        "model": model,
        "example_id": ex.id,
        "example_hash": example_hash,
        "prompt_hash": result.prompt_hash,
        "target": ex.label,
        "output": ex.choices[result.pred],
        "parsed": result.pred,
        "correct": result.pred == ex.label,
        "score": probs[ex.label],
        "margin": margin,
        "loglikelihoods": list(result.loglikelihoods),
        "choice_lengths": list(result.choice_lengths),
        "metric": metric,
        "slice": ex.slice,
        "group": ex.group,
    }
