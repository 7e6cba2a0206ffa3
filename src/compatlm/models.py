"""Model loading and the guard rails around it.

``load_model(spec, trainable=...)`` turns a :class:`~compatlm.spec.ModelSpec` into fresh model
and tokenizer objects (never a caller's model mutated), with safe defaults: no remote code,
safetensors only unless pickle is explicitly allowed. Before PEFT touches an adapter we check it
fits the base (module names and shapes), so a wrong adapter is a one-line error instead of a
stack trace from deep inside a library.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.spec import ModelSpec

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise CompatlmError(f"runtime.device: unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CompatlmError(f"runtime.device: {name!r} asked for but CUDA is not available")
    return dev


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
    return name.startswith((".", "/", "~")) or os.path.exists(name)


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


def load_tokenizer(spec: ModelSpec | str, runtime: RuntimeConfig | None = None) -> Any:
    """The tokenizer of the spec's base, with a pad token guaranteed (pad = eos if missing)."""
    from transformers import AutoTokenizer

    spec = ModelSpec.parse(spec)
    runtime = runtime or RuntimeConfig()
    if _is_local(spec.base) and not Path(spec.base).expanduser().exists():
        raise CompatlmError(f"base model {spec.base}: path does not exist")
    try:
        tok = AutoTokenizer.from_pretrained(
            spec.base, revision=spec.base_revision, trust_remote_code=runtime.trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise CompatlmError(f"base model {spec.base}: cannot load tokenizer ({err})") from None
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise CompatlmError(f"tokenizer of {spec.base}: has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    return tok


def tokenizer_fingerprint(tok: Any) -> str:
    """sha256 over the vocabulary and special tokens: equal fingerprints tokenise identically
    for all practical purposes (normaliser/pre-tokeniser are included when available)."""
    h = hashlib.sha256()
    vocab = tok.get_vocab()
    h.update(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1])).encode())
    h.update(json.dumps(tok.all_special_tokens).encode())
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        for key in ("normalizer", "pre_tokenizer", "model"):
            h.update(json.dumps(state.get(key), sort_keys=True).encode())
    return h.hexdigest()[:16]


def first_tokenizer_difference(tok_a: Any, tok_b: Any) -> str | None:
    """A human description of the first difference between two tokenizers, or None."""
    va, vb = tok_a.get_vocab(), tok_b.get_vocab()
    inv_a = {i: t for t, i in va.items()}
    inv_b = {i: t for t, i in vb.items()}
    for i in range(max(len(inv_a), len(inv_b))):
        if inv_a.get(i) != inv_b.get(i):
            return f"token id {i} is {inv_a.get(i)!r} in one and {inv_b.get(i)!r} in the other"
    if tok_a.all_special_tokens != tok_b.all_special_tokens:
        return f"special tokens differ: {tok_a.all_special_tokens} vs {tok_b.all_special_tokens}"
    if tokenizer_fingerprint(tok_a) != tokenizer_fingerprint(tok_b):
        return "vocabularies agree but normaliser, pre-tokeniser or merges differ"
    return None


def require_same_tokenizer(
    tok_a: Any, tok_b: Any, why: str, names: tuple[str, str] = ("old", "new")
) -> None:
    """Raise when two tokenizers differ; ``why`` says what needs them equal."""
    diff = first_tokenizer_difference(tok_a, tok_b)
    if diff is not None:
        raise CompatlmError(
            f"{names[0]} and {names[1]} tokenizers differ ({diff}); {why} needs a shared vocabulary"
        )


