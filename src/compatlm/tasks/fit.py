"""Do a task's inputs fit a model's context length? Checked with the tokenizer alone.

Tokenizers are cheap to load and the token ids are exactly those the evaluation will use (the
same :mod:`compatlm.prompts` functions), so an example that cannot be scored as written is
found before any model is loaded or any output is written, named by task and example id.

An input that does not fit is refused rather than truncated. lm-eval drops the oldest context
tokens silently; compatlm compares instances across models, and a truncated instance is a
different instance — and an old and a new model with different context lengths would not
even see the same one. The messages say which lengths clash and how to fix it.

* multiple choice: context + delimiter + choice must fit in ``max_length + 1`` tokens (the last
  token is predicted, never fed), for every choice;
* generation: the prompt (after the chat template, if any) plus ``max_new_tokens`` must fit in
  ``max_length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compatlm.errors import CompatlmError
from compatlm.prompts import config_max_length, encode_choices, encode_prompt
from compatlm.tasks.base import GenExample, MCExample, ResolvedTask
from compatlm.tokenizer_identity import tokenizer_fingerprint


def _too_long(task: ResolvedTask, example_id: str, what: str, max_length: int, source: str) -> str:
    return (
        f"task {task.name!r}: example {example_id!r}: {what}, more than the model's maximum"
        f" length {max_length} ({source})"
    )


def _check_mc(task: ResolvedTask, ex: MCExample, tok: Any, max_length: int, source: str) -> None:
    for i, req in enumerate(encode_choices(tok, ex.context, ex.choices)):
        if not req.continuation_ids:
            raise CompatlmError(
                f"task {task.name!r}: example {ex.id!r}: choice {i} tokenises to nothing after"
                " its context; it cannot be scored"
            )
        if req.total_length > max_length + 1:
            what = (
                f"context + choice {i} is {len(req.context_ids)} + {len(req.continuation_ids)}"
                f" = {req.total_length} tokens"
            )
            raise CompatlmError(
                _too_long(task, ex.id, what, max_length, source)
                + "; shorten the example or use a model with a longer context"
            )


def _check_gen(task: ResolvedTask, ex: GenExample, tok: Any, max_length: int, source: str) -> None:
    n_prompt = len(encode_prompt(tok, ex.prompt, chat_template=task.chat_template))
    if n_prompt + task.max_new_tokens > max_length:
        what = (
            f"prompt {n_prompt} tokens + max_new_tokens {task.max_new_tokens}"
            f" = {n_prompt + task.max_new_tokens}"
        )
        raise CompatlmError(
            _too_long(task, ex.id, what, max_length, source)
            + "; shorten the prompt or lower the task's max_new_tokens"
        )


def check_task_fits(task: ResolvedTask, tokenizer: Any, max_length: int, source: str) -> None:
    """Raise a one-line :class:`CompatlmError` for the first example of ``task`` whose tokens
    do not fit ``max_length`` (``source`` says where that limit comes from)."""
    if task.kind == "generation" and task.max_new_tokens >= max_length:
        raise CompatlmError(
            f"task {task.name!r}: max_new_tokens {task.max_new_tokens} leaves no room for a"
            f" prompt within the model's maximum length {max_length} ({source});"
            " lower max_new_tokens"
        )
    for ex in task.examples:
        if isinstance(ex, MCExample):
            _check_mc(task, ex, tokenizer, max_length, source)
        else:
            _check_gen(task, ex, tokenizer, max_length, source)


def check_tasks_fit(
    tasks: Sequence[ResolvedTask],
    tokenizer: Any,
    config: Any,
    checked: set[tuple[str, int, str]] | None = None,
) -> None:
    """:func:`check_task_fits` for each task, with the maximum length of the model ``config``
    (lm-eval's rule, :func:`compatlm.prompts.config_max_length`). ``checked`` remembers
    (tokenizer fingerprint, max length, task) triples already checked, so models sharing a
    base and its tokenizer tokenise a task once."""
    max_length, source = config_max_length(config, tokenizer)
    seen = checked if checked is not None else set()
    fingerprint = tokenizer_fingerprint(tokenizer)
    for task in tasks:
        key = (fingerprint, max_length, task.name)
        if key not in seen:
            check_task_fits(task, tokenizer, max_length, source)
            seen.add(key)
