"""Session fixtures: one tiny tokenizer, two tiny bases (old/new) and adapters, built offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from helpers import make_tokenizer, save_base, save_lora


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """Paths: old/new bases (different seeds, same tokenizer), a LoRA on each, and a base of
    another size (for shape-mismatch errors)."""
    root = tmp_path_factory.mktemp("family")
    old = save_base(root / "old", tiny_tokenizer, seed=1)
    new = save_base(root / "new", tiny_tokenizer, seed=2)
    wide = save_base(root / "wide", tiny_tokenizer, hidden=48, seed=3)
    return {
        "old": old,
        "new": new,
        "wide": wide,
        "old_adapter": save_lora(old, root / "old_adapter", seed=11),
        "new_adapter": save_lora(new, root / "new_adapter", seed=12),
        "wide_adapter": save_lora(wide, root / "wide_adapter", seed=13),
    }
