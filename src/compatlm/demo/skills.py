"""Skill content of the default demo family: small self-contained situations and their answers.

Owns the structured *skill instances* the default family is made of. Each generator draws one
situation from an ``rng`` — who put which thing into which container (and moved what), how a
plan changed, a word problem, a chat — and
:mod:`~compatlm.demo.skill_corpus` (pre-training documents) and :mod:`~compatlm.demo.skill_tasks`
(task rows) render it as text. Every answer follows from the text itself (plus arithmetic, the
same in every split), so what a task tests is a
*skill* a model can learn from training examples and apply to unseen instances — not a
per-item fact, which no amount of training on other items can supply (MUSCLE, arXiv 2407.09435,
transfers the old model's behaviour through the training split).

Every instance has a :meth:`key`: the content that decides its answer, without names or wording.
Task splits are disjoint by key, and the key is the ``group`` of a task row.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from compatlm.demo.world import DAYS, FEMALE_NAMES, FOODS, MALE_NAMES, PETS, article

ITEMS = "key coin ring letter spoon marble shell stamp button ribbon whistle feather".split()
COLOURS = "red blue green yellow black white".split()
CONTAINERS = "box bag jar basket drawer tin".split()
PLACES = "park market cafe station cinema museum beach library zoo harbor garden pool".split()
EVENTS = "party concert picnic game dinner wedding".split()
REASONS = ("a cold", "a fever", "too much work", "a sore foot", "a flat tire", "a broken bike")
PET_NAMES = "Pip Rex Luna Coco Bruno Daisy Milo Oreo Ziggy Pepper Biscuit Mango".split()
MATH_THINGS = ("apples", "coins", "books", "stamps", "eggs", "pencils", "cards", "shells")


@dataclass(frozen=True)
class Agent:
    name: str
    female: bool

    @property
    def subj(self) -> str:
        return "she" if self.female else "he"

    @property
    def poss(self) -> str:
        return "her" if self.female else "his"

    @property
    def obj(self) -> str:
        return "her" if self.female else "him"


def cast(rng: random.Random, k: int) -> list[Agent]:
    """``k`` distinct people (names carry a gender so pronouns stay consistent)."""
    pool = [(n, True) for n in FEMALE_NAMES] + [(n, False) for n in MALE_NAMES]
    return [Agent(n, f) for n, f in rng.sample(pool, k)]


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class Stash:
    """Things put into containers, then perhaps moved: binding and state tracking."""

    agent: Agent
    placed: tuple[tuple[str, str], ...]  # (item, container) in the order told
    moves: tuple[tuple[str, str, str], ...]  # (item, from, to) in order

    def where(self, item: str) -> str:
        place = dict(self.placed)[item]
        for it, _src, dst in self.moves:
            if it == item:
                place = dst
        return place

    def containers(self) -> list[str]:
        seen = [c for _, c in self.placed] + [d for _, _, d in self.moves]
        return list(dict.fromkeys(seen))

    def key(self, query: str) -> str:
        return f"{self.placed}|{self.moves}|{query}"


def make_stash(rng: random.Random, n_items: int, n_moves: int) -> Stash:
    colours = rng.sample(COLOURS, n_items + n_moves)
    nouns = [rng.choice(CONTAINERS) for _ in colours]
    boxes = [f"{c} {n}" for c, n in zip(colours, nouns, strict=True)]
    items = rng.sample(ITEMS, n_items)
    placed = tuple(zip(items, boxes[:n_items], strict=True))
    where = dict(placed)
    moves = []
    spare = boxes[n_items:]
    for _ in range(n_moves):
        item = rng.choice(items)
        # Move into an unused container or into one that already holds something.
        dst = (
            spare.pop()
            if spare and rng.random() < 0.6
            else rng.choice([b for b in boxes[:n_items] if b != where[item]])
        )
        moves.append((item, where[item], dst))
        where[item] = dst
    return Stash(cast(rng, 1)[0], placed, tuple(moves))


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Plan:
    """Two people plan an outing; the place changes once or twice (the last choice holds)."""

    people: tuple[Agent, Agent]
    day: str
    places: tuple[str, ...]  # chosen in this order; the last one is final
    reasons: tuple[int, ...]  # which wording each change uses
    rejected: str  # a place considered and dropped (a distractor the text mentions)

    @property
    def final(self) -> str:
        return self.places[-1]

    def key(self) -> str:
        return f"{self.places}|{self.rejected}|{self.reasons}"


def make_plan(rng: random.Random) -> Plan:
    n_changes = rng.choice((1, 1, 2))
    places = rng.sample(PLACES, n_changes + 2)
    return Plan(
        people=tuple(cast(rng, 2)),  # type: ignore[arg-type]
        day=rng.choice(DAYS),
        places=tuple(places[: n_changes + 1]),
        reasons=tuple(rng.randrange(3) for _ in range(n_changes)),
        rejected=places[-1],
    )


# --------------------------------------------------------------------------- arithmetic

MATH_KINDS = ("add", "sub", "mul", "two_step")


@dataclass(frozen=True)
class Problem:
    kind: str
    people: tuple[Agent, Agent]
    thing: str
    numbers: tuple[int, ...]
    answer: int

    def key(self) -> str:
        # Operands in their order (a tiny model computes 17 + 8 and 8 + 17 separately).
        return f"{self.kind}|{self.numbers}"


def make_problem(rng: random.Random, kind: str) -> Problem:
    people = tuple(cast(rng, 2))
    thing = rng.choice(MATH_THINGS)
    if kind == "add":
        nums = (rng.randint(2, 29), rng.randint(2, 29))
        ans = nums[0] + nums[1]
    elif kind == "sub":
        x = rng.randint(8, 40)
        nums = (x, rng.randint(2, x - 2))
        ans = nums[0] - nums[1]
    elif kind == "mul":  # a boxes of b, plus c loose ones
        nums = (rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 15))
        ans = nums[0] * nums[1] + nums[2]
    elif kind == "two_step":
        x, y = rng.randint(2, 20), rng.randint(2, 20)
        nums = (x, y, rng.randint(1, x + y - 1))
        ans = x + y - nums[2]
    else:
        raise ValueError(f"unknown problem kind {kind!r}")
    return Problem(kind, people, thing, nums, ans)  # type: ignore[arg-type]


def problem_text(p: Problem, rng: random.Random) -> tuple[str, str]:
    """(question, worked answer). The worked answer is one or two ``a op b = c`` steps."""
    (a, b), t, x = p.people, p.thing, p.numbers
    n, s = a.name, a.subj
    if p.kind == "add":
        q = rng.choice(
            [
                f"{n} had {x[0]} {t}. {b.name} gave {a.obj} {x[1]} more. How many {t} does {n} have now?",
                f"{n} found {x[0]} {t} on Monday and {x[1]} {t} on Tuesday. How many {t} did {s} find?",
                f"There are {x[0]} {t} in one box and {x[1]} in another. How many {t} are there in all?",
            ]
        )
        return q, f"{x[0]} + {x[1]} = {p.answer}."
    if p.kind == "sub":
        q = rng.choice(
            [
                f"{n} had {x[0]} {t} and gave {x[1]} of them to {b.name}. How many {t} are left?",
                f"{n} has {x[0]} {t} and {b.name} has {x[1]}. How many more {t} does {n} have?",
                f"A box held {x[0]} {t}. {n} took out {x[1]}. How many {t} are still in the box?",
            ]
        )
        return q, f"{x[0]} - {x[1]} = {p.answer}."
    if p.kind == "mul":
        q = rng.choice(
            [
                f"{n} has {x[0]} bags with {x[1]} {t} in each bag and {x[2]} more {t}. How many {t} is that?",
                f"There are {x[0]} rows of {x[1]} {t}, and {n} adds {x[2]} {t}. How many {t} are there?",
            ]
        )
        m = x[0] * x[1]
        return q, f"{x[0]} * {x[1]} = {m}, and {m} + {x[2]} = {p.answer}."
    total = x[0] + x[1]
    q = rng.choice(
        [
            f"{n} had {x[0]} {t} and got {x[1]} more. Then {s} lost {x[2]}. How many {t} does {n} have?",
            f"{n} picked {x[0]} {t} and {b.name} picked {x[1]}. They gave away {x[2]}. How many {t} are left?",
        ]
    )
    return q, f"{x[0]} + {x[1]} = {total}, and {total} - {x[2]} = {p.answer}."


# --------------------------------------------------------------------------- chats

CHAT_KINDS = ("meet", "bring", "swap", "sick", "news")


@dataclass(frozen=True)
class Chat:
    kind: str
    turns: tuple[tuple[str, str], ...]  # (speaker, utterance)
    summary: str
    content: str  # what decides the summary (the key); names count, the summary copies them

    def text(self) -> str:
        return "\n".join(f"{who}: {what}" for who, what in self.turns)

    def key(self) -> str:
        return f"{self.kind}|{self.content}"


def make_chat(rng: random.Random, kind: str) -> Chat:
    """A short chat and its one-sentence summary; the summary keeps each *final* decision."""
    a, b = cast(rng, 2)
    A, B = a.name, b.name  # speaker names, as the chat shows them
    day, day2 = rng.sample(DAYS, 2)
    turns: list[tuple[str, str]] = []
    if rng.random() < 0.5:
        turns += [(A, rng.choice([f"Hi {B}!", f"Hey {B}, how are you?", f"Hello {B}."]))]
        turns += [(B, rng.choice(["Hi!", "Fine, thanks. And you?", "Hello!"]))]
    if rng.random() < 0.5:  # small talk naming a place, day and person the summary must not take
        other, place3, day3 = cast(rng, 3)[2].name, rng.choice(PLACES), rng.choice(DAYS)
        turns += [
            (A, f"Did you go to the {place3} on {day3}?"),
            (B, f"Yes, with {other}. It was nice."),
        ]
    if kind == "meet":
        place, place2 = rng.sample(PLACES, 2)
        turns.append((A, f"Shall we meet at the {place} on {day}?"))
        change = rng.randrange(4)  # 0: agreed, 1: other day, 2: other place, 3: both
        if change in (1, 3):
            turns += [(B, f"{day} is bad for me. What about {day2}?"), (A, f"{day2} works.")]
            day = day2
        if change in (2, 3):
            turns += [(B, f"The {place} is closed. Can we go to the {place2}?"), (A, "Sure.")]
            place = place2
        if change == 0:
            turns.append((B, rng.choice(["Great, see you there!", "Perfect.", "Deal!"])))
        summary = f"{A} and {B} will meet at the {place} on {day}."
        content = f"{place}|{day}|{change}"
    elif kind == "bring":
        event, food, food2 = rng.choice(EVENTS), *rng.sample(FOODS, 2)
        turns += [
            (A, f"Are you coming to the {event} on {day}?"),
            (B, "Yes! Shall I bring something?"),
        ]
        turns.append((A, f"Could you bring some {food}?"))
        swapped = rng.random() < 0.5
        if swapped:
            turns += [(B, f"I have no {food}. Can I bring {food2} instead?"), (A, "Yes, fine.")]
            food = food2
        else:
            turns.append((B, rng.choice([f"Of course, I will bring {food}.", "Sure, no problem."])))
        summary = f"{B} will bring {food} to the {event} on {day}."
        content = f"{event}|{food}|{day}|{swapped}"
    elif kind == "swap":
        event, food = rng.choice(EVENTS), rng.choice(FOODS)
        turns.append((A, f"Who drives to the {event} on {day}?"))
        turns.append((B, "I can drive."))
        swapped = rng.random() < 0.5
        if swapped:  # roles change hands: the summary must track who ends up doing what
            turns += [(A, "Your car is in the shop. Let me drive, and you bring the " + food + ".")]
            turns.append((B, "Okay, deal."))
            driver, bringer = A, B
        else:
            turns += [(A, f"Thanks! Then I will bring the {food}."), (B, "Great.")]
            driver, bringer = B, A
        summary = f"{driver} will drive to the {event} on {day} and {bringer} will bring {food}."
        content = f"{event}|{food}|{day}|{swapped}"
    elif kind == "sick":
        event, reason = rng.choice(EVENTS), rng.choice(REASONS)
        turns += [
            (A, f"Sorry, I cannot come to the {event} on {day}."),
            (B, "Oh no, what happened?"),
        ]
        turns += [(A, f"I have {reason}."), (B, rng.choice(["Get well soon!", "Take care."]))]
        summary = f"{A} cannot come to the {event} on {day} because of {reason}."
        content = f"{event}|{day}|{reason}"
    elif kind == "news":
        pet, pname = rng.choice(list(PETS)), rng.choice(PET_NAMES)
        turns += [(A, f"Guess what? I got {article(pet)} {pet}!")]
        turns += [(B, rng.choice(["Wow! What is its name?", "Really? What is it called?"]))]
        turns += [(A, f"Its name is {pname}."), (B, rng.choice(["Cute!", "I want to see it!"]))]
        summary = f"{A} got {article(pet)} {pet} called {pname}."
        content = f"{pet}|{pname}"
    else:
        raise ValueError(f"unknown chat kind {kind!r}")
    return Chat(kind, tuple(turns), summary, f"{A}|{B}|{content}")
