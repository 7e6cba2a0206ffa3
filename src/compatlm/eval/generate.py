"""Batched greedy generation with stop strings, and generation prediction lines.

Greedy decoding (as lm-eval's ``generate_until`` with ``do_sample: false``) through
``model.generate`` with the KV cache and left padding: prompts are sorted longest first so a
batch holds prompts of similar length. A row stops at EOS, at ``max_new_tokens``, or once its
decoded text contains one of the stop strings; the returned text is cut at the first stop string
(the earliest occurrence of any of them, which is what lm-eval's sequential ``split`` yields).

The generation settings are built from scratch instead of inheriting the checkpoint's
``generation_config``: a checkpoint that ships ``do_sample=True`` must not make evaluation random.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from compatlm.tasks.base import GenExample
from compatlm.tasks.extract import Extractor, target_answer
from compatlm.tasks.similarity import similarity

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class GenerationOutput:
    text: str  # decoded continuation, cut at the first stop string
    token_ids: tuple[int, ...]  # generated tokens, EOS and trailing padding excluded
    finish: str  # "stop" | "eos" | "length"

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest occurrence of any non-empty stop string."""
    cut = len(text)
    for stop in stops:
        if stop:
            pos = text.find(stop)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut], cut < len(text)


class StopStringCriteria:
    """Per-row stopping criterion: True once the row's generated text contains a stop string.

    Decodes only the generated part (the prompt may legitimately contain "Question:"). A row
    found done is not decoded again: ``generate`` never resumes a finished row, so its later
    value does not matter, and skipping it saves most of the decoding once rows stop.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, prompt_width: int, stops: Sequence[str]
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.stops = [s for s in stops if s]
        self._done: torch.Tensor | None = None  # [B] rows already stopped in this call
        self._width = 0  # input width at the previous call: a shorter one means a new call

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        # input_ids: [B, prompt_width + generated]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if not self.stops:
            return done
        same_call = self._done is not None and self._done.shape == done.shape
        if same_call and input_ids.shape[1] > self._width:
            done |= self._done
        self._width = input_ids.shape[1]
        todo = [row for row in range(input_ids.shape[0]) if not done[row]]
        if todo:
            texts = self.tokenizer.batch_decode(
                input_ids[todo, self.prompt_width :], skip_special_tokens=True
            )
            for row, text in zip(todo, texts, strict=True):
                done[row] = any(s in text for s in self.stops)
        self._done = done.clone()
        return done


def eos_token_ids(
    model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase
) -> list[int]:
    """EOS ids of the checkpoint's generation config (several for some chat models) and the
    tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return [int(i) for i in ids]


@torch.inference_mode()
def generate(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    batch_size: int = 8,
    no_repeat_ngram_size: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> list[GenerationOutput]:
    """Greedy continuations of token-id prompts, in the order given."""
    from transformers import GenerationConfig, StoppingCriteriaList

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = eos_token_ids(model, tokenizer)
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad,
        eos_token_id=eos or None,
        no_repeat_ngram_size=no_repeat_ngram_size or 0,
    )
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), tuple(prompts[i])))
    outputs: list[GenerationOutput | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        input_ids = torch.full((len(idx), width), pad, dtype=torch.long)  # [B, T], left-padded
        attention = torch.zeros((len(idx), width), dtype=torch.long)  # [B, T]
        for row, i in enumerate(idx):
            ids = list(prompts[i])
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([StopStringCriteria(tokenizer, width, stop)]),
        )  # [B, T + new]
        for row, i in enumerate(idx):
            outputs[i] = decode_row(out[row, width:].tolist(), tokenizer, pad, eos, stop)
        if on_batch is not None:
            on_batch(len(idx))
    return outputs  # type: ignore[return-value]


def decode_row(
    new: list[int],
    tokenizer: PreTrainedTokenizerBase,
    pad: int,
    eos: Sequence[int],
    stop: Sequence[str],
) -> GenerationOutput:
    """One generated row (token ids after the prompt) as text: padding, EOS and stop cut off."""
    if pad not in eos:
        # Rows that hit a stop string early are filled with padding up to the batch's end.
        while new and new[-1] == pad:
            new.pop()
    finish = "length"
    for pos, tok in enumerate(new):
        if tok in eos:
            # Everything after EOS is padding added for rows that finished early.
            new, finish = new[:pos], "eos"
            break
    text, stopped = cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), stop)
    return GenerationOutput(text, tuple(new), "stop" if stopped else finish)


def gen_prediction(
    example: GenExample,
    output: GenerationOutput,
    *,
    task: str,
    role: str,
    model: str,
    metric: str,
    extractor: Extractor,
    pass_threshold: float,
    example_hash: str,
    prompt_hash: str,
) -> dict[str, Any]:
    """A schema-1 prediction line for one generation example.

    exact_match: ``parsed`` is the extracted answer (None when extraction fails), correct when it
    equals the reference's extracted answer, score 1/0. Similarity metrics: score = similarity of
    the output to the reference, correct when score >= ``pass_threshold``.
    """
    parsed = extractor(output.text)
    if metric == "exact_match":
        correct = parsed is not None and parsed == target_answer(example.reference, extractor)
        score = 1.0 if correct else 0.0
    else:
        score = similarity(metric, parsed if parsed is not None else "", example.reference)
        correct = score >= pass_threshold
    return {
        "schema_version": 1,
        "task": task,
        "kind": "generation",
        "role": role,
        "model": model,
        "example_id": example.id,
        "example_hash": example_hash,
        "prompt_hash": prompt_hash,
        "target": example.reference,
        "output": output.text,
        "parsed": parsed,
        "correct": correct,
        "score": score,
        "margin": None,
        "loglikelihoods": None,
        "choice_lengths": None,
        "metric": metric,
        "slice": example.slice,
        "group": example.group,
    }
