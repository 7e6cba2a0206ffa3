"""Tokenizer identity: whether two tokenizers split text the same way, and what differs.

A fingerprint keys everything that is valid only for one tokenizer (teacher caches, the
per-tokenizer context-fit checks, eval's prompt-hash policy); the difference check is the
guard of methods that need a shared vocabulary (token-level distillation, re-ranking). Both
need only the tokenizer object, never a model, so they sit below :mod:`compatlm.models` (which
re-exports them) and :mod:`compatlm.tasks.fit` alike.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from compatlm.errors import CompatlmError


def tokenizer_fingerprint(tok: Any) -> str:
    """sha256 over the vocabulary and special tokens: equal fingerprints tokenise identically
    for all practical purposes (normaliser/pre-tokeniser are included when available)."""
    h = hashlib.sha256()
    vocab = tok.get_vocab()
    h.update(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1])).encode())
    h.update(json.dumps(tok.all_special_tokens).encode())
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        for key in ("normalizer", "pre_tokenizer", "model"):
            h.update(json.dumps(state.get(key), sort_keys=True).encode())
    return h.hexdigest()[:16]


def first_tokenizer_difference(tok_a: Any, tok_b: Any) -> str | None:
    """A human description of the first difference between two tokenizers, or None."""
    va, vb = tok_a.get_vocab(), tok_b.get_vocab()
    inv_a = {i: t for t, i in va.items()}
    inv_b = {i: t for t, i in vb.items()}
    for i in range(max(len(inv_a), len(inv_b))):
        if inv_a.get(i) != inv_b.get(i):
            return f"token id {i} is {inv_a.get(i)!r} in one and {inv_b.get(i)!r} in the other"
    if tok_a.all_special_tokens != tok_b.all_special_tokens:
        return f"special tokens differ: {tok_a.all_special_tokens} vs {tok_b.all_special_tokens}"
    if tokenizer_fingerprint(tok_a) != tokenizer_fingerprint(tok_b):
        return "vocabularies agree but normaliser, pre-tokeniser or merges differ"
    return None


def require_same_tokenizer(
    tok_a: Any, tok_b: Any, why: str, names: tuple[str, str] = ("old", "new")
) -> None:
    """Raise when two tokenizers differ; ``why`` says what needs them equal."""
    diff = first_tokenizer_difference(tok_a, tok_b)
    if diff is not None:
        raise CompatlmError(
            f"{names[0]} and {names[1]} tokenizers differ ({diff}); {why} needs a shared vocabulary"
        )
