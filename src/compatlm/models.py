"""Model loading and the guard rails around it.

``load_model(spec, trainable=...)`` turns a :class:`~compatlm.spec.ModelSpec` into fresh model
and tokenizer objects (never a caller's model mutated), with safe defaults: no remote code,
safetensors only unless pickle is explicitly allowed. Before PEFT touches an adapter we check it
fits the base (module names and shapes; see :mod:`compatlm.adapters`), so a wrong adapter is a
one-line error instead of a stack trace from deep inside a library.

:func:`preflight` runs every check that needs no weights — paths, ``config.json`` and
``adapter_config.json`` (:mod:`compatlm.model_files`), adapter fit on a meta-device skeleton,
whether each task's examples fit the context (tokenizer only) — so a bad input fails before any
output exists or an earlier model has run. A path-like spec that does not exist is an error, not
a hub lookup, and hub ids load from the local cache only while offline (:mod:`compatlm.hub`).
A GGUF base (a ``.gguf`` file, ``pkg:<name>``) is checked and converted into its cache entry by
:mod:`compatlm.gguf` first; from then on it is an ordinary local base.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from compatlm.adapters import (
    TIED_HEAD_FIX,
    adapter_config,
    adapter_tensors,
    check_adapter_fits,
    tied_head_target,
    warn_if_other_base,
)
from compatlm.config import DEVICES, RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.hub import hub_kwargs, looks_like_path, missing_path_message, not_cached_message
from compatlm.model_files import check_base_config
from compatlm.spec import ModelSpec
from compatlm.tasks.fit import check_tasks_fit
from compatlm.tokenizer_identity import first_tokenizer_difference as first_tokenizer_difference
from compatlm.tokenizer_identity import require_same_tokenizer as require_same_tokenizer
from compatlm.tokenizer_identity import tokenizer_fingerprint as tokenizer_fingerprint

log = logging.getLogger(__name__)

try:  # transformers >= 5 configs are strict dataclasses validated by huggingface_hub
    from huggingface_hub.errors import StrictDataclassError

    _CONFIG_VALUE_ERRORS: tuple[type[Exception], ...] = (StrictDataclassError,)
except ImportError:  # pragma: no cover - older huggingface_hub
    _CONFIG_VALUE_ERRORS = ()

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def available_devices() -> list[str]:
    """The devices this machine can run on, as ``runtime.device`` spells them."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def resolve_device(name: str = "auto") -> torch.device:
    """``runtime.device`` -> a device that exists here; anything else is a one-line error
    naming what is available (torch accepts names like ``meta`` or ``xla`` that cannot run a
    model here, or fails deep inside the first ``.to()``)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    here = available_devices()
    kind, _, index = name.partition(":")
    known = kind in ("cpu", "cuda", "mps") and (not index or (kind == "cuda" and index.isdigit()))
    if not known:
        raise CompatlmError(
            f"runtime.device: unknown device {name!r}; expected {DEVICES}"
            f" (available here: {', '.join(here)})"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise CompatlmError(
            f"runtime.device: {name!r} asked for but CUDA is not available"
            f" (available here: {', '.join(here)})"
        )
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise CompatlmError(
            f"runtime.device: {name!r} asked for but this machine has"
            f" {torch.cuda.device_count()} CUDA device(s) (available here: {', '.join(here)})"
        )
    if kind == "mps" and "mps" not in here:
        raise CompatlmError(
            f"runtime.device: 'mps' asked for but MPS is not available"
            f" (available here: {', '.join(here)})"
        )
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # bf16 where the hardware has it, fp32 elsewhere: fp16 overflows too easily for training.
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return _DTYPES[name]


@dataclass
class LoadedModel:
    model: Any  # PreTrainedModel or peft.PeftModel
    tokenizer: Any  # PreTrainedTokenizerBase
    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype


def _is_local(name: str) -> bool:
    return looks_like_path(name)


def _require_path(name: str, what: str) -> None:
    """A path-like name that does not exist is a typo, never a hub lookup (see compatlm.hub)."""
    if looks_like_path(name) and not Path(name).expanduser().exists():
        raise CompatlmError(f"{what} {name}: {missing_path_message(name)}")


def _hf_base(spec: ModelSpec) -> ModelSpec:
    """``spec``, or for a GGUF base (a ``.gguf`` file, ``pkg:<name>``) the spec of its checked,
    converted and cached Hugging Face directory (:mod:`compatlm.gguf`)."""
    from compatlm.gguf import is_gguf_base, resolve_spec

    return resolve_spec(spec) if is_gguf_base(spec.base) else spec


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _base_error(spec: ModelSpec, doing: str, err: Exception) -> CompatlmError:
    """One line for a failed ``from_pretrained`` of the base; an uncached hub id while offline
    says so instead of relaying transformers' connection advice."""
    offline = not_cached_message(spec.base)
    detail = offline if offline is not None else f"cannot {doing} ({_first_line(err)})"
    return CompatlmError(f"base model {spec.base}: {detail}")


