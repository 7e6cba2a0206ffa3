"""Tokenizer training and base-model pre-training for the demo family.

Owns: the shared byte-level BPE tokenizer (GPT-2-style leading-space words, so a choice like
``" answer"`` tokenises the same appended to any context; BOS added automatically like Llama's)
and the plain torch pre-training loop (AdamW, warmup-stable-decay schedule, documents packed
into fixed-length rows with a block-diagonal attention mask) that makes the old and new demo
bases. Models are Llama architecture with ``tie_word_embeddings=False``: a tied lm_head would be
shared with the input embeddings and break LoRA merging.

Everything is seeded through local generators (``random.Random``, ``torch.random.fork_rng``),
never by touching the caller's global RNG state."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from pydantic import BaseModel, ConfigDict
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

log = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
MAX_POSITIONS = 256  # RoPE has no position parameters; this only bounds prompt + output length


class ModelShape(BaseModel):
    """Architecture of one demo base (a small LlamaConfig)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int


class PretrainSettings(BaseModel):
    """Optimisation settings of one pre-training run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    seq_len: int = 128
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    # Warmup-stable-decay: the LR stays at its peak until the last ``decay_frac`` of the steps,
    # then follows a cosine to 10%. A long high-LR phase lets tiny models form the in-context
    # copying circuits (induction heads) summaries and word problems need within a small budget.
    decay_frac: float = 0.3
    epochs: int = 1


def train_tokenizer(docs: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE over ``docs`` with <pad>/<bos>/<eos>; deterministic for the same docs."""
    tok = Tokenizer(models.BPE())
    # add_prefix_space=False: "Summary: x" and " x" share the token for " x" (GPT-2 convention).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer)
    bos_id = tok.token_to_id(BOS)
    # Like Llama: encoding a text prepends BOS (add_special_tokens=False leaves it off).
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=MAX_POSITIONS,
    )


def make_model(
    shape: ModelShape, tokenizer: PreTrainedTokenizerFast, seed: int
) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


class Packed(NamedTuple):
    """Documents packed into fixed-length rows, each doc whole and attending only to itself."""

    input_ids: torch.Tensor  # (n_rows, seq_len) token ids, <pad> after the last doc of a row
    segments: torch.Tensor  # (n_rows, seq_len) doc index within the row, -1 on padding
    positions: torch.Tensor  # (n_rows, seq_len) position inside the doc (restarts at 0)

    def n_tokens(self) -> int:
        return int((self.segments >= 0).sum())


def pack(docs: Sequence[str], tokenizer: PreTrainedTokenizerFast, seq_len: int) -> Packed:
    """``<bos> doc <eos>`` per doc, greedily packed into rows of ``seq_len`` without splitting.

    Why document masking instead of plain concatenation: at inference every prompt starts at
    position 0 right after <bos>, alone. Training the same way (positions restart, no attention
    across docs) spares a tiny model from learning to ignore unrelated neighbours, and it then
    learns in-context copying from far fewer tokens.
    """
    backend = tokenizer.backend_tokenizer
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    rows: list[list[int]] = [[]]
    segs: list[list[int]] = [[]]
    for enc in backend.encode_batch(list(docs), add_special_tokens=False):
        ids = [bos, *enc.ids, eos][:seq_len]
        if len(rows[-1]) + len(ids) > seq_len:
            rows.append([])
            segs.append([])
        seg = (segs[-1][-1] + 1) if segs[-1] else 0
        rows[-1].extend(ids)
        segs[-1].extend([seg] * len(ids))
    n = len(rows)
    input_ids = torch.full((n, seq_len), pad, dtype=torch.long)
    segments = torch.full((n, seq_len), -1, dtype=torch.long)
    positions = torch.zeros((n, seq_len), dtype=torch.long)
    for i, (row, seg) in enumerate(zip(rows, segs, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        segments[i, : len(seg)] = torch.tensor(seg)
        start = 0
        for j in range(1, len(seg) + 1):
            if j == len(seg) or seg[j] != seg[start]:
                positions[i, start:j] = torch.arange(j - start)
                start = j
    return Packed(input_ids, segments, positions)


def document_mask(segments: torch.Tensor) -> torch.Tensor:
    """(bs, seq) segment ids -> (bs, 1, seq, seq) bool: causal, within the same doc.

    Padding positions attend to themselves only, so no softmax row is empty (empty rows give
    NaN that would leak into gradients even though padding carries no loss).
    """
    seq = segments.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    same = segments[:, :, None] == segments[:, None, :]  # (bs, seq, seq)
    eye = torch.eye(seq, dtype=torch.bool)
    return ((causal & same & (segments[:, :, None] >= 0)) | eye)[:, None]


def batch_labels(
    packed_ids: torch.Tensor, segments: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    # No loss on padding, nor on each doc's <bos> (it would be "predicted" from another doc).
    return packed_ids.masked_fill((segments < 0) | (positions == 0), -100)


def pretrain(
    model: LlamaForCausalLM,
    data: Packed,
    settings: PretrainSettings,
    *,
    on_step: Callable[[int, int, float], None] | None = None,
) -> dict[str, float]:
    """Next-token pre-training on packed documents; returns summary stats.

    ``on_step(step, total, loss_ema)`` is called after every optimiser step (progress bars).
    """
    bs = settings.batch_size
    n_rows = data.input_ids.shape[0]
    steps_per_epoch = n_rows // bs
    total = steps_per_epoch * settings.epochs
    if total < 1:
        raise ValueError(f"corpus too small: {n_rows} rows < batch size {bs}")
    model.config._attn_implementation = "sdpa"  # honours the 4D document mask exactly
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "norm" in n]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lr,
        betas=(0.9, 0.95),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _wsd(total, settings))
    rng = random.Random(f"pretrain-order:{settings.seed}")
    model.train()
    start, n_tokens, ema, done = time.perf_counter(), 0, math.nan, 0
    for _epoch in range(settings.epochs):
        order = list(range(n_rows))
        rng.shuffle(order)
        for step in range(steps_per_epoch):
            idx = order[step * bs : (step + 1) * bs]
            ids, seg, pos = data.input_ids[idx], data.segments[idx], data.positions[idx]
            loss = model(
                input_ids=ids,  # (bs, seq_len)
                attention_mask=document_mask(seg),  # (bs, 1, seq_len, seq_len)
                position_ids=pos,  # (bs, seq_len)
                labels=batch_labels(ids, seg, pos),
            ).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            n_tokens += int((seg >= 0).sum())
            ema = loss.item() if math.isnan(ema) else 0.95 * ema + 0.05 * loss.item()
            done += 1
            if on_step is not None:
                on_step(done, total, ema)
    model.eval()
    return {
        "steps": total,
        "tokens": n_tokens,
        "seconds": round(time.perf_counter() - start, 2),
        "final_loss_ema": round(ema, 4),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _wsd(total: int, s: PretrainSettings):
    warm = max(1, int(s.warmup_frac * total))
    decay_start = min(total, max(warm, int((1.0 - s.decay_frac) * total)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if step < decay_start:
            return 1.0
        t = (step - decay_start) / max(1, total - decay_start)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return factor


def save_base(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    """One directory per base: weights (safetensors) + tokenizer, loadable with the Auto classes."""
    from transformers.utils import logging as hf_logging

    # transformers draws its own progress bar while writing shards; ours is enough.
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
