"""The demo family's recipe: :class:`FamilyRecipe`, everything that determines a family (two
corpora, two base-model shapes, optimisation, task sizes), and the named recipes ``default``,
``continued`` and ``legacy``. Its hash names the family's cache entry; :func:`corpora`
regenerates the two pre-training corpora it describes.

The *new* base is a realistic update of the *old* one, as in MUSCLE (arXiv 2407.09435, which
studies Llama 1 → 2 and Phi 1.5 → 2): more parameters, more pre-training data and a different
data mix. In the default family the mix is over *skills* (:mod:`compatlm.demo.skill_corpus`):
the new base is better on average but weaker at some skills the old corpus favoured, and every
task mixes skills of both kinds, so negative flips are skill regressions the tasks' training
splits can teach back. The legacy family (``legacy``, and ``continued`` built on it) varies the
emphasis over a world's per-person facts instead; its knowledge tasks are split by fact.

The recipe sits below both the build (:mod:`compatlm.demo.build`) and the cached loading
(:mod:`compatlm.demo.family`, which re-exports these names).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from compatlm.demo.corpus import CorpusView, make_corpus
from compatlm.demo.pretrain import ModelShape, PretrainSettings
from compatlm.demo.skill_corpus import SkillView, make_skill_corpus
from compatlm.demo.world import make_world
from compatlm.errors import CompatlmError

# Bump when generators or training code change what a recipe produces: old caches then miss.
FORMAT_VERSION = 1
# Bump when the skill generators (skills, skill_corpus, skill_tasks) change; hashed only into
# skill recipes, so legacy cache keys stay valid.
SKILLS_FORMAT = 7
ROLES = ("old", "new")
FAMILIES = ("default", "continued", "legacy")

# Task-adapter settings measured on the default family: LoRA on every linear layer of the
# attention and MLP blocks (lm_head left alone), 1000 training rows, ~10-20 s per adapter on one
# thread. Test accuracy old -> new: hellaswag 0.62 -> 0.78, piqa 0.82 -> 0.88, gsm8k 0.41 ->
# 0.63, samsum ROUGE-1 0.95 -> 0.98; negative flip rates 8.5%, 6.0%, 4.8%, 8.0% (exact match).
ADAPTER_HINT: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "learning_rate": 3e-3,
    "epochs": 3,
    "batch_size": 16,
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseRecipe(_Frozen):
    """One base model: the corpus view it reads, its shape and its optimisation."""

    corpus: SkillView | CorpusView  # skills (default family) or world facts (legacy)
    shape: ModelShape
    train: PretrainSettings
    # "old": continue pre-training from the old base's weights (same shape) instead of a fresh
    # init. Left out of the recipe hash when unset, so existing cache keys stay valid.
    init_from: Literal["old"] | None = None


class SplitSizes(_Frozen):
    train: int
    validation: int
    test: int


class FamilyRecipe(_Frozen):
    """Everything that determines a demo family; its hash names the cache entry."""

    world_seed: int = 0
    n_people: int = 40
    n_towns: int = 8
    vocab_size: int = 1024
    max_n: int = 12  # largest operand in word problems (demo_gsm8k; views set their own)
    task_seed: int = 5
    task_sizes: SplitSizes = SplitSizes(train=1000, validation=200, test=400)
    old: BaseRecipe
    new: BaseRecipe

    @model_validator(mode="after")
    def _check_init(self) -> FamilyRecipe:
        if self.old.init_from is not None:
            raise ValueError(
                "old.init_from must be unset: the old base is pre-trained from scratch"
            )
        if self.new.init_from == "old" and self.new.shape != self.old.shape:
            raise ValueError(
                "new.init_from=old needs the old base's shape, found "
                f"{self.new.shape.model_dump()} vs {self.old.shape.model_dump()}"
            )
        return self

    @property
    def skills(self) -> bool:
        """True for skill families (the default), False for the legacy world-facts family."""
        return isinstance(self.old.corpus, SkillView)

    def key(self) -> str:
        """Stable hash of the recipe and the generator version (16 hex chars)."""
        recipe = self.model_dump(mode="json", exclude_none=True)
        version: dict[str, Any] = {"format": FORMAT_VERSION}
        if self.skills:
            version["skills_format"] = SKILLS_FORMAT
        blob = json.dumps({**version, "recipe": recipe}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @model_validator(mode="after")
    def _same_generator(self) -> FamilyRecipe:
        if isinstance(self.old.corpus, SkillView) != isinstance(self.new.corpus, SkillView):
            raise ValueError("old and new corpora must both be skill views or both world views")
        return self

    @classmethod
    def default(cls) -> FamilyRecipe:
        """The `compatlm demo` family: skills (:mod:`compatlm.demo.skills`), ~0.4M-param old on
        22k documents (~1.1M tokens), ~0.7M-param new on 33k documents (~1.6M tokens) of a mix
        that favours other skills."""
        old_w, new_w = _skill_weights()
        return cls(
            task_sizes=SplitSizes(train=1000, validation=450, test=450),
            old=BaseRecipe(
                corpus=SkillView(seed=1, n_docs=22_000, weights=old_w),
                shape=ModelShape(hidden_size=96, num_layers=2, num_heads=2, intermediate_size=256),
                train=PretrainSettings(seed=11),
            ),
            new=BaseRecipe(
                corpus=SkillView(seed=2, n_docs=33_000, weights=new_w),
                shape=ModelShape(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=352),
                train=PretrainSettings(seed=12),
            ),
        )

    @classmethod
    def legacy(cls) -> FamilyRecipe:
        """The family before skills (``--family legacy``): a world of 40 people whose facts the
        knowledge tasks ask about, split by fact; ~0.4M-param old on ~1.0M tokens, ~0.7M-param
        new on ~1.5M tokens (same document mix, differently emphasised facts)."""
        # Mix order: facts, tools, dialogue, math, boxes, copy (see corpus.DOC_KINDS).
        view = {
            "mix": (0.3, 0.05, 0.3, 0.2, 0.1, 0.05),
            "summary_rate": 0.8,
            "correlation": 0.3,
            "exponent": 1.5,
            "max_n": 12,
        }
        return cls(
            old=BaseRecipe(
                corpus=CorpusView(seed=1, n_docs=30_000, **view),
                shape=ModelShape(hidden_size=96, num_layers=2, num_heads=2, intermediate_size=256),
                train=PretrainSettings(seed=11),
            ),
            new=BaseRecipe(
                corpus=CorpusView(seed=2, n_docs=45_000, **view),
                shape=ModelShape(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=352),
                train=PretrainSettings(seed=12),
            ),
        )

    @classmethod
    def continued(cls) -> FamilyRecipe:
        """The legacy family's old base; the new one *continues* its pre-training on the new,
        larger view (same shape). The update PortLLM and weight interpolation assume: the old
        adapter's weight deltas still mean something on the new base. ~4 min on 2 cores."""
        d = cls.legacy()
        new = d.new.model_copy(
            update={
                "shape": d.old.shape,
                "train": d.new.train.model_copy(update={"lr": 2e-3}),
                "init_from": "old",
            }
        )
        return d.model_copy(update={"new": new})

    @classmethod
    def named(cls, name: str, *, quick: bool = False) -> FamilyRecipe:
        """``default``, ``continued`` or ``legacy``, full size or (``quick``) miniature."""
        if name not in FAMILIES:
            raise CompatlmError(f"unknown demo family {name!r}; valid: {', '.join(FAMILIES)}")
        recipe = {"default": cls.default, "continued": cls.continued, "legacy": cls.legacy}[name]()
        return recipe.shrunk() if quick else recipe

    @classmethod
    def quick(cls) -> FamilyRecipe:
        """A miniature family for end-to-end tests (seconds, not minutes; models learn little)."""
        return cls.default().shrunk()

    def shrunk(self) -> FamilyRecipe:
        """The miniature version of this recipe (what ``--quick`` uses)."""
        same = self.new.init_from == "old"
        return self.model_copy(
            update={
                "vocab_size": 512,
                "task_sizes": SplitSizes(train=64, validation=16, test=32),
                "old": _shrink(self.old, n_docs=3_000, hidden=48, inter=128),
                "new": _shrink(
                    self.new, n_docs=4_000, hidden=48 if same else 64, inter=128 if same else 160
                ),
            }
        )