def _check_local_weights(path: Path, allow_pickle: bool, what: str) -> None:
    if not path.exists():
        raise CompatlmError(f"{what} {path}: path does not exist")
    if not path.is_dir():
        raise CompatlmError(f"{what} {path}: expected a directory")
    has_safe = any(path.glob("*.safetensors"))
    has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt"))
    if not has_safe and has_pickle and not allow_pickle:
        raise CompatlmError(
            f"{what} {path}: only pickle-based weights (.bin/.pt) found; pickle can run code when"
            " loaded, so it is refused — convert to safetensors or pass runtime.allow_pickle=true"
        )


def load_tokenizer(spec: ModelSpec, runtime: RuntimeConfig | None = None) -> Any:
    """The tokenizer of the spec's base, with a pad token guaranteed (pad = eos if missing)."""
    from transformers import AutoTokenizer

    runtime = runtime or RuntimeConfig()
    _require_path(spec.base, "base model")
    source = _hf_base(spec)
    try:
        tok = AutoTokenizer.from_pretrained(
            source.base,
            revision=source.base_revision,
            trust_remote_code=runtime.trust_remote_code,
            **hub_kwargs(source.base),
        )
    except (OSError, ValueError) as err:
        raise _base_error(spec, "load tokenizer", err) from None
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise CompatlmError(f"tokenizer of {spec.base}: has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    return tok


def base_config(spec: ModelSpec, runtime: RuntimeConfig | None = None) -> Any:
    """The transformers config of ``spec``'s base; a local ``config.json`` is validated first
    (JSON object, known ``model_type``) so its problems name the file and field."""
    from transformers import AutoConfig

    runtime = runtime or RuntimeConfig()
    _require_path(spec.base, "base model")
    spec = _hf_base(spec)
    local_cfg = Path(spec.base).expanduser() / "config.json"
    if looks_like_path(spec.base) and local_cfg.is_file():
        check_base_config(local_cfg, trust_remote_code=runtime.trust_remote_code)
    try:
        return AutoConfig.from_pretrained(
            spec.base,
            revision=spec.base_revision,
            trust_remote_code=runtime.trust_remote_code,
            **hub_kwargs(spec.base),
        )
    except _CONFIG_VALUE_ERRORS as err:
        # transformers validates config fields (a string hidden_size); the message names it.
        where = str(local_cfg) if local_cfg.is_file() else f"config of base model {spec.base}"
        raise CompatlmError(f"{where}: {err}") from None  # folded to one line
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise _base_error(spec, "read its config", err) from None


def meta_base(spec: ModelSpec, runtime: RuntimeConfig | None = None, config: Any = None) -> Any:
    """The base model of ``spec`` built on the meta device (shapes only, no weights loaded)."""
    from transformers import AutoModelForCausalLM

    runtime = runtime or RuntimeConfig()
    config = config if config is not None else base_config(spec, runtime)
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(
                config, trust_remote_code=runtime.trust_remote_code
            )
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as err:
        # Values of the right type that the architecture still cannot use (a negative size,
        # a custom class that fails to build).
        raise CompatlmError(
            f"base model {spec.base}: transformers cannot build a causal LM from its config"
            f" ({_first_line(err)})"
        ) from None


def preflight(
    spec: ModelSpec | str,
    runtime: RuntimeConfig | None = None,
    *,
    tasks: Sequence[Any] = (),
    checked: set[tuple[str, int, str]] | None = None,
) -> None:
    """Every check :func:`load_model` makes that needs no weights, so a bad spec fails before
    a run directory is created or an earlier model spends minutes: local paths exist (a
    path-like name is never sent to the hub), weights are safetensors (or pickle is allowed),
    ``config.json`` and ``adapter_config.json`` are valid, and the adapter's LoRA tensors fit
    the base — checked on a weightless copy built on the ``meta`` device from the config.

    ``tasks`` (resolved tasks this model will run) are tokenised with the base's tokenizer to
    check every example fits the context length (:mod:`compatlm.tasks.fit`); ``checked``
    remembers (tokenizer, max length, task) triples already checked across calls.

    A string is parsed here (as in :func:`load_model`): these two are the library's entry
    points for callers without a config; everything behind them takes a ModelSpec.
    """
    spec = ModelSpec.parse(spec)
    runtime = runtime or RuntimeConfig()
    resolve_device(runtime.device)
    _require_path(spec.base, "base model")
    spec = _hf_base(spec)  # a GGUF base: header checks, then its converted cache entry
    if looks_like_path(spec.base):
        base_dir = Path(spec.base).expanduser()
        _check_local_weights(base_dir, runtime.allow_pickle, "base model")
        if not (base_dir / "config.json").is_file():
            raise CompatlmError(
                f"base model {spec.base}: no config.json (not a Hugging Face model directory)"
            )
        if not any(any(base_dir.glob(f"*{ext}")) for ext in (".safetensors", ".bin", ".pt")):
            raise CompatlmError(f"base model {spec.base}: no weights (*.safetensors) found")
    config = base_config(spec, runtime)
    # Shapes only: a meta-device instance costs no memory and proves the config is buildable.
    skeleton = meta_base(spec, runtime, config)
    if spec.adapter is not None:
        # adapter_config.json, then tensor names and shapes against the skeleton's modules.
        check_adapter_fits(skeleton, spec.adapter, allow_pickle=runtime.allow_pickle)
    if tasks:
        check_tasks_fit(tasks, load_tokenizer(spec, runtime), config, checked)


def check_lora_head(
    spec: ModelSpec, target_modules: Any = None, runtime: RuntimeConfig | None = None
) -> None:
    """Train-time guard: refuse a LoRA on an output head tied to the input embeddings (merging
    it changes the input embeddings too; lm-eval's peft loading breaks on it).

    ``target_modules`` are those of a fresh LoRA; when ``spec`` names an adapter (training
    continues it), the adapter's own ``target_modules`` and saved tensors decide.
    """
    runtime = runtime or RuntimeConfig()
    skeleton = meta_base(spec, runtime)
    if spec.adapter is not None:
        targets = adapter_config(spec.adapter).get("target_modules")
        keys = adapter_tensors(Path(spec.adapter).expanduser(), runtime.allow_pickle)
        where = f"adapter {spec.adapter}"
    else:
        keys, targets, where = {}, target_modules, "lora.target_modules"
    head = tied_head_target(skeleton, targets, keys)
    if head is not None:
        raise CompatlmError(
            f"{where}: a LoRA on {head!r}, which base {spec.base} ties to its input embeddings,"
            f" breaks merge_and_unload and lm-eval's peft loading; {TIED_HEAD_FIX}"
        )


def load_base(
    spec: ModelSpec, runtime: RuntimeConfig, device: torch.device, dtype: torch.dtype
) -> Any:
    from transformers import AutoModelForCausalLM

    _require_path(spec.base, "base model")
    source = _hf_base(spec)
    if _is_local(source.base):
        _check_local_weights(Path(source.base).expanduser(), runtime.allow_pickle, "base model")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.base,
            revision=source.base_revision,
            dtype=dtype,
            trust_remote_code=runtime.trust_remote_code,
            use_safetensors=None if runtime.allow_pickle else True,
            **hub_kwargs(source.base),
        )
    except (OSError, ValueError) as err:
        raise _base_error(spec, "load", err) from None
    if source is not spec:
        # Adapters trained on it record the GGUF (or pkg:) base, not the cache directory.
        model.name_or_path = model.config.name_or_path = spec.base
    return model.to(device)


