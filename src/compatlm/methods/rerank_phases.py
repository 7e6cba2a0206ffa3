"""The two phases of re-ranking (BCR): the new model's samples, then the old model's scores.

Phase 1 (:func:`draw`) loads the new model and draws, per example not yet on disk, its greedy
output and k seeded samples, appending each row to ``samples.jsonl`` as it is drawn (a cut run
resumes without redrawing). Phase 2 (:func:`score_candidates`) loads the old model and scores
every candidate of every example in one batched, length-sorted pass. Both show a progress bar:
on a CPU either takes minutes. The selection and the cost accounting are in
:mod:`compatlm.methods.rerank`.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from compatlm.config import RuntimeConfig
from compatlm.eval.generate import generate
from compatlm.eval.runner import score_requests
from compatlm.io import JsonlAppender
from compatlm.methods.config import RerankConfig
from compatlm.methods.sampling import Candidate, example_seed, sample_outputs
from compatlm.models import load_model
from compatlm.prompts import (
    ScoringRequest,
    encode_pair,
    encode_prompt,
    example_hash,
    model_max_length,
    prompt_hash,
    render_chat,
)
from compatlm.spec import ModelSpec
from compatlm.tasks import ResolvedTask

if TYPE_CHECKING:
    from rich.progress import Progress
    from transformers import PreTrainedTokenizerBase

    from compatlm.eval.full_scoring import ChoiceScore


def score_request(tokenizer: Any, context: str, out: Candidate) -> ScoringRequest | None:
    """The old model's request for one candidate; None when there is nothing to score."""
    req = encode_pair(tokenizer, context, out.text)
    cont = req.continuation_ids
    if out.finish == "eos" and tokenizer.eos_token_id is not None:
        cont = (*cont, int(tokenizer.eos_token_id))
    return ScoringRequest(req.context_ids, cont) if cont else None


def as_output(row: dict[str, Any]) -> Candidate:
    return Candidate(str(row["text"]), int(row["n_tokens"]), str(row["finish"]))


def _free(loaded: Any) -> None:
    loaded.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def draw(
    task: ResolvedTask,
    cfg: RerankConfig,
    runtime: RuntimeConfig,
    new: ModelSpec,
    rows: dict[str, dict],
    samples_path: Path | None,
    bar: Progress,
) -> None:
    """Phase 1 (new model): greedy output and k samples for every example not in ``rows``."""
    todo = [ex for ex in task.examples if ex.id not in rows]
    if not todo:
        return
    job = bar.add_task(f"rerank · {task.name}: new samples", total=len(todo))
    loaded = load_model(new, runtime=runtime)
    model, tok = loaded.model, loaded.tokenizer
    max_len = model_max_length(model, tok)
    prompt_len = max_len - task.max_new_tokens if max_len > task.max_new_tokens else max_len
    writer = JsonlAppender(samples_path) if samples_path is not None else None
    try:
        for start in range(0, len(todo), runtime.batch_size):
            chunk = todo[start : start + runtime.batch_size]
            prompts = [
                encode_prompt(
                    tok, ex.prompt, chat_template=task.chat_template, max_length=prompt_len
                )
                for ex in chunk
            ]
            t0 = time.perf_counter()
            greedy = generate(
                model,
                tok,
                prompts,
                max_new_tokens=task.max_new_tokens,
                stop=task.stop,
                batch_size=runtime.batch_size,
                no_repeat_ngram_size=task.no_repeat_ngram_size,
            )
            greedy_share = (time.perf_counter() - t0) / len(chunk)
            for ex, ids, g in zip(chunk, prompts, greedy, strict=True):
                t0 = time.perf_counter()
                samples = sample_outputs(
                    model,
                    tok,
                    ids,
                    k=cfg.k,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    max_new_tokens=task.max_new_tokens,
                    stop=task.stop,
                    no_repeat_ngram_size=task.no_repeat_ngram_size,
                    seed=example_seed(runtime.seed, ex.id),
                )
                row = {
                    "example_id": ex.id,
                    "example_hash": example_hash(ex.hash_fields()),
                    "prompt_hash": prompt_hash(ids),
                    "prompt_tokens": len(ids),
                    "greedy": {"text": g.text, "n_tokens": g.n_tokens, "finish": g.finish},
                    "greedy_seconds": greedy_share,
                    "samples": [vars(s).copy() for s in samples],
                    "sample_seconds": time.perf_counter() - t0,
                }
                rows[ex.id] = row
                if writer is not None:
                    writer.write(row)
                bar.advance(job)
    finally:
        if writer is not None:
            writer.close()
        _free(loaded)


def score_candidates(
    task: ResolvedTask,
    cfg: RerankConfig,
    runtime: RuntimeConfig,
    old: ModelSpec,
    tok: PreTrainedTokenizerBase,
    rows: dict[str, dict],
    bar: Progress,
) -> tuple[
    list[list[Candidate]], list[list[ScoringRequest | None]], list[ScoringRequest],
    list[ChoiceScore], float, int,
]:  # fmt: skip
    """Phase 2 (old model): score every candidate of every example in one batched pass."""
    cands: list[list[Candidate]] = []
    reqs: list[list[ScoringRequest | None]] = []
    for ex in task.examples:
        row = rows[ex.id]
        outs = [as_output(s) for s in row["samples"]]
        if cfg.include_greedy:
            outs.append(as_output(row["greedy"]))
        context = render_chat(tok, ex.prompt) if task.chat_template else ex.prompt
        cands.append(outs)
        reqs.append([score_request(tok, context, o) for o in outs])
    loaded = load_model(old, runtime=runtime)
    max_len = model_max_length(loaded.model, loaded.tokenizer)
    flat = [r for per in reqs for r in per if r is not None]
    t0 = time.perf_counter()
    job = bar.add_task(f"rerank · {task.name}: old scores", total=len(flat))
    flat_scores = score_requests(
        loaded.model,
        flat,
        batch_size=runtime.batch_size,
        max_length=max_len,
        pad_token_id=tok.pad_token_id or 0,
        on_batch=lambda n: bar.advance(job, n),
    )
    score_seconds = time.perf_counter() - t0
    _free(loaded)
    return cands, reqs, flat, flat_scores, score_seconds, max_len
