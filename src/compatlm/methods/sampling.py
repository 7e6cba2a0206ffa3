"""Seeded sampling of k continuations per prompt, for re-ranking (BCR).

Sampled rows end by the same rules as greedy decoding in :mod:`compatlm.eval.generate` (EOS,
``max_new_tokens``, stop strings; the text is cut at the first stop string), so a sample and a
greedy output of the same text are the same candidate. Each prompt is sampled in one
``generate`` call with k return sequences, after seeding with a per-example seed: the samples of
an example do not depend on batch size, example order or resuming.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

# eos_token_ids/StopStringCriteria: the greedy decoder's EOS and stop-string rules, reused so sampled and
# greedy outputs end by the same rules.
from compatlm.eval.generate import StopStringCriteria, decode_row, eos_token_ids

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Candidate:
    """One output of the new model: what is scored, chosen and stored in samples.jsonl."""

    text: str  # decoded continuation, cut at the first stop string
    n_tokens: int  # generated tokens, EOS and padding excluded
    finish: str  # "stop" | "eos" | "length"


def example_seed(seed: int, example_id: str) -> int:
    """A per-example seed: samples do not depend on batch order, batch size or resuming."""
    return int(hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()[:8], 16)


def _row_output(
    new: list[int], tokenizer: PreTrainedTokenizerBase, pad: int, eos: list[int], stop
) -> Candidate:
    """Decode one generated row exactly as greedy evaluation does."""
    out = decode_row(new, tokenizer, pad, eos, stop)
    return Candidate(out.text, len(out.token_ids), out.finish)


@torch.inference_mode()
def sample_outputs(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[int],
    *,
    k: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    stop: tuple[str, ...] = (),
    no_repeat_ngram_size: int = 0,
    seed: int = 0,
) -> list[Candidate]:
    """k sampled continuations of one prompt (one ``generate`` call with k return sequences)."""
    from transformers import GenerationConfig, StoppingCriteriaList

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = eos_token_ids(model, tokenizer)
    config = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=0,  # no hidden top-k truncation: only what the config says
        num_return_sequences=k,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad,
        eos_token_id=eos or None,
        no_repeat_ngram_size=no_repeat_ngram_size or 0,
    )
    width = len(prompt_ids)
    input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # [1, T]
    torch.manual_seed(seed)
    out = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        generation_config=config,
        stopping_criteria=StoppingCriteriaList([StopStringCriteria(tokenizer, width, stop)]),
    )  # [k, T + new]
    return [_row_output(out[r, width:].tolist(), tokenizer, pad, eos, stop) for r in range(k)]