def load_model(
    spec: ModelSpec | str,
    *,
    trainable: bool = False,
    runtime: RuntimeConfig | None = None,
    adapter_name: str = "default",
) -> LoadedModel:
    """Fresh model + tokenizer for ``spec``.

    ``trainable=False``: eval mode, no gradients anywhere. ``trainable=True``: the adapter's
    LoRA weights require grad (base frozen, as PEFT does); a spec without adapter is returned
    fully frozen too, and the caller adds a LoRA with peft.
    """
    from peft import PeftModel

    spec = ModelSpec.parse(spec)
    runtime = runtime or RuntimeConfig()
    device = resolve_device(runtime.device)
    dtype = resolve_dtype(runtime.dtype, device)
    tokenizer = load_tokenizer(spec, runtime)
    model = load_base(spec, runtime, device, dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    if spec.adapter is not None:
        check_adapter_fits(model, spec.adapter, allow_pickle=runtime.allow_pickle)
        warn_if_other_base(spec)
        try:
            model = PeftModel.from_pretrained(
                model,
                spec.adapter,
                revision=spec.adapter_revision,
                adapter_name=adapter_name,
                is_trainable=trainable,
            )
        except (RuntimeError, ValueError, OSError) as err:
            first = str(err).strip().splitlines()[0]
            raise CompatlmError(
                f"adapter {spec.adapter}: cannot apply to {spec.base} ({first})"
            ) from None
        model.to(device)
    model.train(trainable)
    if not trainable:
        model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, device=device, dtype=dtype)
