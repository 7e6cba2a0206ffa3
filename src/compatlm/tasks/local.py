"""Local task files in compatlm's own JSONL format, validated strictly.

Multiple choice, one object per line::

    {"id": "q1", "context": "The sky is", "choices": ["blue", "green"], "label": 0, "slice": "easy"}

Generation::

    {"id": "g1", "prompt": "Question: 2+2?\\nAnswer:", "reference": "4"}

``slice`` is optional (a string used to break metrics down). ``group`` is optional (a string or
integer naming the source instances share — a fact, a document — so statistics treat them as
correlated); if one line has a group, every line must. ``id`` and ``group`` may be strings or
integers (stored as strings). Every problem — a missing or unknown field, a wrong type, an
empty or single choice list, an empty choice, a label out of range, a duplicate id — is a one-line
:class:`~compatlm.errors.CompatlmError` naming the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compatlm.errors import CompatlmError, input_error
from compatlm.io import read_jsonl
from compatlm.tasks.base import Example, GenExample, Kind, MCExample

MC_FIELDS = {
    "id": True,
    "context": True,
    "choices": True,
    "label": True,
    "slice": False,
    "group": False,
}
GEN_FIELDS = {"id": True, "prompt": True, "reference": True, "slice": False, "group": False}


def infer_kind(obj: dict[str, Any], path: Path, line: int) -> Kind:
    """``choices`` → multiple choice, ``prompt`` → generation (when ``kind`` is not given)."""
    if "choices" in obj:
        return "multiple_choice"
    if "prompt" in obj:
        return "generation"
    raise input_error(
        "cannot tell the task kind: expected a 'choices' field (multiple_choice) or a 'prompt'"
        " field (generation); or set the task's `kind`",
        path,
        line,
    )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_fields(obj: dict[str, Any], fields: dict[str, bool], kind: Kind, path: Path, line: int):
    for name, required in fields.items():
        if required and name not in obj:
            raise input_error(f"missing required field for {kind}", path, line, name)
    for name in obj:
        if name not in fields:
            raise input_error(
                f"unknown field for {kind}; valid fields: {', '.join(fields)}", path, line, name
            )


def _str_field(obj: dict[str, Any], name: str, path: Path, line: int) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise input_error(f"expected a string, found {_type_name(value)}", path, line, name)
    return value


def _id_field(obj: dict[str, Any], path: Path, line: int, name: str = "id") -> str:
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise input_error(
            f"expected a string or integer, found {_type_name(value)}", path, line, name
        )
    text = str(value)
    if not text.strip():
        raise input_error("must not be empty", path, line, name)
    return text


def _group_field(obj: dict[str, Any], path: Path, line: int) -> str | None:
    return None if obj.get("group") is None else _id_field(obj, path, line, "group")


def _slice_field(obj: dict[str, Any], path: Path, line: int) -> str | None:
    value = obj.get("slice")
    if value is not None and not isinstance(value, str):
        raise input_error(
            f"expected a string or null, found {_type_name(value)}", path, line, "slice"
        )
    return value


def parse_mc(obj: dict[str, Any], path: Path, line: int) -> MCExample:
    _check_fields(obj, MC_FIELDS, "multiple_choice", path, line)
    choices = obj["choices"]
    if not isinstance(choices, list):
        raise input_error(
            f"expected a list of strings, found {_type_name(choices)}", path, line, "choices"
        )
    if len(choices) < 2:
        raise input_error(
            f"expected at least 2 choices, found {len(choices)}", path, line, "choices"
        )
    for i, choice in enumerate(choices):
        if not isinstance(choice, str):
            raise input_error(
                f"expected a string, found {_type_name(choice)}", path, line, f"choices[{i}]"
            )
        if not choice.strip():
            # Scored as the delimiter alone: one short continuation that wins under acc.
            raise input_error(
                f"choice at index {i} is empty; every choice needs text (an empty one is scored"
                " as the bare delimiter and wins under acc)",
                path,
                line,
                f"choices[{i}]",
            )
    label = obj["label"]
    if isinstance(label, bool) or not isinstance(label, int):
        raise input_error(
            f"expected an integer choice index, found {_type_name(label)} {label!r}",
            path,
            line,
            "label",
        )
    if not 0 <= label < len(choices):
        raise input_error(
            f"out of range: {label} is not an index of the {len(choices)} choices"
            f" (expected 0..{len(choices) - 1})",
            path,
            line,
            "label",
        )
    return MCExample(
        id=_id_field(obj, path, line),
        context=_str_field(obj, "context", path, line),
        choices=tuple(choices),
        label=label,
        slice=_slice_field(obj, path, line),
        group=_group_field(obj, path, line),
    )


def parse_gen(obj: dict[str, Any], path: Path, line: int) -> GenExample:
    _check_fields(obj, GEN_FIELDS, "generation", path, line)
    return GenExample(
        id=_id_field(obj, path, line),
        prompt=_str_field(obj, "prompt", path, line),
        reference=_str_field(obj, "reference", path, line),
        slice=_slice_field(obj, path, line),
        group=_group_field(obj, path, line),
    )


def load_local_jsonl(path: str | Path, kind: Kind | None = None) -> tuple[Kind, list[Example]]:
    """Read and validate a compatlm task file; returns the kind (given or inferred) and examples."""
    path = Path(path)
    if path.is_dir():
        raise input_error("expected a .jsonl file, found a directory", path)
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(path):
        if kind is None:
            kind = infer_kind(obj, path, line)
        example = (
            parse_mc(obj, path, line) if kind == "multiple_choice" else parse_gen(obj, path, line)
        )
        if example.id in seen:
            raise input_error(
                f"duplicate id {example.id!r} (first seen on line {seen[example.id]})",
                path,
                line,
                "id",
            )
        seen[example.id] = line
        if examples and (example.group is None) != (examples[0].group is None):
            first = seen[examples[0].id]
            raise input_error(
                f"{'no group' if example.group is None else 'a group'} on this line but "
                f"{'one' if example.group is None else 'none'} on line {first}"
                " (give every line a group, or none)",
                path,
                line,
                "group",
            )
        examples.append(example)
    if kind is None:  # pragma: no cover - read_jsonl refuses empty files
        raise CompatlmError(f"{path}: no examples")
    return kind, examples
