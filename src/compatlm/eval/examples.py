"""The inputs beside each flip: ``examples/<task>.jsonl`` of an eval run and its use by compare.

Prediction rows carry ids, hashes and outputs, not what the model was asked, so a flip viewer
built from them alone cannot show the question. ``compatlm eval`` therefore writes, once per
task, the prompt text (a multiple-choice context or a generation prompt) and the choices of
every example it evaluates (:func:`write_examples`). ``compare RUN_DIR`` adds them to each flip
row as ``prompt`` and ``choices`` (:func:`attach_texts`), but only where the row's
``example_hash`` equals the one recorded: a task file edited after the eval must not put another
question beside a flip. Where nothing is recorded (two prediction files, an older run) the rows
get ``null`` and the viewer says "not recorded".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_jsonl, read_jsonl
from compatlm.paths import RunLayout

if TYPE_CHECKING:
    from compatlm.tasks import Example, ResolvedTask

log = logging.getLogger(__name__)

# example_id -> {"example_hash", "prompt", "choices"}
Texts = dict[str, dict[str, Any]]


def example_row(example: Example, example_hash: str) -> dict[str, Any]:
    """One line of the examples file for an MC or generation example."""
    choices = getattr(example, "choices", None)
    prompt = example.context if choices is not None else example.prompt
    return {
        "example_id": example.id,
        "example_hash": example_hash,
        "prompt": prompt,
        "choices": list(choices) if choices is not None else None,
    }


def write_examples(
    run: Path, tasks: Iterable[ResolvedTask], hashes: Mapping[str, Mapping[str, str]]
) -> list[Path]:
    """``examples/<task>.jsonl`` for every resolved task (``hashes[task][example_id]``)."""
    layout = RunLayout(run)
    return [
        atomic_write_jsonl(
            layout.examples(t.name),
            [example_row(ex, hashes[t.name][ex.id]) for ex in t.examples],
        )
        for t in tasks
    ]


def load_texts(run: Path, task: str) -> Texts | None:
    """The recorded examples of ``task`` keyed by id, or None when the run has none (or they
    cannot be read: the texts are a convenience of the viewer, never a reason to fail)."""
    try:
        path = RunLayout(run).examples(task)
    except CompatlmError:  # a task name from a foreign file that is not file-safe
        return None
    if not path.is_file():
        return None
    try:
        rows = [obj for _, obj in read_jsonl(path, allow_empty=True)]
    except CompatlmError as err:
        log.warning("flip viewer: prompts and choices not attached (%s)", err)
        return None
    return {str(r.get("example_id")): r for r in rows if isinstance(r, dict)}


def attach_texts(
    flips: list[dict[str, Any]], texts: Texts | None, hashes: Mapping[str, Any]
) -> int:
    """Add ``prompt`` and ``choices`` to each flip row (None where not recorded or where the
    example's hash ``hashes[example_id]`` differs from the recorded one); returns how many
    rows got their texts."""
    attached = 0
    for flip in flips:
        rec = (texts or {}).get(str(flip.get("example_id")))
        same = rec is not None and rec.get("example_hash") == hashes.get(flip.get("example_id"))
        flip["prompt"] = rec.get("prompt") if same else None
        choices = rec.get("choices") if same else None
        flip["choices"] = choices if isinstance(choices, list) else None
        attached += same
    return attached
