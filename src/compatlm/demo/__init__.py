"""compatlm's embedded demo: a tiny model family and four tasks, built offline from a seed.

Nothing here is downloaded. Procedurally generated skill situations (:mod:`~compatlm.demo.skills`)
yield two pre-training corpora of stories, chats and word problems that favour different skills
(:mod:`~compatlm.demo.skill_corpus`), one byte-level BPE tokenizer, two Llama-architecture bases
— *old* and a realistic update *new* (:mod:`~compatlm.demo.pretrain`) — and four tasks mirroring
MUSCLE's evaluation (arXiv 2407.09435): HellaSwag, PIQA, GSM8K and SAMSum stand-ins, split by
group (:mod:`~compatlm.demo.skill_tasks`). The earlier family, built from a world of people and
their facts (:mod:`~compatlm.demo.world`, :mod:`~compatlm.demo.corpus`,
:mod:`~compatlm.demo.tasks`), stays available as ``FamilyRecipe.legacy()``.

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
