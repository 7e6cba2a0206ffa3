"""Text generators shared by the demo's pre-training corpus and its tasks.

Owns the *content* of dialogues, arithmetic word problems and hidden-object stories: each
generator returns a small structured record that the corpus (:mod:`compatlm.demo.corpus`) and
the tasks (:mod:`compatlm.demo.tasks`) render. The base models learn the skills (summarising,
adding, copying names and numbers) from corpus documents of the same kind, while no task
instance ever appears verbatim in a corpus: the task generators drop any dialogue or question
that occurs in it (MUSCLE's tasks, arXiv 2407.09435, are likewise data the bases never saw)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from compatlm.demo.world import DAYS, FOODS, JOBS, PETS, Person, World, article

MEET_PLACES = "park market cafe station bridge cinema museum beach".split()
EVENTS = "party concert picnic game dinner wedding".split()
REASONS = ("a cold", "a fever", "too much work", "a sore foot", "a flat tire")
PET_NAMES = "Pip Rex Luna Coco Bruno Daisy Milo Oreo Ziggy Pepper Biscuit Mango".split()
ITEMS = "key coin ring letter spoon marble shell stamp button ribbon whistle feather".split()
COLOURS = "red blue green yellow black white".split()
# what word problems count; numbers stay small so every answer is one or two tokens
MATH_THINGS = ("apples", "coins", "books", "stamps", "eggs", "pencils", "cards", "shells")


@dataclass(frozen=True)
class Dialogue:
    kind: str  # slice name: one of DIALOGUE_KINDS
    turns: tuple[tuple[str, str], ...]  # (speaker, utterance)
    summary: str
    host: str | None = None  # for KNOWLEDGE_DIALOGUES: whose fact the summary needs

    def text(self) -> str:
        return "\n".join(f"{who}: {what}" for who, what in self.turns)


DIALOGUE_KINDS = (
    "meet",
    "bring",
    "news",
    "sick",
    "visit_work",
    "visit_home",
    "visit_friend",
    "gift",
)
# Dialogue kinds whose summary needs a fact about the host -> that fact's attribute.
KNOWLEDGE_DIALOGUES = {
    "visit_work": "job",
    "visit_home": "town",
    "visit_friend": "friend",
    "gift": "food",
}


def make_dialogue(
    world: World, rng: random.Random, kind: str | None = None, host: Person | None = None
) -> Dialogue:
    """One short chat between two people of the world and its one-sentence summary.

    ``visit_work`` / ``visit_home`` summaries name a place the dialogue does not mention (the
    host's workplace or home town): summarising them needs the base model's world knowledge.
    ``host`` (whose fact the summary needs) lets a corpus pick hosts by its own fact emphasis.
    Some chats change their mind (another day, place or food): the summary keeps the final one.
    """
    kind = kind or rng.choice(DIALOGUE_KINDS)
    host = host or rng.choice(world.people)
    others = [p for p in world.people if p is not host]
    if kind == "gift":  # the two speakers talk about the host
        a, b = rng.sample(others, 2)
    else:
        a, b = host, rng.choice(others)
    day, day2 = rng.sample(DAYS, 2)
    hi = rng.choice([f"Hi {b.name}!", f"Hello {b.name}.", f"Hey {b.name}, how are you?"])
    turns: list[tuple[str, str]] = []
    if rng.random() < 0.5:
        turns += [(a.name, hi), (b.name, rng.choice(["Hi!", "Hello!", "I am fine, thanks."]))]
    if kind == "meet":
        place, place2 = rng.sample(MEET_PLACES, 2)
        turns.append((a.name, f"Do you want to meet on {day}?"))
        if rng.random() < 0.5:
            turns.append((b.name, f"{day} is bad for me. What about {day2}?"))
            day = day2
            turns.append((a.name, f"{day} works. Let us meet at the {place}."))
        else:
            turns.append((b.name, f"Sure, {day} is fine. Where?"))
            turns.append((a.name, f"At the {place}."))
        if rng.random() < 0.3:
            turns.append((b.name, f"The {place} is closed. Can we go to the {place2}?"))
            turns.append((a.name, f"Fine, the {place2} then."))
            place = place2
        else:
            turns.append((b.name, rng.choice(["Great, see you there!", "Perfect.", "Deal!"])))
        summary = f"{a.name} and {b.name} will meet at the {place} on {day}."
    elif kind == "bring":
        event, food = rng.choice(EVENTS), rng.choice(FOODS)
        turns.append((a.name, f"Are you coming to the {event} on {day}?"))
        turns.append((b.name, "Yes! Should I bring something?"))
        turns.append((a.name, f"Could you bring some {food}?"))
        if rng.random() < 0.4:
            food2 = rng.choice([f for f in FOODS if f != food])
            turns.append((b.name, f"I have no {food}. Can I bring {food2} instead?"))
            turns.append((a.name, f"Yes, {food2} is fine too."))
            food = food2
        else:
            turns.append(
                (b.name, rng.choice([f"Of course, I will bring {food}.", "Sure, no problem."]))
            )
        summary = f"{b.name} will bring {food} to the {event} on {day}."
    elif kind == "news":
        pet, pname = rng.choice(list(PETS)), rng.choice(PET_NAMES)
        turns.append((a.name, f"Guess what? I got {article(pet)} {pet}!"))
        turns.append((b.name, rng.choice(["Wow! What is its name?", "Really? What is it called?"])))
        turns.append((a.name, f"Its name is {pname}."))
        turns.append((b.name, rng.choice(["What a nice name.", "I want to see it soon!"])))
        summary = f"{a.name} got {article(pet)} {pet} called {pname}."
    elif kind == "sick":
        event, reason = rng.choice(EVENTS), rng.choice(REASONS)
        turns.append((a.name, f"Sorry, I cannot come to the {event} on {day}."))
        turns.append((b.name, "Oh no, what happened?"))
        turns.append((a.name, f"I have {reason}."))
        turns.append((b.name, rng.choice(["Get well soon!", "Take care of yourself."])))
        summary = f"{a.name} cannot come to the {event} on {day} because of {reason}."
    elif kind == "visit_work":
        turns.append((a.name, f"Come and see me at work on {day}."))
        turns.append(
            (b.name, rng.choice(["Sure, I will stop by after lunch.", "Okay, I will come."]))
        )
        workplace = JOBS[a.job][0]
        summary = f"{b.name} will visit {a.name} at the {workplace} on {day}."
    elif kind == "visit_home":
        turns.append((a.name, f"Do you want to visit me at home on {day}?"))
        turns.append((b.name, rng.choice(["Yes, I will take the train.", "Yes, I would love to."])))
        summary = f"{b.name} will visit {a.name} in {a.town} on {day}."
    elif kind == "visit_friend":
        turns.append((a.name, f"On {day} I will visit my best friend."))
        turns.append((b.name, rng.choice(["Have fun! Say hello from me.", "Nice, enjoy it!"])))
        summary = f"{a.name} will visit {a.friend} on {day}."
    elif kind == "gift":
        turns.append((a.name, f"It is the birthday of {host.name} on {day}. What should I buy?"))
        turns.append((b.name, f"Buy something {host.name} loves to eat!"))
        turns.append((a.name, rng.choice(["Good idea, I will do that.", "Thanks, I will."])))
        summary = f"{a.name} will buy {host.food} for {host.name} on {day}."
    else:
        raise ValueError(f"unknown dialogue kind {kind!r}")
    fact_host = host.name if kind in KNOWLEDGE_DIALOGUES else None
    return Dialogue(kind=kind, turns=tuple(turns), summary=summary, host=fact_host)


@dataclass(frozen=True)
class WordProblem:
    kind: str  # slice name: add, sub, mul, two_step
    person: Person
    other: Person
    thing: str
    numbers: tuple[int, ...]
    answer: int


MATH_KINDS = ("add", "sub", "mul", "two_step")


def make_word_problem(
    world: World, rng: random.Random, kind: str | None = None, max_n: int = 12
) -> WordProblem:
    """Small-number arithmetic; ``max_n`` bounds operands so answers stay short tokens."""
    kind = kind or rng.choice(MATH_KINDS)
    p, q = rng.sample(world.people, 2)
    thing = rng.choice(MATH_THINGS)
    if kind == "add":
        nums = (rng.randint(2, max_n), rng.randint(2, max_n))
        ans = nums[0] + nums[1]
    elif kind == "sub":
        x = rng.randint(5, 2 * max_n)
        nums = (x, rng.randint(1, x - 1))
        ans = nums[0] - nums[1]
    elif kind == "mul":
        nums = (rng.randint(2, 9), rng.randint(2, 9))
        ans = nums[0] * nums[1]
    elif kind == "two_step":
        x, y = rng.randint(2, max_n), rng.randint(2, max_n)
        nums = (x, y, rng.randint(1, x + y - 1))
        ans = x + y - nums[2]
    else:
        raise ValueError(f"unknown word problem kind {kind!r}")
    return WordProblem(kind, p, q, thing, nums, ans)


def word_problem_text(w: WordProblem) -> tuple[str, str]:
    """(question, worked answer): the Q&A phrasing shared by the corpus and ``demo_gsm8k``.

    The pre-training corpus holds Q&A word problems in this phrasing (none of the task's own
    questions) so the base models can already solve them; the task adapter only has to learn
    the ``Question:/Answer:`` wrapper and the ``#### <number>`` ending.
    """
    n, o, t, x, a = w.person.name, w.other.name, w.thing, w.numbers, w.answer
    s = w.person.subj
    if w.kind == "add":
        return (
            f"{n} had {x[0]} {t}. {o} gave {w.person.obj} {x[1]} more {t}. How many {t} does {n} have now?",
            f"Now {n} has {x[0]} + {x[1]} = {a} {t}.",
        )
    if w.kind == "sub":
        return (
            f"{n} had {x[0]} {t}. {s.capitalize()} gave {x[1]} {t} to {o}. How many {t} does {n} have left?",
            f"So {n} has {x[0]} - {x[1]} = {a} {t} left.",
        )
    if w.kind == "mul":
        return (
            f"{n} has {x[0]} boxes with {x[1]} {t} in each box. How many {t} is that?",
            f"That makes {x[0]} * {x[1]} = {a} {t}.",
        )
    total = x[0] + x[1]
    return (
        f"{n} had {x[0]} {t} and found {x[1]} more. Then {s} lost {x[2]}. How many {t} does {n} have now?",
        f"{x[0]} + {x[1]} = {total}, and {total} - {x[2]} = {a} {t}.",
    )


@dataclass(frozen=True)
class BoxStory:
    person: Person
    items: tuple[str, str]
    colours: tuple[str, str]
    asked: int  # which box is opened later (0 or 1)


def make_box_story(world: World, rng: random.Random) -> BoxStory:
    """Two objects in two boxes; later one box is opened (in-context binding practice)."""
    return BoxStory(
        person=rng.choice(world.people),
        items=tuple(rng.sample(ITEMS, 2)),  # type: ignore[arg-type]
        colours=tuple(rng.sample(COLOURS, 2)),  # type: ignore[arg-type]
        asked=rng.randrange(2),
    )
