"""Pre-training corpus of the default demo family: one document kind per skill.

Owns the phrasing of pre-training documents made from :mod:`compatlm.demo.skills`. One corpus is
one *view* (:class:`SkillView`): its own seed, size and weight per document kind. Old and new
bases read views that emphasise different skills — the new view is larger and covers every
skill, but spends less of itself on some skills the old view favours — which is how real updates
change their data mix (MUSCLE, arXiv 2407.09435, Sec. 1) and why the new base, better on
average, regresses on a skill the old one had. The tasks' training splits hold examples of every
skill, so a compatibility adapter can recover a lost skill from them.

Documents state each situation in the words the tasks use later (a story ends with what was
taken out of which box; a chat is followed by an "In short," summary; a word problem by its
worked answer and ``#### <answer>``), but never in a task's own frame (``Goal:``,
``Question:``, ``Dialogue:``), and the task generators drop any chat or question that occurs
verbatim here.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, field_validator

from compatlm.demo import skills as sk

DOC_KINDS = (
    "stash",
    "moves",
    "plans",
    *sk.MATH_KINDS,
    *sk.CHAT_KINDS,
    "copy",
)
FILLERS = (
    "The sun was shining.",
    "Outside, a dog barked.",
    "It was a quiet morning.",
    "The radio played an old song.",
    "It started to rain a little.",
    "The kettle was on.",
)


class SkillView(BaseModel):
    """How one pre-training corpus samples the skills (a plain value: hashed into the recipe)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    n_docs: int
    weights: dict[str, float]  # document kind (DOC_KINDS) -> sampling weight; missing = 0
    summary_rate: float = 0.8  # share of chats followed by an "In short," summary
    question_rate: float = 0.5  # share of word problems told as question + worked answer

    @field_validator("weights")
    @classmethod
    def _known_kinds(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(DOC_KINDS))
        if unknown:
            raise ValueError(f"unknown document kind {unknown[0]!r}; valid: {', '.join(DOC_KINDS)}")
        if any(w < 0 for w in value.values()) or not any(w > 0 for w in value.values()):
            raise ValueError("weights must be >= 0 with at least one > 0")
        return value


def _with_fillers(rng: random.Random, sentences: list[str], rate: float = 0.3) -> str:
    out = []
    for s in sentences:
        out.append(s)
        if rng.random() < rate:
            out.append(rng.choice(FILLERS))
    return " ".join(out)


def stash_setup(rng: random.Random, st: sk.Stash) -> list[str]:
    """Sentences telling where everything went, then the moves (shared with the tasks)."""
    n, s = st.agent.name, st.agent.subj
    # Mostly container first ("In the red box, she put the key"): a small model finds what a
    # container holds by copying what follows its earlier mention, not what precedes it.
    sents = [f"{n} had some things to put away."] if rng.random() < 0.5 else []
    for j, (i, c) in enumerate(st.placed):
        who = n if j == 0 and not sents else rng.choice([s, n])
        sents.append(
            rng.choice(
                [
                    f"In the {c}, {who} put the {i}.",
                    f"In the {c}, {who} put the {i}.",
                    f"Into the {c} went the {i}.",
                    f"The {c} got the {i}.",
                    f"{who[0].upper()}{who[1:]} put the {i} in the {c}.",
                ]
            )
        )
    for i, src, dst in st.moves:
        sents.append(
            rng.choice(
                [
                    f"Then {s} moved the {i} to the {dst}.",
                    f"Later, {s} took the {i} out of the {src} and put it in the {dst}.",
                    f"After that, the {i} went from the {src} into the {dst}.",
                ]
            )
        )
    return sents


