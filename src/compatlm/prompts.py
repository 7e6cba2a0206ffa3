"""The ONE place where text becomes token ids (prompts, BOS, chat templates, truncation).

Multiple-choice requests are tokenised exactly as lm-evaluation-harness 0.4.13 does for Hugging
Face causal models (``HFLM`` with its default ``add_bos_token=None``), so a per-instance answer
computed here can be checked against lm-eval's ``--log_samples`` output:

* the continuation of a choice is ``delimiter + choice`` (lm-eval's ``target_delimiter``, " ");
* trailing whitespace of the context moves to the front of the continuation, because BPE
  vocabularies attach a leading space to the next word ("Answer:" + " yes", not "Answer: " + "yes");
* ``whole = encode(context + continuation)``, ``context_ids = encode(context)``,
  ``continuation_ids = whole[len(context_ids):]`` — encoding the two halves separately would
  split tokens differently at the boundary;
* an empty context is replaced by the prefix token (BOS, else EOS);
* BOS follows the tokenizer's own ``add_special_tokens=True`` behaviour (Llama-style tokenizers add
  it, GPT-2-style ones do not), except that a text which already starts with the BOS string
  (e.g. a rendered chat template) gets no second one;
* over-long inputs are truncated from the left to the model's maximum length.

``prompt_hash`` fingerprints token ids so two models can be shown to have seen the same tokens;
``example_hash`` fingerprints an example's inputs and target, independent of any model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_LENGTH = 2048  # lm-eval's fallback when neither config nor tokenizer knows
# transformers' "no limit" sentinel for tokenizer.model_max_length (int(1e30)).
# lm-eval's target_delimiter: what separates a context/prompt from its answer.
TARGET_DELIMITER = " "
_TOKENIZER_INFINITY = 1000000000000000019884624838656


@dataclass(frozen=True)
class ScoringRequest:
    """One (context, continuation) pair as token ids; the continuation is what gets scored."""

    context_ids: tuple[int, ...]
    continuation_ids: tuple[int, ...]

    @property
    def total_length(self) -> int:
        return len(self.context_ids) + len(self.continuation_ids)


def prefix_token_id(tokenizer: Any) -> int:
    """The token that stands in for an empty context: BOS, else EOS (lm-eval's rule)."""
    if tokenizer.bos_token_id is not None:
        return int(tokenizer.bos_token_id)
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has neither a BOS nor an EOS token")
    return int(tokenizer.eos_token_id)


def encode(tokenizer: Any, text: str, *, add_special_tokens: bool | None = None) -> list[int]:
    """``tokenizer.encode`` with lm-eval's BOS rule.

    ``add_special_tokens=None`` means "the tokenizer's default", except when ``text`` already
    starts with the decoded prefix token (a chat template rendered with its own BOS).
    """
    kwargs: dict[str, bool] = {}
    if add_special_tokens is not None:
        kwargs["add_special_tokens"] = add_special_tokens
    elif text.startswith(tokenizer.decode(prefix_token_id(tokenizer))):
        kwargs["add_special_tokens"] = False
    return list(tokenizer.encode(text, **kwargs))


def split_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing whitespace of ``context`` to the front of ``continuation``."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def encode_pair(tokenizer: Any, context: str, continuation: str) -> ScoringRequest:
    """Token ids of one (context, continuation) request, lm-eval style (see module docstring)."""
    if context == "":
        cont = encode(tokenizer, continuation, add_special_tokens=False)
        prefix = prefix_token_id(tokenizer)
        if cont and cont[0] == prefix:
            return ScoringRequest(tuple(cont[:1]), tuple(cont[1:]))
        return ScoringRequest((prefix,), tuple(cont))
    context, continuation = split_trailing_space(context, continuation)
    whole = encode(tokenizer, context + continuation)
    context_ids = encode(tokenizer, context)
    return ScoringRequest(tuple(context_ids), tuple(whole[len(context_ids) :]))


def encode_choices(
    tokenizer: Any, context: str, choices: Sequence[str], *, delimiter: str = TARGET_DELIMITER
) -> list[ScoringRequest]:
    """One request per choice; the continuation is ``delimiter + choice`` as in lm-eval.

    The context is encoded once and shared: it is identical for every choice because the
    trailing-space split depends on the context alone.
    """
    ctx, moved = split_trailing_space(context, "")
    if ctx == "":
        # An all-blank context would leave no token to condition on (lm-eval asserts here);
        # treat it as empty: its whitespace stays in front of the continuation.
        return [encode_pair(tokenizer, "", moved + delimiter + c) for c in choices]
    context_ids = tuple(encode(tokenizer, ctx))
    out = []
    for choice in choices:
        whole = encode(tokenizer, ctx + moved + delimiter + choice)
        out.append(ScoringRequest(context_ids, tuple(whole[len(context_ids) :])))
    return out


def scoring_input(request: ScoringRequest, max_length: int) -> tuple[list[int], int]:
    """The model input for one request and the number of continuation tokens to score.

    The last continuation token is never fed (nothing predicts after it); when context +
    continuation exceed ``max_length + 1`` tokens the oldest context tokens are dropped.
    """
    ids = list(request.context_ids + request.continuation_ids)
    return ids[-(max_length + 1) :][:-1], len(request.continuation_ids)


def model_max_length(model: Any, tokenizer: Any, default: int = DEFAULT_MAX_LENGTH) -> int:
    """The context length lm-eval would use: config positions, else tokenizer limit, else 2048."""
    return config_max_length(getattr(model, "config", None), tokenizer, default)[0]


def config_max_length(
    config: Any, tokenizer: Any, default: int = DEFAULT_MAX_LENGTH
) -> tuple[int, str]:
    """:func:`model_max_length` from a model config alone (no weights needed), with where the
    number came from (for messages)."""
    config = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if value is not None:
            return int(value), f"config {attr}"
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit != _TOKENIZER_INFINITY:
        return int(limit), "tokenizer model_max_length"
    return default, "default"


def render_chat(tokenizer: Any, prompt: str) -> str:
    """``prompt`` as a single user turn in the tokenizer's chat template, ready for the reply."""
    from compatlm.errors import CompatlmError

    if not getattr(tokenizer, "chat_template", None):
        raise CompatlmError(
            "task chat_template=true but the tokenizer has no chat template; set it to false"
        )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def encode_prompt(
    tokenizer: Any,
    prompt: str,
    *,
    chat_template: bool = False,
    max_length: int | None = None,
) -> list[int]:
    """Token ids of a generation prompt (same BOS rule as scoring), left-truncated to
    ``max_length`` so the most recent text — the question being answered — survives."""
    text = render_chat(tokenizer, prompt) if chat_template else prompt
    ids = encode(tokenizer, text)
    if max_length is not None and len(ids) > max_length:
        ids = ids[-max_length:]
    return ids


def _sha16(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def prompt_hash(token_ids: Sequence[int] | Sequence[Sequence[int]]) -> str:
    """sha256 hex[:16] of token ids (a flat list, or one list per choice for multiple choice)."""
    return _sha16(json.dumps(_as_lists(token_ids), separators=(",", ":")))


def _as_lists(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_as_lists(v) for v in x]
    return int(x)


def example_hash(fields: Mapping[str, Any]) -> str:
    """sha256 hex[:16] of the canonical JSON (sorted keys, no whitespace) of ``fields``."""
    return _sha16(json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
