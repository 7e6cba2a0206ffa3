"""compatlm's embedded demo: a tiny model family and four tasks, built offline from a seed.

Nothing here is downloaded. A procedurally generated world (:mod:`~compatlm.demo.world`) yields
a pre-training corpus of stories, dialogues and word problems (:mod:`~compatlm.demo.corpus`), one
byte-level BPE tokenizer, two Llama-architecture bases — *old* and a realistic update *new*
(:mod:`~compatlm.demo.pretrain`) — and four tasks mirroring MUSCLE's evaluation (arXiv
2407.09435): HellaSwag, PIQA, GSM8K and SAMSum stand-ins (:mod:`~compatlm.demo.tasks`).

Typical use::

    from compatlm.demo import FamilyRecipe, build_or_load_family

    family = build_or_load_family(FamilyRecipe.default())  # cached after the first build
    family.old_dir, family.new_dir, family.tokenizer_dir   # from_pretrained()-able directories
    for task in family.tasks:
        family.task_kind(task), family.task_dir(task) / "test.jsonl"
"""

from compatlm.demo.family import (
    ADAPTER_HINT,
    BaseRecipe,
    Family,
    FamilyRecipe,
    SplitSizes,
    build_or_load_family,
    corpora,
)
from compatlm.demo.tasks import SPLITS, TASKS

__all__ = [
    "ADAPTER_HINT",
    "SPLITS",
    "TASKS",
    "BaseRecipe",
    "Family",
    "FamilyRecipe",
    "SplitSizes",
    "build_or_load_family",
    "corpora",
]
