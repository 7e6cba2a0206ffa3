"""Reading lm-evaluation-harness ``--log_samples`` files as prediction sets.

lm-eval 0.4.x writes ``samples_<task>_<timestamp>.jsonl`` with one line per (document, filter):
``doc_id``, ``doc``, ``target``, ``arguments``, ``resps``, ``filtered_resps``, ``filter``,
``metrics`` (the metric names), ``doc_hash``, ``prompt_hash``, ``target_hash`` and one key per
metric holding the per-sample value (``"acc": 1.0``, ``"exact_match": 0.0``). We map:

* ``doc_id`` -> ``example_id`` (the join key), ``doc_hash`` -> ``example_hash``,
  ``prompt_hash`` -> ``prompt_hash`` (hash scheme "lm-eval": comparable only with lm-eval files).
  ``doc_id`` is the document's *position* in lm-eval's dataset, which a compatlm prediction file
  (ids from the task rows, e.g. ``"doc7"``) does not share: a join key ``doc.<field>`` takes
  ``example_id`` from a field of the logged ``doc`` instead (``doc.id``; nested: ``doc.meta.id``).
  Its value must be a string or an integer on every line and unique per filter;
* the chosen metric's value -> ``score`` and ``correct = score >= 0.5`` (binary metrics are 0/1);
* log-likelihood requests (``filtered_resps`` = ``[[loglik, is_greedy], ...]``) ->
  ``kind = multiple_choice`` with ``parsed`` = the decision argmax (length-normalised for
  ``acc_norm``), its ``margin`` and the target choice's softmax probability. Real 0.4.13 files
  hold these pairs as *strings* (``[["-136.08", "False"], ...]``, lm-eval's ``sanitize_list``)
  and the target as a string (``"0"``); both spellings are read, numbers strictly (a finite
  decimal, nothing else) and booleans as ``True``/``False``. A digit-string target of a
  multiple-choice line is a choice index, as in lm-eval's own ``doc_to_target``;
* anything else -> ``kind = generation`` with ``output`` = the raw response and ``parsed`` = the
  filtered answer.

Each filter becomes its own :class:`~compatlm.eval.records.PredictionSet`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from compatlm.config import JOIN_KEY_PATTERN
from compatlm.errors import CompatlmError, input_error
from compatlm.eval.prediction import Prediction, describe, validation_message
from compatlm.eval.prediction_set import PredictionSet
from compatlm.io import is_finite_number, read_jsonl

# lm-eval's own bookkeeping keys: everything else that holds a number is a metric value.
_BOOKKEEPING = {
    "doc_id",
    "doc",
    "target",
    "arguments",
    "resps",
    "filtered_resps",
    "filter",
    "metrics",
    "doc_hash",
    "prompt_hash",
    "target_hash",
}
_PREFERRED_METRICS = ("acc", "exact_match")
_FILENAME = re.compile(r"^samples_(?P<task>.+?)_(?P<date>\d{4}-\d{2}-\d{2}T[0-9\-.:]+)$")


def task_from_filename(path: Path) -> str:
    """``samples_hellaswag_2024-05-01T12-00-00.123.jsonl`` -> ``hellaswag``."""
    stem = path.name.removesuffix(".jsonl")
    match = _FILENAME.match(stem)
    if match:
        return match.group("task")
    return stem.removeprefix("samples_")


def _metric_names(obj: dict[str, Any]) -> list[str]:
    names = obj.get("metrics")
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return [k for k, v in obj.items() if k not in _BOOKKEEPING and is_finite_number(v)]


def _choose_metric(obj: dict[str, Any], path: Path, lineno: int) -> str:
    names = _metric_names(obj)
    for name in _PREFERRED_METRICS:
        if name in names:
            return name
    if not names:
        raise input_error("no per-sample metric value found (e.g. 'acc': 1.0)", path, lineno)
    return names[0]


def _continuations(arguments: Any) -> list[str] | None:
    """Continuation strings of log-likelihood requests, in choice order, if recoverable.

    Older 0.4 releases log ``[[context, continuation], ...]``; newer ones
    ``{"gen_args_0": {"arg_0": context, "arg_1": continuation}, ...}``.
    """
    if isinstance(arguments, list):
        conts = [a[1] if isinstance(a, list) and len(a) >= 2 else None for a in arguments]
    elif isinstance(arguments, dict):
        items = sorted(arguments.items(), key=lambda kv: int(re.sub(r"\D", "", kv[0]) or 0))
        conts = [v.get("arg_1") if isinstance(v, dict) else None for _, v in items]
    else:
        return None
    return conts if all(isinstance(c, str) for c in conts) else None


# A decimal number as Python's repr/str writes floats (lm-eval stringifies them): no "nan",
# "inf", hex, underscores or surrounding spaces, which float() would otherwise accept.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII only
_BOOL_TEXT = {"True": True, "False": False}


def _as_bool(value: Any) -> bool | None:
    """``True``/``False`` as a JSON boolean or as the string lm-eval writes; else None."""
    if isinstance(value, bool):
        return value
    return _BOOL_TEXT.get(value) if isinstance(value, str) else None


def _as_float(value: Any) -> float | None:
    """A finite number, given as a JSON number or a strict decimal string; else None."""
    if is_finite_number(value):
        return float(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _choice_index(target: Any) -> Any:
    """lm-eval logs a multiple-choice gold index as a string (``"0"``): make it the index."""
    if isinstance(target, str) and re.fullmatch(r"[0-9]{1,9}", target):
        return int(target)
    return target


def _loglikelihoods(resps: Any, path: Path, lineno: int) -> list[float] | None:
    """Per-choice log-likelihoods if ``resps`` holds log-likelihood answers, else None.

    The shape decides (every entry a ``[loglik, is_greedy]`` pair with a boolean second item):
    a pair whose log-likelihood is not a finite number is then an error, not a generation.
    """
    if not (isinstance(resps, list) and resps):
        return None
    if not all(isinstance(r, list) and len(r) == 2 and _as_bool(r[1]) is not None for r in resps):
        return None
    lls = []
    for k, (ll, _) in enumerate(resps):
        number = _as_float(ll)
        if number is None:
            raise input_error(
                f"expected a finite log-likelihood in choice {k}, found {describe(ll)}",
                path,
                lineno,
                "filtered_resps",
            )
        lls.append(number)
    return lls  # [n_choices]


def _first_text(value: Any) -> str | None:
    while isinstance(value, list) and value:
        value = value[0]
    if value is None or isinstance(value, list):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _mc_fields(obj: dict[str, Any], metric: str, target: Any, lls: list[float]) -> dict[str, Any]:
    conts = _continuations(obj.get("arguments"))
    lengths = [len(c) for c in conts] if conts and len(conts) == len(lls) else None
    # acc_norm decides on log-likelihood per character of the continuation (lm-eval's rule).
    if metric == "acc_norm" and lengths and all(n > 0 for n in lengths):
        decision = [ll / n for ll, n in zip(lls, lengths, strict=True)]
    else:
        decision = lls
    parsed = max(range(len(decision)), key=decision.__getitem__)
    others = [d for i, d in enumerate(decision) if i != parsed]
    margin = decision[parsed] - max(others) if others else None
    score = None
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(decision):
        top = max(decision)
        exps = [math.exp(d - top) for d in decision]
        score = min(1.0, max(0.0, exps[target] / sum(exps)))
    return {
        "kind": "multiple_choice",
        "parsed": parsed,
        "output": conts[parsed] if lengths else None,
        "margin": margin,
        "score_from_choices": score,
        "loglikelihoods": lls,
        "choice_lengths": lengths,
    }


def _join_value(obj: dict[str, Any], join_key: str, path: Path, lineno: int) -> str:
    """The line's ``example_id``: ``doc_id``, or the ``doc`` field ``join_key`` names."""
    if join_key == "doc_id":
        doc_id = obj.get("doc_id")
        if doc_id is None or isinstance(doc_id, (bool, float, list, dict)):
            raise input_error(
                f"expected an integer or string doc_id, found {describe(doc_id)}",
                path,
                lineno,
                "doc_id",
            )
        return str(doc_id)
    value: Any = obj
    for part in join_key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise input_error(
                f"join key {join_key!r} not found on this line (--join-key names a field of"
                " the logged doc)",
                path,
                lineno,
                join_key,
            )
        value = value[part]
    # A float or bool would print differently from the id a compatlm file holds: refuse it.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise input_error(
            f"expected a string or integer join key, found {describe(value)}",
            path,
            lineno,
            join_key,
        )
    return str(value)