def _stash_doc(rng: random.Random, n_moves: int) -> str:
    st = sk.make_stash(rng, rng.randint(2, 4), n_moves)
    s = st.agent.subj
    item = st.moves[-1][0] if st.moves and rng.random() < 0.7 else rng.choice(st.placed)[0]
    box = st.where(item)
    end = rng.choice(
        [
            f"Later, {s} opened the {box} and took out the {item}.",
            f"Later, {st.agent.name} opened the {box}. {s.capitalize()} took out the {item}.",
            f"When {s} needed the {item}, {s} looked in the {box}.",
            f"In the end, the {item} was in the {box}.",
        ]
    )
    return _with_fillers(rng, [*stash_setup(rng, st), end])


def plan_setup(rng: random.Random, pl: sk.Plan) -> list[str]:
    (a, b), p = pl.people, pl.places
    sents = [f"{a.name} and {b.name} wanted to go to the {p[0]} on {pl.day}."]
    changes = []
    for prev, nxt, why in zip(p[:-1], p[1:], pl.reasons, strict=True):
        changes.append(
            [
                f"But the {prev} was closed, so they chose the {nxt} instead.",
                f"{b.name} did not like the {prev}, so they picked the {nxt}.",
                f"Then {a.name} said the {prev} was too far, and they agreed on the {nxt}.",
            ][why]
        )
    # The dropped idea comes before the last change, so "the last place named" is not a shortcut.
    at = rng.randrange(len(changes))
    changes.insert(at, f"{b.name} also thought about the {pl.rejected}, but it was too expensive.")
    return sents + changes


def _plans_doc(rng: random.Random) -> str:
    pl = sk.make_plan(rng)
    end = rng.choice(
        [
            f"On {pl.day}, they went to the {pl.final}.",
            f"So they spent {pl.day} at the {pl.final}.",
        ]
    )
    return _with_fillers(rng, [*plan_setup(rng, pl), end], rate=0.15)


def _math_doc(rng: random.Random, view: SkillView, kind: str) -> str:
    p = sk.make_problem(rng, kind)
    q, worked = sk.problem_text(p, rng)
    if rng.random() < view.question_rate:
        return f"{q} {worked}\n#### {p.answer}"
    if rng.random() < 0.5:  # drills: the same operation, several times
        more = [sk.make_problem(rng, kind) for _ in range(rng.randint(2, 4))]
        return " ".join(sk.problem_text(x, rng)[1] for x in [p, *more])
    return f"{q.rsplit('. ', 1)[0]}. So the answer is {worked}"


def _chat_doc(rng: random.Random, view: SkillView, kind: str) -> str:
    chat = sk.make_chat(rng, kind)
    text = chat.text()
    if rng.random() < view.summary_rate:
        text += "\nIn short, " + chat.summary
    return text


def _copy_doc(rng: random.Random) -> str:
    pool = sk.ITEMS + sk.PLACES + sk.FOODS + [str(i) for i in range(100)]
    words = " ".join(rng.choices(pool, k=rng.randint(3, 8)))
    return rng.choice(
        [f"Repeat after me: {words}. {words}.", f"The list is {words}. Again: {words}."]
    )


def make_skill_corpus(view: SkillView, world_seed: int = 0) -> list[str]:
    """The view's documents, in a fixed order (a pure function of ``view`` and ``world_seed``)."""
    rng = random.Random(f"skill-corpus:{world_seed}:{view.seed}")
    kinds = [k for k in DOC_KINDS if view.weights.get(k, 0) > 0]
    docs: list[str] = []
    for kind in rng.choices(kinds, weights=[view.weights[k] for k in kinds], k=view.n_docs):
        if kind in ("stash", "moves"):
            docs.append(_stash_doc(rng, 0 if kind == "stash" else rng.choice((1, 1, 2))))
        elif kind == "plans":
            docs.append(_plans_doc(rng))
        elif kind in sk.MATH_KINDS:
            docs.append(_math_doc(rng, view, kind))
        elif kind in sk.CHAT_KINDS:
            docs.append(_chat_doc(rng, view, kind))
        else:
            docs.append(_copy_doc(rng))
    return docs
