"""Task vocabulary: example types, task specs, the name → spec registry, resolved tasks.

Two kinds of task exist, as in the MUSCLE paper's evaluation (arXiv 2407.09435, Sec. 4):
``multiple_choice`` (HellaSwag, PIQA: the answer is the choice with the highest log-likelihood)
and ``generation`` (GSM8K: exact match after answer extraction; SAMSum: ROUGE-1 similarity).
A :class:`TaskSpec` holds a task's defaults; a :class:`ResolvedTask` is a spec merged with one
``TaskConfig`` from the user and carries the loaded examples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from compatlm.errors import CompatlmError

Kind = Literal["multiple_choice", "generation"]
KINDS: tuple[Kind, ...] = ("multiple_choice", "generation")
MC_METRICS = ("acc", "acc_norm")


@dataclass(frozen=True)
class MCExample:
    """A multiple-choice example: the answer is ``choices[label]``, scored after ``context``."""

    id: str
    context: str
    choices: tuple[str, ...]
    label: int
    slice: str | None = None
    group: str | None = None  # instances sharing a source (a fact, a document) are correlated
    kind: ClassVar[Kind] = "multiple_choice"

    def hash_fields(self) -> dict[str, Any]:
        """Inputs and target: what ``example_hash`` covers (never the id or a model)."""
        return {"context": self.context, "choices": list(self.choices), "label": self.label}


@dataclass(frozen=True)
class GenExample:
    """A generation example: the model continues ``prompt``; ``reference`` is the gold text."""

    id: str
    prompt: str
    reference: str
    slice: str | None = None
    group: str | None = None
    kind: ClassVar[Kind] = "generation"

    def hash_fields(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "reference": self.reference}


Example = MCExample | GenExample
# (local source or None for the hub, split) -> examples
Loader = Callable[[str | None, str], list[Example]]


@dataclass(frozen=True)
class TaskSpec:
    """Defaults of a named task. ``loader is None`` means the task only exists as a local file
    (its ``path`` must be given), e.g. the demo tasks."""

    name: str
    kind: Kind
    metric: str
    loader: Loader | None = None
    default_split: str = "test"
    extract: str = "none"
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 128
    pass_threshold: float = 0.5
    description: str = ""


@dataclass(frozen=True)
class ResolvedTask:
    """A task ready to run: examples plus every setting decided (user value or default)."""

    name: str
    kind: Kind
    examples: tuple[Example, ...]
    metric: str
    source: str
    split: str
    extract: str = "none"
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 128
    no_repeat_ngram_size: int = 0
    pass_threshold: float = 0.5
    chat_template: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The settings that decide predictions, for run records."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "split": self.split,
            "metric": self.metric,
            "n_examples": len(self.examples),
        }
        if self.kind == "generation":
            out |= {
                "extract": self.extract,
                "stop": list(self.stop),
                "max_new_tokens": self.max_new_tokens,
                "no_repeat_ngram_size": self.no_repeat_ngram_size,
                "pass_threshold": self.pass_threshold,
                "chat_template": self.chat_template,
            }
        return out


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"task {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def get_task_spec(name: str) -> TaskSpec | None:
    """The registered spec for ``name``, or None (a local-file task with any name)."""
    return _REGISTRY.get(name)


def require_task_spec(name: str) -> TaskSpec:
    spec = get_task_spec(name)
    if spec is None:
        raise CompatlmError(
            f"task {name!r}: not a registered task (known: {', '.join(task_names())});"
            " give `path` (and `kind`) to evaluate a local JSONL file under any name"
        )
    return spec
