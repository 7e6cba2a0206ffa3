"""Pre-training corpus of the demo world: short stories, dialogues and word problems.

Owns the phrasing of pre-training documents. One corpus is one *view* of the world
(:class:`CorpusView`): its own seed, size, mix of document kinds and long-tailed emphasis over
facts. The old and new base models are pre-trained on different views, as real model updates
change their data (MUSCLE, arXiv 2407.09435, Sec. 1): the new view is larger but emphasises the
world's facts differently, so the new base knows most — not all — of what the old one knew.

Document kinds (:data:`DOC_KINDS`): facts about people, goal → tool common sense, dialogues
(most followed by an "In short," summary), arithmetic word problems (as stories or as worked
Q&A ending in ``#### <answer>``), object-in-box stories and repetition drills.

Facts are stated in both directions ("Anna owns a boat", "The boat belongs to Anna") because a
causal LM only learns the direction it reads, and the tasks ask in either direction.
"""

from __future__ import annotations

import itertools
import random

from pydantic import BaseModel, ConfigDict

from compatlm.demo.texts import (
    COLOURS,
    DIALOGUE_KINDS,
    ITEMS,
    KNOWLEDGE_DIALOGUES,
    make_box_story,
    make_dialogue,
    make_word_problem,
    word_problem_text,
)
from compatlm.demo.world import (
    JOBS,
    PETS,
    TOOLS,
    Person,
    World,
    article,
    fact_weights,
    goal_weights,
)

DOC_KINDS = ("facts", "tools", "dialogue", "math", "boxes", "copy")


