"""PEFT adapter directories: their config, their tensor shapes, and whether they fit a base.

Before PEFT touches an adapter we check it fits the base (module names and shapes) on a
weightless copy of the base, so a wrong adapter is a one-line error instead of a stack trace
from deep inside a library — and, in :func:`compatlm.models.preflight`, before anything runs.

Also owns the tied-output-head rule: a LoRA on an ``lm_head`` whose weight is tied to the input
embeddings cannot be merged (``merge_and_unload`` adds the delta to the shared matrix, so the
input embeddings change too) and lm-eval's peft loading mishandles it. Training refuses it
(:func:`compatlm.models.check_lora_head`); evaluating such an adapter only warns.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from compatlm.errors import CompatlmError
from compatlm.model_files import check_adapter_config
from compatlm.spec import ModelSpec

log = logging.getLogger(__name__)

TIED_HEAD_FIX = "set tie_word_embeddings=False or drop lm_head from target_modules"
_warned_tied: set[tuple[str, str]] = set()  # (adapter, base class): warn once per process


def adapter_config(adapter: str | Path) -> dict[str, Any]:
    """The validated ``adapter_config.json`` of a local adapter directory."""
    path = Path(adapter).expanduser()
    if not path.exists():
        raise CompatlmError(
            f"adapter {adapter}: path does not exist (adapters are read from local directories;"
            " download a hub adapter first)"
        )
    if not path.is_dir():
        raise CompatlmError(f"adapter {adapter}: expected a PEFT adapter directory, found a file")
    cfg_file = path / "adapter_config.json"
    if not cfg_file.is_file():
        raise CompatlmError(
            f"adapter {adapter}: no adapter_config.json (not a PEFT adapter directory)"
        )
    return check_adapter_config(cfg_file)


def adapter_tensors(adapter: Path, allow_pickle: bool) -> dict[str, tuple[int, ...]]:
    """Shapes of the adapter's saved tensors, read without loading them all."""
    st = adapter / "adapter_model.safetensors"
    if st.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(st), framework="pt") as fh:
                return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
        except Exception as err:  # safetensors raises several private error types
            raise CompatlmError(f"{st}: unreadable safetensors file ({err})") from None
    if (adapter / "adapter_model.bin").is_file():
        if not allow_pickle:
            raise CompatlmError(
                f"adapter {adapter}: only adapter_model.bin (pickle) found; refused —"
                " pass runtime.allow_pickle=true if you trust it"
            )
        sd = torch.load(adapter / "adapter_model.bin", map_location="cpu", weights_only=True)
        return {k: tuple(v.shape) for k, v in sd.items()}
    raise CompatlmError(f"adapter {adapter}: no adapter_model.safetensors")


def tied_head_name(base_model: Any) -> str | None:
    """Module name of the output head when its weight is the input embedding matrix, else None."""
    get_out = getattr(base_model, "get_output_embeddings", None)
    get_in = getattr(base_model, "get_input_embeddings", None)
    head = get_out() if callable(get_out) else None
    emb = get_in() if callable(get_in) else None
    if head is None or emb is None or getattr(head, "weight", None) is None:
        return None
    tied = head.weight is emb.weight
    if not tied:
        # A skeleton whose weights were not tied yet still says so in its config.
        config = getattr(base_model, "config", None)
        text = getattr(config, "get_text_config", None)
        tied = bool(getattr(text() if callable(text) else config, "tie_word_embeddings", False))
    if not tied:
        return None
    return next((n for n, m in base_model.named_modules() if m is head), None)


def targets_module(target_modules: Any, name: str) -> bool:
    """Whether a LoRA with ``target_modules`` (list of names, regex string, "all-linear") adapts
    module ``name``, decided by PEFT's own matching rule."""
    if not target_modules:
        return False
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    return bool(check_target_module_exists(LoraConfig(target_modules=target_modules), name))


def tied_head_target(base_model: Any, target_modules: Any, keys: Any = ()) -> str | None:
    """The tied output head's name if ``target_modules`` (or saved tensor ``keys``) adapt it."""
    head = tied_head_name(base_model)
    if head is None:
        return None
    if targets_module(target_modules, head) or any(f".{head}." in k for k in keys):
        return head
    return None


def check_adapter_fits(base_model: Any, adapter: str | Path, *, allow_pickle: bool = False) -> None:
    """Refuse an adapter whose modules the base lacks or whose shapes differ from the base's."""
    adapter = Path(adapter)
    cfg = adapter_config(adapter)
    shapes = adapter_tensors(adapter, allow_pickle)
    modules = dict(base_model.named_modules())
    arch = type(base_model).__name__
    n_lora = 0
    for key, shape in shapes.items():
        for part in (".lora_A.", ".lora_B.", ".lora_embedding_A", ".lora_embedding_B"):
            if part in key:
                break
        else:
            continue
        n_lora += 1
        name = key.removeprefix("base_model.model.").split(part)[0]
        mod = modules.get(name)
        if mod is None:
            raise CompatlmError(
                f"adapter {adapter}: targets module {name!r} which the base ({arch}) does not have;"
                " the adapter was made for another architecture"
            )
        weight = getattr(mod, "weight", None)
        if weight is None or weight.dim() != 2:
            continue
        if "lora_embedding" in part:
            in_f, out_f = weight.shape  # embeddings store (num_embeddings, dim)
            bad = shape[-1] != in_f if part.endswith("_A") else shape[0] != out_f
        else:
            out_f, in_f = weight.shape  # nn.Linear stores (out_features, in_features)
            bad = shape[-1] != in_f if part == ".lora_A." else shape[0] != out_f
        if bad:
            raise CompatlmError(
                f"adapter {adapter}: tensor {key} has shape {list(shape)} but base module {name!r}"
                f" has in={in_f}, out={out_f}; the adapter was made for a base of another size"
            )
    if n_lora == 0:
        raise CompatlmError(f"adapter {adapter}: contains no LoRA weights")
    recorded = cfg.get("base_model_name_or_path")
    if recorded:
        log.debug("adapter %s records base %s", adapter, recorded)
    head = tied_head_target(base_model, cfg.get("target_modules"), shapes)
    key = (os.path.realpath(adapter), arch)
    if head is not None and key not in _warned_tied:
        _warned_tied.add(key)
        log.warning(
            "adapter %s targets %s, which this base ties to the input embeddings: merged weights"
            " and lm-eval's peft loading will be wrong (when training: %s)",
            adapter,
            head,
            TIED_HEAD_FIX,
        )


def warn_if_other_base(spec: ModelSpec) -> str | None:
    """Porting an adapter across bases is legitimate (PortLLM), so this only warns."""
    if spec.adapter is None:
        return None
    recorded = adapter_config(spec.adapter).get("base_model_name_or_path")
    if not recorded:
        return None
    same = os.path.realpath(recorded) == os.path.realpath(spec.base) or recorded == spec.base
    if same:
        return None
    msg = (
        f"adapter {spec.adapter} was trained on base {recorded!r}, now applied to {spec.base!r}"
        " (fine if you are porting it on purpose)"
    )
    log.warning(msg)
    return msg
