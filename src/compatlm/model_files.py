"""Strict reading of the two small files that describe a model: ``config.json`` of a base and
``adapter_config.json`` of a PEFT adapter.

Libraries read these lazily and fail deep inside (a ``KeyError: 'peft_type'``, ``'int' object is
not iterable`` from PEFT's module matching) — in an evaluation that is after the old model has
been scored for minutes. Reading them here first turns every such mistake into one line naming
the file and the field, before any weights are loaded or any output is written.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from compatlm.errors import CompatlmError, input_error

# The only adapter type compatlm applies, merges and trains (check_adapter_fits reads LoRA
# factors; methods/ combine them).
SUPPORTED_PEFT_TYPES = ("LORA",)


def _describe(value: Any) -> str:
    kind = "null" if value is None else type(value).__name__
    kind = {"dict": "object", "str": "string", "bool": "boolean"}.get(kind, kind)
    text = repr(value)
    return f"{text[:57] + '...' if len(text) > 60 else text} ({kind})"


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; malformed JSON or another JSON type is a one-line error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise input_error(f"not valid UTF-8 (byte {err.start})", path) from None
    except ValueError as err:
        raise input_error(f"malformed JSON ({err})", path) from None
    except OSError as err:
        raise input_error(f"cannot read ({err.strerror or err})", path) from None
    if not isinstance(data, dict):
        raise input_error(f"expected a JSON object, found {_describe(data)}", path)
    return data


def _known_model_types() -> set[str]:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return set(CONFIG_MAPPING_NAMES)


def check_base_config(path: Path, *, trust_remote_code: bool = False) -> dict[str, Any]:
    """Validate a base model's ``config.json``: a JSON object whose ``model_type`` transformers
    knows (or, with ``trust_remote_code``, one that names its own code in ``auto_map``)."""
    import transformers

    cfg = read_json_object(path)
    if "model_type" not in cfg:
        raise input_error(
            "missing; transformers needs it to choose the architecture (e.g. 'llama')",
            path,
            field="model_type",
        )
    model_type = cfg["model_type"]
    if not isinstance(model_type, str) or not model_type:
        raise input_error(
            f"expected a non-empty string, found {_describe(model_type)}", path, field="model_type"
        )
    known = _known_model_types()
    if model_type in known:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and "auto_map" not in cfg:
            raise input_error(
                f"{model_type!r} has no causal language model class in transformers"
                f" {transformers.__version__}; compatlm scores decoder-only language models",
                path,
                field="model_type",
            )
        return cfg
    if "auto_map" in cfg:
        if trust_remote_code:
            return cfg  # the repository ships its own classes for this type
        raise input_error(
            f"{model_type!r} is not a transformers {transformers.__version__} architecture and"
            " the config points to custom code (auto_map), which runs only with"
            " runtime.trust_remote_code=true",
            path,
            field="model_type",
        )
    close = difflib.get_close_matches(model_type, sorted(known), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise input_error(
        f"{model_type!r} is not a model type transformers {transformers.__version__} knows{hint}",
        path,
        field="model_type",
    )


def _known_peft_types() -> list[str]:
    from peft import PeftType

    return [t.value for t in PeftType]


def _check_target_modules(cfg: dict[str, Any], path: Path) -> None:
    targets = cfg.get("target_modules")
    if targets is None or isinstance(targets, str):
        return  # null: PEFT's default modules for the architecture; a string is a regex
    if not isinstance(targets, list):
        raise input_error(
            f"expected a list of module names or a regex string, found {_describe(targets)}",
            path,
            field="target_modules",
        )
    for i, name in enumerate(targets):
        if not isinstance(name, str) or not name:
            raise input_error(
                f"expected a non-empty module name, found {_describe(name)}",
                path,
                field=f"target_modules[{i}]",
            )
    if not targets and not cfg.get("target_parameters"):
        raise input_error("empty list: the adapter adapts no module", path, field="target_modules")


def _check_lora_numbers(cfg: dict[str, Any], path: Path) -> None:
    r = cfg.get("r", 8)  # PEFT's default when absent
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise input_error(
            f"expected a positive integer rank, found {_describe(r)}", path, field="r"
        )
    alpha = cfg.get("lora_alpha", 8)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise input_error(f"expected a number, found {_describe(alpha)}", path, field="lora_alpha")
    recorded = cfg.get("base_model_name_or_path")
    if recorded is not None and not isinstance(recorded, str):
        raise input_error(
            f"expected a string or null, found {_describe(recorded)}",
            path,
            field="base_model_name_or_path",
        )


def check_adapter_config(path: Path) -> dict[str, Any]:
    """Validate a PEFT ``adapter_config.json``: a JSON object, ``peft_type`` a PEFT type that
    compatlm applies (LoRA), ``target_modules`` a list of names or a regex string, ``r`` a
    positive integer; finally PEFT itself must accept it as a config."""
    cfg = read_json_object(path)
    if "peft_type" not in cfg:
        raise input_error(
            "missing; expected the adapter type, e.g. 'LORA' (not a PEFT adapter config?)",
            path,
            field="peft_type",
        )
    peft_type = cfg["peft_type"]
    known = _known_peft_types()
    if not isinstance(peft_type, str) or peft_type not in known:
        close = difflib.get_close_matches(str(peft_type).upper(), known, n=2)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise input_error(
            f"{_describe(peft_type)} is not a PEFT adapter type{hint}", path, field="peft_type"
        )
    if peft_type not in SUPPORTED_PEFT_TYPES:
        raise input_error(
            f"{peft_type!r} adapters are not supported; compatlm applies LoRA adapters"
            " (peft_type 'LORA')",
            path,
            field="peft_type",
        )
    _check_target_modules(cfg, path)
    _check_lora_numbers(cfg, path)
    _check_with_peft(cfg, path)
    return cfg


def _check_with_peft(cfg: dict[str, Any], path: Path) -> None:
    """PEFT's own config validation (option combinations it refuses), without any weights."""
    from peft import PeftConfig

    try:
        # What PeftConfig.from_pretrained does after reading the file (no hub, no model code).
        PeftConfig.from_peft_type(**PeftConfig.check_kwargs(**cfg))
    except (TypeError, ValueError, KeyError) as err:
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        raise CompatlmError(f"{path}: PEFT refuses this adapter config ({first})") from None
