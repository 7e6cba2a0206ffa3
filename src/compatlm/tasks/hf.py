"""Loaders for the MUSCLE paper's tasks (arXiv 2407.09435, Sec. 4): HellaSwag, PIQA, GSM8K,
SAMSum, with lm-evaluation-harness 0.4.13's prompt formats.

Each loader reads rows in the Hugging Face dataset's own schema from the hub
(``datasets.load_dataset(<hub id>, split=...)``) or from a local file or directory of
parquet/json/jsonl files in the same schema (offline use, tests, mirrors), then converts them:

* hellaswag (``Rowan/hellaswag``): context ``preprocess(activity_label + ": " + ctx_a + " " +
  ctx_b.capitalize())``, choices ``preprocess(ending)`` — lm-eval's ``process_docs`` verbatim,
  including WikiHow bracket removal; slice = source (activitynet / wikihow), group = the
  ``source_id`` (one video or article yields several correlated instances); default split
  ``validation`` (test labels are hidden);
* piqa (``baber/piqa``, the parquet copy lm-eval uses): ``"Question: {goal}\\nAnswer:"``,
  choices ``[sol1, sol2]``;
* gsm8k (``openai/gsm8k``, config ``main``): prompt ``"Question: {question}\\nAnswer:"``,
  reference = the text after ``####``;
* samsum (``knkarthick/samsum``: the original ``Samsung/samsum`` needs a loading script that
  current ``datasets`` refuses): prompt ``"Dialogue: {dialogue}\\nSummary:"``, reference = summary.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from compatlm.errors import CompatlmError, input_error
from compatlm.io import parse_json, read_jsonl
from compatlm.tasks.base import Example, GenExample, MCExample

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


# ---------------------------------------------------------------- reading rows


def _read_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [obj for _, obj in read_jsonl(path)]
    if path.suffix == ".json":
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise input_error(f"not valid UTF-8 (byte {err.start})", path) from None
        data = parse_json(text, path)
        if isinstance(data, dict) and "data" in data:  # {"data": [...]} layout
            data = data["data"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise input_error("expected a JSON list of objects (or JSON lines)", path)
        return data
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as err:  # pyarrow raises several exception types for bad files
            raise input_error(f"unreadable parquet file ({err})", path) from None
    raise input_error(f"unsupported file type; expected one of {', '.join(DATA_SUFFIXES)}", path)


def _split_files(directory: Path, split: str) -> list[Path]:
    """Data files of ``split`` in a directory (HF layouts: ``validation.jsonl``,
    ``data/validation-00000-of-00001.parquet``, ``validation/part.parquet``)."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
    pattern = re.compile(rf"(^|[/_-]){re.escape(split)}([/_.-]|$)")
    chosen = [p for p in files if pattern.search(p.relative_to(directory).as_posix())]
    if chosen:
        return chosen
    if len(files) == 1:
        return files
    found = ", ".join(p.relative_to(directory).as_posix() for p in files[:6]) or "none"
    raise CompatlmError(
        f"{directory}: no data file for split {split!r} (data files found: {found});"
        " name files after the split, e.g. validation.jsonl"
    )


def read_rows(
    source: str | None, hub_id: str, config_name: str | None, split: str, task: str
) -> tuple[str, list[dict[str, Any]]]:
    """(description of where rows came from, rows) from a local path or the hub."""
    if source is not None:
        path = Path(source).expanduser()
        if not path.exists():
            raise CompatlmError(f"task {task}: path {source}: does not exist")
        files = _split_files(path, split) if path.is_dir() else [path]
        rows: list[dict[str, Any]] = []
        for f in files:
            rows.extend(_read_file(f))
        return str(path), rows
    try:
        import datasets

        ds = datasets.load_dataset(hub_id, config_name, split=split)
    except Exception as err:  # network, missing split, auth: all become one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CompatlmError(
            f"task {task}: cannot load {hub_id} split {split!r} from the hub ({first});"
            " set the task's `path` to a local copy"
        ) from None
    return f"hf:{hub_id}", [dict(r) for r in ds]