def load_lmeval_samples(
    path: str | Path,
    *,
    metric: str | None = None,
    role: str | None = None,
    join_key: str | None = None,
) -> dict[str, PredictionSet]:
    """All filters of an lm-eval samples file, each as a validated :class:`PredictionSet`.

    ``join_key`` (default ``doc_id``) says where ``example_id`` comes from: ``doc.<field>``
    joins with a compatlm prediction file whose ids are that field of the task rows.
    """
    path = Path(path)
    join_key = join_key or "doc_id"
    if not re.fullmatch(JOIN_KEY_PATTERN, join_key):
        raise CompatlmError(
            f"join key: expected doc_id or doc.<field> (e.g. doc.id), found {join_key!r}"
        )
    task = task_from_filename(path)
    sets: dict[str, PredictionSet] = {}
    chosen = metric
    note = None
    kinds: dict[str, tuple[str, int]] = {}
    for lineno, obj in read_jsonl(path):
        if "example_id" in obj:
            raise input_error(
                "mixes compatlm lines and lm-eval sample lines", path, lineno, "example_id"
            )
        example_id = _join_value(obj, join_key, path, lineno)
        filt = obj.get("filter", "none")
        if not isinstance(filt, str):
            raise input_error(f"expected a string, found {describe(filt)}", path, lineno, "filter")
        if chosen is None:
            chosen = _choose_metric(obj, path, lineno)
            if len(_metric_names(obj)) > 1:
                note = (
                    f"{path.name}: correct = per-sample {chosen!r} (metrics in file: "
                    f"{', '.join(_metric_names(obj))}; choose with --metric)"
                )
        if chosen not in obj:
            # Name only metrics that carry a value: the `metrics` list may name the missing one.
            present = [n for n in _metric_names(obj) if n in obj]
            raise input_error(
                f"no per-sample value for metric {chosen!r} on this line; metrics with a value"
                f" here: {', '.join(present) or '(none)'}",
                path,
                lineno,
                chosen,
            )
        value = obj[chosen]
        if isinstance(value, bool):
            value = float(value)
        if not is_finite_number(value) or not 0.0 <= value <= 1.0:
            raise input_error(
                f"expected a per-sample value in [0, 1], found {describe(value)}"
                " (compatlm needs per-instance scores in [0, 1]; pick another --metric)",
                path,
                lineno,
                chosen,
            )
        target = obj.get("target")
        if isinstance(target, bool) or not isinstance(target, (int, str, type(None))):
            # Lists of references and other shapes become their JSON text: still comparable.
            target = json.dumps(target, ensure_ascii=False)
        lls = _loglikelihoods(obj.get("filtered_resps"), path, lineno)
        if lls is not None:
            target = _choice_index(target)
            extra = _mc_fields(obj, chosen, target, lls)
        else:
            extra = {
                "kind": "generation",
                "parsed": _first_text(obj.get("filtered_resps")),
                "output": _first_text(obj.get("resps")),
            }
        first_kind = kinds.setdefault(filt, (extra["kind"], lineno))
        if first_kind[0] != extra["kind"]:
            raise input_error(
                f"mixed request kinds in one filter: expected {first_kind[0]} (as on line "
                f"{first_kind[1]}), found {extra['kind']}",
                path,
                lineno,
                "filtered_resps",
            )
        # Multiple choice: our schema's score is the target choice's probability; generation:
        # the metric value is the per-instance similarity (0/1 for exact match).
        score = extra.pop("score_from_choices") if extra["kind"] == "multiple_choice" else value
        fields = {
            "task": task,
            "role": role,
            "example_id": example_id,
            "example_hash": obj.get("doc_hash") if isinstance(obj.get("doc_hash"), str) else None,
            "prompt_hash": obj.get("prompt_hash")
            if isinstance(obj.get("prompt_hash"), str)
            else None,
            "target": target,
            # 0/1 metrics give exactly their value; graded metrics pass at the default 0.5.
            "correct": value >= 0.5,
            "score": None if score is None else float(score),
            "metric": chosen,
            **extra,
        }
        try:
            pred = Prediction.model_validate(fields)
        except ValidationError as err:
            name, message = validation_message(err)
            raise input_error(message, path, lineno, name) from None
        ps = sets.get(filt)
        if ps is None:
            ps = sets[filt] = PredictionSet(
                path=path,
                rows={},
                lines={},
                source="lm-eval",
                task=task,
                kind=extra["kind"],
                role=role,
                metric=chosen,
                filter=filt,
                hash_scheme="lm-eval",
            )
        if pred.example_id in ps.rows:
            shown = obj["doc_id"] if join_key == "doc_id" else example_id
            raise input_error(
                f"duplicate {join_key} {shown!r} for filter {filt!r} (first on line "
                f"{ps.lines[pred.example_id]})",
                path,
                lineno,
                join_key,
            )
        ps.rows[pred.example_id] = pred
        ps.lines[pred.example_id] = lineno
    for ps in sets.values():
        ps.notes = [note] if note else []
    return sets


def pick_filter(sets: dict[str, PredictionSet], name: str | None, path: Path) -> PredictionSet:
    """The set for ``name``; by default the only filter, else the one called ``none``."""
    if name is not None:
        if name not in sets:
            raise CompatlmError(
                f"{path}: filter {name!r} not in file; filters: {', '.join(sorted(sets))}"
            )
        return sets[name]
    if len(sets) == 1:
        return next(iter(sets.values()))
    if "none" in sets:
        return sets["none"]
    raise CompatlmError(
        f"{path}: several lm-eval filters ({', '.join(sorted(sets))}); choose one with --filter"
    )