def _skill_weights() -> tuple[dict[str, float], dict[str, float]]:
    """Document-kind weights of the old and new skill views (see skill_corpus.DOC_KINDS).

    Every skill is in both views. The old view favours changed plans, multiplication and two
    of the chat kinds; the new one favours moved things, addition,
    subtraction, two-step problems and the meeting chats, and is larger overall.
    """
    shared = {"stash": 1.5, "sick": 1.0, "news": 1.0, "copy": 0.5}
    old_favours = ("plans", "mul", "bring", "swap")
    new_favours = ("moves", "add", "sub", "two_step", "meet")
    old = {**shared, **dict.fromkeys(old_favours, 3.0), **dict.fromkeys(new_favours, 1.0)}
    new = {**shared, **dict.fromkeys(old_favours, 1.0), **dict.fromkeys(new_favours, 3.0)}
    return old, new


def _shrink(base: BaseRecipe, *, n_docs: int, hidden: int, inter: int) -> BaseRecipe:
    return BaseRecipe(
        corpus=base.corpus.model_copy(update={"n_docs": n_docs}),
        shape=base.shape.model_copy(update={"hidden_size": hidden, "intermediate_size": inter}),
        train=base.train,
        init_from=base.init_from,
    )


def corpora(recipe: FamilyRecipe) -> dict[str, list[str]]:
    """The old and new pre-training corpora (regenerated: pure functions of the recipe)."""
    out: dict[str, list[str]] = {}
    for role in ROLES:
        view = getattr(recipe, role).corpus
        if isinstance(view, SkillView):
            out[role] = make_skill_corpus(view, recipe.world_seed)
        else:
            world = make_world(recipe.world_seed, recipe.n_people, recipe.n_towns)
            out[role] = make_corpus(world, view)
    return out