class CorpusView(BaseModel):
    """How one pre-training corpus samples the world (a plain value: hashed into the recipe)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    n_docs: int
    mix: tuple[float, float, float, float, float, float]  # weights of DOC_KINDS, same order
    correlation: float = 0.5  # how much this view's fact emphasis agrees with other views
    exponent: float = 1.0  # long tail: larger -> rare facts rarer
    max_n: int = 12  # largest operand in word problems
    summary_rate: float = 0.5  # share of dialogues followed by an "In short," summary
    question_rate: float = 0.5  # share of word problems told as question + worked answer


def _fact_sentence(rng: random.Random, p: Person, attribute: str) -> str:
    n, s, pos = p.name, p.subj, p.poss
    if attribute == "job":
        place, act = JOBS[p.job]
        return rng.choice(
            [
                f"{n} is {article(p.job)} {p.job}.",
                f"{n} works as {article(p.job)} {p.job}.",
                f"{n} works at the {place}.",
                f"Every day, {n} goes to the {place}.",
                f"At the {place}, {n} {act}.",
                f"{n} has been {article(p.job)} {p.job} for many years.",
                f"Today {n} {act} at the {place}.",
            ]
        )
    if attribute == "town":
        return rng.choice(
            [
                f"{n} lives in {p.town}.",
                f"{n} comes from {p.town}.",
                f"The house of {n} is in {p.town}.",
                f"{n} was born in {p.town} and still lives there.",
                f"In the evening, {n} went home to {p.town}.",
            ]
        )
    if attribute == "pet":
        return rng.choice(
            [
                f"{n} has {article(p.pet)} {p.pet}.",
                f"The {p.pet} of {n} {PETS[p.pet]}.",
                f"{n} takes good care of {pos} {p.pet}.",
                f"{n} played with {pos} {p.pet} in the evening.",
                f"{n} fed {pos} {p.pet} before breakfast.",
            ]
        )
    if attribute == "food":
        return rng.choice(
            [
                f"{n} loves {p.food}.",
                f"The favourite food of {n} is {p.food}.",
                f"{n} ate {p.food} for lunch, as always.",
                f"{n} bought some {p.food}, because {s} likes {p.food} a lot.",
            ]
        )
    if attribute == "friend":
        return rng.choice(
            [
                f"{n} and {p.friend} are best friends.",
                f"The best friend of {n} is {p.friend}.",
                f"{n} visited {pos} best friend {p.friend}.",
                f"{n} often talks with {p.friend}, {pos} best friend.",
            ]
        )
    if attribute == "tool":
        goal = rng.choice(TOOLS[p.tool])
        return rng.choice(
            [
                f"{n} owns {article(p.tool)} {p.tool}.",
                f"The {p.tool} belongs to {n}.",
                f"{n} used {pos} {p.tool} to {goal}.",
                f"To {goal}, {n} took {pos} {p.tool}.",
                f"Whoever needs {article(p.tool)} {p.tool} asks {n}.",
            ]
        )
    raise ValueError(attribute)


def _facts_doc(rng: random.Random, world: World, weights: dict, facts: list, cum: list) -> str:
    # Anchor on one fact drawn from the view's long tail, then add up to two more facts about
    # the same person, so each fact's frequency follows the view's weights.
    name, attr = rng.choices(facts, cum_weights=cum)[0]
    p = world.person(name)
    own = [a for (m, a) in facts if m == name and a != attr]
    extra = rng.choices(own, weights=[weights[(name, a)] for a in own], k=rng.randint(0, 2))
    attrs = [attr, *dict.fromkeys(extra)]
    rng.shuffle(attrs)
    return " ".join(_fact_sentence(rng, p, a) for a in attrs)


def _tools_doc(rng: random.Random, goals: list[tuple[str, str]], cum: list[float]) -> str:
    # Goal -> tool common sense (not about anyone's possessions), long-tailed like the facts.
    goal, tool = rng.choices(goals, cum_weights=cum)[0]
    return rng.choice(
        [
            f"If you want to {goal}, you need {article(tool)} {tool}.",
            f"To {goal}, people use {article(tool)} {tool}.",
            f"{article(tool).capitalize()} {tool} is what you need to {goal}.",
            f"You cannot {goal} without {article(tool)} {tool}.",
        ]
    )


def _dialogue_doc(
    rng: random.Random, world: World, view: CorpusView, weights: dict[tuple[str, str], float]
) -> str:
    kind = rng.choice(DIALOGUE_KINDS)
    host = None
    if kind in KNOWLEDGE_DIALOGUES:
        # The summary states a fact about the host: pick hosts by this view's emphasis on it,
        # so summaries do not make every such fact equally well known.
        attribute = KNOWLEDGE_DIALOGUES[kind]
        people = list(world.people)
        host = rng.choices(people, weights=[weights[(p.name, attribute)] for p in people])[0]
    d = make_dialogue(world, rng, kind, host=host)
    text = d.text()
    if rng.random() < view.summary_rate:
        text += "\nIn short, " + d.summary
    return text


def _math_doc(rng: random.Random, world: World, view: CorpusView) -> str:
    w = make_word_problem(world, rng, max_n=view.max_n)
    if rng.random() < view.question_rate:
        # Q&A with a "#### <answer>" last line, as worked solutions appear on the web: the base
        # learns to restate its result, which a task adapter then only has to trigger.
        q, ref = word_problem_text(w)
        return f"{q} {ref}\n#### {w.answer}"
    n, o, t = w.person.name, w.other.name, w.thing
    x = w.numbers
    if w.kind == "add":
        return (
            f"{n} had {x[0]} {t}. {o} gave {w.person.obj} {x[1]} more {t}. "
            f"Now {n} has {x[0]} + {x[1]} = {w.answer} {t}."
        )
    if w.kind == "sub":
        return (
            f"{n} had {x[0]} {t}. {w.person.subj.capitalize()} gave {x[1]} {t} to {o}. "
            f"So {n} has {x[0]} - {x[1]} = {w.answer} {t} left."
        )
    if w.kind == "mul":
        return (
            f"{n} has {x[0]} boxes with {x[1]} {t} in each box. "
            f"That makes {x[0]} * {x[1]} = {w.answer} {t}."
        )
    return (
        f"{n} had {x[0]} {t} and found {x[1]} more. Then {w.person.subj} lost {x[2]}. "
        f"{x[0]} + {x[1]} = {x[0] + x[1]}, and {x[0] + x[1]} - {x[2]} = {w.answer} {t}."
    )


def _boxes_doc(rng: random.Random, world: World) -> str:
    # Which object is in which box: practice in binding things within a text.
    b = make_box_story(world, rng)
    n, s = b.person.name, b.person.subj
    (i0, i1), (c0, c1) = b.items, b.colours
    k = b.asked
    # Occasional third distractor colour/item keeps the pattern from being a fixed template.
    extra = ""
    if rng.random() < 0.3:
        i2 = rng.choice([i for i in ITEMS if i not in b.items])
        c2 = rng.choice([c for c in COLOURS if c not in b.colours])
        extra = f" The {c2} box stayed empty, and the {i2} stayed on the table."
    return (
        f"{n} put a {i0} in the {c0} box and a {i1} in the {c1} box.{extra} "
        f"Later, {s} opened the {(c0, c1)[k]} box and took out the {(i0, i1)[k]}."
    )


def _copy_doc(rng: random.Random, world: World) -> str:
    # Repetition drills: extra practice in copying from the context, which summaries and word
    # problems need. (Measured: on their own they do not make a tiny model copy within the
    # demo's budget; training on whole, document-masked texts does, see pretrain.pack.)
    pool = [p.name for p in world.people] + list(world.towns) + ITEMS + [str(i) for i in range(100)]
    words = " ".join(rng.choices(pool, k=rng.randint(3, 8)))
    return rng.choice(
        [
            f"Repeat after me: {words}. {words}.",
            f"The list is {words}. Again, the list is {words}.",
            f"Write down: {words}. Written: {words}.",
        ]
    )


def make_corpus(world: World, view: CorpusView) -> list[str]:
    """The view's documents, in a fixed order (a pure function of ``world`` and ``view``)."""
    rng = random.Random(f"corpus:{world.seed}:{view.seed}")
    weights = fact_weights(world, view.seed, correlation=view.correlation, exponent=view.exponent)
    facts, cum = list(weights), list(itertools.accumulate(weights.values()))
    gw = goal_weights(world, view.seed, correlation=view.correlation, exponent=view.exponent)
    goals, goal_cum = list(gw), list(itertools.accumulate(gw.values()))
    docs: list[str] = []
    for kind in rng.choices(DOC_KINDS, weights=view.mix, k=view.n_docs):
        if kind == "facts":
            docs.append(_facts_doc(rng, world, weights, facts, cum))
        elif kind == "tools":
            docs.append(_tools_doc(rng, goals, goal_cum))
        elif kind == "dialogue":
            docs.append(_dialogue_doc(rng, world, view, weights))
        elif kind == "math":
            docs.append(_math_doc(rng, world, view))
        elif kind == "boxes":
            docs.append(_boxes_doc(rng, world))
        else:
            docs.append(_copy_doc(rng, world))
    return docs