def adapter_config(adapter: str | Path) -> dict[str, Any]:
    path = Path(adapter)
    cfg_file = path / "adapter_config.json"
    if not path.exists():
        raise CompatlmError(f"adapter {path}: path does not exist")
    if not path.is_dir():
        raise CompatlmError(f"adapter {path}: expected a PEFT adapter directory, found a file")
    if not cfg_file.is_file():
        raise CompatlmError(
            f"adapter {path}: no adapter_config.json (not a PEFT adapter directory)"
        )
    try:
        return json.loads(cfg_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CompatlmError(f"{cfg_file}: malformed JSON ({err})") from None


def _adapter_tensors(adapter: Path, allow_pickle: bool) -> dict[str, tuple[int, ...]]:
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


def check_adapter_fits(base_model: Any, adapter: str | Path, *, allow_pickle: bool = False) -> None:
    """Refuse an adapter whose modules the base lacks or whose shapes differ from the base's."""
    adapter = Path(adapter)
    cfg = adapter_config(adapter)
    shapes = _adapter_tensors(adapter, allow_pickle)
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
    tied = getattr(base_model.config, "tie_word_embeddings", False)
    targets = cfg.get("target_modules") or []
    if tied and ("lm_head" in targets or any(".lm_head." in k for k in shapes)):
        log.warning(
            "adapter %s targets lm_head, which this base ties to the input embeddings: merged"
            " weights and some loaders will be wrong; prefer untied bases or drop lm_head",
            adapter,
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


def meta_base(spec: ModelSpec | str, runtime: RuntimeConfig | None = None) -> Any:
    """The base model of ``spec`` built on the meta device (shapes only, no weights loaded)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = ModelSpec.parse(spec)
    runtime = runtime or RuntimeConfig()
    if spec.base.startswith((".", "/", "~")) and not Path(spec.base).expanduser().exists():
        raise CompatlmError(f"base model {spec.base}: path does not exist")
    try:
        config = AutoConfig.from_pretrained(
            spec.base, revision=spec.base_revision, trust_remote_code=runtime.trust_remote_code
        )
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CompatlmError(f"base model {spec.base}: cannot read its config ({first})") from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=runtime.trust_remote_code)


def preflight(spec: ModelSpec | str, runtime: RuntimeConfig | None = None) -> None:
    """Every check :func:`load_model` makes that needs no weights, so a bad spec fails before
    a run directory is created or an earlier model spends minutes: local paths exist, weights
    are safetensors (or pickle is allowed), the adapter is a PEFT directory whose LoRA tensors
    fit the base. The fit is checked on a weightless copy of the base built on the ``meta``
    device from its config.json (local bases only; hub bases are checked when loaded).
    """
    spec = ModelSpec.parse(spec)
    runtime = runtime or RuntimeConfig()
    resolve_device(runtime.device)
    local_base = _is_local(spec.base)
    base_dir = Path(spec.base).expanduser()
    if local_base:
        _check_local_weights(base_dir, runtime.allow_pickle, "base model")
        if not (base_dir / "config.json").is_file():
            raise CompatlmError(
                f"base model {spec.base}: no config.json (not a Hugging Face model directory)"
            )
        if not any(any(base_dir.glob(f"*{ext}")) for ext in (".safetensors", ".bin", ".pt")):
            raise CompatlmError(f"base model {spec.base}: no weights (*.safetensors) found")
    if spec.adapter is None:
        return
    adapter_config(spec.adapter)
    _adapter_tensors(Path(spec.adapter), runtime.allow_pickle)
    if not local_base:
        return
    # Shapes only: a meta-device instance built from config.json costs no memory or weights.
    skeleton = meta_base(spec, runtime)
    check_adapter_fits(skeleton, spec.adapter, allow_pickle=runtime.allow_pickle)


def load_base(
    spec: ModelSpec, runtime: RuntimeConfig, device: torch.device, dtype: torch.dtype
) -> Any:
    from transformers import AutoModelForCausalLM

    if _is_local(spec.base):
        _check_local_weights(Path(spec.base).expanduser(), runtime.allow_pickle, "base model")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            spec.base,
            revision=spec.base_revision,
            dtype=dtype,
            trust_remote_code=runtime.trust_remote_code,
            use_safetensors=None if runtime.allow_pickle else True,
        )
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CompatlmError(f"base model {spec.base}: cannot load ({first})") from None
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