def _field(row: dict[str, Any], name: str, where: str, kind: type | tuple = str) -> Any:
    if name not in row:
        raise CompatlmError(f"{where}: field {name!r}: missing")
    value = row[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        raise CompatlmError(
            f"{where}: field {name!r}: expected {' or '.join(k.__name__ for k in kinds)},"
            f" found {type(value).__name__}"
        )
    return value


# ---------------------------------------------------------------- converters


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag cleaning: WikiHow ``[title]`` markers and bracketed artefacts."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag_example(row: dict[str, Any], index: int, where: str) -> MCExample:
    ctx = _field(row, "ctx_a", where) + " " + _field(row, "ctx_b", where).capitalize()
    endings = _field(row, "endings", where, (list, tuple))
    label = row.get("label")
    try:
        label_i = int(label)  # the hub stores "0".."3" as strings
    except (TypeError, ValueError):
        raise CompatlmError(
            f"{where}: field 'label': expected an integer (or its string), found {label!r};"
            " the test split has no labels — use split validation"
        ) from None
    if not 0 <= label_i < len(endings):
        raise CompatlmError(f"{where}: field 'label': {label_i} out of range 0..{len(endings) - 1}")
    source_id = str(row.get("source_id") or "")
    return MCExample(
        id=str(row.get("ind", index)),
        context=hellaswag_preprocess(_field(row, "activity_label", where) + ": " + ctx),
        choices=tuple(hellaswag_preprocess(str(e)) for e in endings),
        label=label_i,
        slice=source_id.split("~")[0] or None,
        group=source_id or None,
    )


def piqa_example(row: dict[str, Any], index: int, where: str) -> MCExample:
    label = _field(row, "label", where, int)
    if label not in (0, 1):
        raise CompatlmError(f"{where}: field 'label': expected 0 or 1, found {label}")
    return MCExample(
        id=str(row.get("id", index)),
        context=f"Question: {_field(row, 'goal', where)}\nAnswer:",
        choices=(_field(row, "sol1", where), _field(row, "sol2", where)),
        label=label,
    )


def gsm8k_reference(answer: str) -> str:
    """The final answer of a GSM8K solution: the text after ``####``."""
    return answer.split("####")[-1].strip()


def gsm8k_example(row: dict[str, Any], index: int, where: str) -> GenExample:
    answer = _field(row, "answer", where)
    if "####" not in answer:
        raise CompatlmError(f"{where}: field 'answer': no '####' final answer")
    return GenExample(
        id=str(row.get("id", index)),
        prompt=f"Question: {_field(row, 'question', where)}\nAnswer:",
        reference=gsm8k_reference(answer),
    )


def samsum_example(row: dict[str, Any], index: int, where: str) -> GenExample:
    return GenExample(
        id=str(row.get("id", index)),
        prompt=f"Dialogue: {_field(row, 'dialogue', where)}\nSummary:",
        reference=_field(row, "summary", where),
    )


Converter = Callable[[dict[str, Any], int, str], Example]


def make_loader(
    task: str, hub_id: str, config_name: str | None, convert: Converter
) -> Callable[[str | None, str], list[Example]]:
    """A loader ``(local path or None, split) -> examples`` for one hub dataset schema."""

    def load(source: str | None, split: str) -> list[Example]:
        origin, rows = read_rows(source, hub_id, config_name, split, task)
        examples = [convert(row, i, f"{origin}: row {i}") for i, row in enumerate(rows)]
        seen: set[str] = set()
        for i, ex in enumerate(examples):
            if ex.id in seen:
                raise CompatlmError(f"{origin}: row {i}: field 'id': duplicate id {ex.id!r}")
            seen.add(ex.id)
        # Statistics need a group on every instance or on none (a mirror missing a column for
        # some rows): fall back to ungrouped rather than clustering half the data.
        missing = sum(ex.group is None for ex in examples)
        if 0 < missing < len(examples):
            logging.getLogger(__name__).warning(
                "%s: %d of %d rows have no group; treating every row as its own group",
                origin, missing, len(examples),
            )  # fmt: skip
            examples = [replace(ex, group=None) for ex in examples]
        return examples

    return load


load_hellaswag = make_loader("hellaswag", "Rowan/hellaswag", None, hellaswag_example)
load_piqa = make_loader("piqa", "baber/piqa", None, piqa_example)
load_gsm8k = make_loader("gsm8k", "openai/gsm8k", "main", gsm8k_example)
load_samsum = make_loader("samsum", "knkarthick/samsum", None, samsum_example)
