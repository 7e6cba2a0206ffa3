"""The demo's procedurally generated world: people, towns, pets, tools and who relates to whom.

Owns the *facts* every other demo module talks about. A :class:`World` is a pure function of
``(seed, n_people, n_towns)``: it draws from its own ``random.Random`` and never touches the
global RNG, so the same seed always yields the same world on every machine.

Why facts carry *weights*: the paper's model updates (Llama 1 → 2, Phi 1.5 → 2; MUSCLE,
arXiv 2407.09435) change the pre-training data, so the new base knows some things the old one
knew better. :func:`fact_weights` gives each pre-training corpus ("view") its own long-tailed
emphasis over the same facts; old and new views are only partly correlated, which is what makes
the demo's negative flips realistic rather than noise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from compatlm.errors import CompatlmError

# Hand-written vocab (no third-party text). Names carry a pronoun so stories stay consistent.
FEMALE_NAMES = (
    "Anna Maria Clara Emma Lucy Nora Ella Rosa Mia Lena Ida Sara Julia Alice Grace Hannah "
    "Laura Olivia Vera Zoe Ruth Eva Iris Paula Tina Wendy Helen Kate Molly Nina"
).split()
MALE_NAMES = (
    "Tom Ben Sam Leo Max Jack Paul Hugo Oscar Felix Noah Adam Peter Carl David Ethan Frank "
    "George Henry Ivan Jonas Karl Liam Mark Nick Owen Ralph Simon Victor Walter"
).split()
TOWN_PREFIXES = "Oak River Stone Green Mill Fox Ash Red Hill Lake Elm Wolf".split()
TOWN_SUFFIXES = "vale ton bridge field ford wood port by".split()

# job -> (workplace, what one does there, past tense; used by stories and story endings)
JOBS: dict[str, tuple[str, str]] = {
    "baker": ("bakery", "baked fresh bread"),
    "teacher": ("school", "taught the children to read"),
    "doctor": ("hospital", "took care of the sick"),
    "farmer": ("farm", "fed the cows and the hens"),
    "fisher": ("harbor", "caught fish in the cold sea"),
    "mechanic": ("garage", "repaired an old truck"),
    "librarian": ("library", "sorted the new books"),
    "cook": ("restaurant", "made soup for the guests"),
    "painter": ("studio", "painted a large picture"),
    "gardener": ("park", "planted new flowers"),
    "tailor": ("shop", "sewed a warm coat"),
    "carpenter": ("workshop", "built a wooden table"),
}
# pet -> what the pet does (stories) ; article is always "a"/"an" by first letter
PETS: dict[str, str] = {
    "cat": "sleeps on the sofa",
    "dog": "barks at the mailman",
    "parrot": "sings in the morning",
    "rabbit": "eats carrots in the garden",
    "turtle": "walks very slowly",
    "goat": "chews on everything",
    "horse": "runs in the field",
    "hamster": "runs in its wheel",
    "goldfish": "swims in a round bowl",
    "pony": "loves sugar cubes",
}
FOODS = "apples bread soup cheese fish rice cake pears plums carrots eggs honey".split()
# tool -> goals it serves (PIQA-style "how do I ..." knowledge; fixed common sense)
TOOLS: dict[str, tuple[str, ...]] = {
    "ladder": ("clean the high windows", "pick apples from a tall tree", "fix the roof"),
    "boat": ("cross the lake", "visit the small island", "fish in the middle of the lake"),
    "tent": ("sleep in the forest", "camp by the river", "stay the night on the mountain"),
    "drill": ("make a hole in the wall", "hang a heavy shelf", "build a bird house"),
    "wheelbarrow": ("move a pile of stones", "carry soil to the garden", "take away old leaves"),
    "telescope": ("look at the stars", "watch ships far away", "see the moon up close"),
    "saw": ("cut a thick branch", "cut planks for a fence", "make firewood"),
    "sewing machine": ("mend a torn coat", "make new curtains", "sew a dress"),
    "bicycle": ("get to the next town quickly", "ride along the river", "deliver letters"),
    "camera": ("take a picture of the wedding", "film the school play", "photograph birds"),
    "piano": ("play music at the party", "practice a new song", "teach a music lesson"),
    "lawn mower": ("cut the tall grass", "tidy the big lawn", "trim the football field"),
}
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
ATTRIBUTES = ("job", "town", "pet", "food", "friend", "tool")


@dataclass(frozen=True)
class Person:
    name: str
    female: bool
    job: str
    town: str
    pet: str
    food: str
    friend: str
    tool: str

    @property
    def subj(self) -> str:
        return "she" if self.female else "he"

    @property
    def poss(self) -> str:
        return "her" if self.female else "his"

    @property
    def obj(self) -> str:
        return "her" if self.female else "him"

    def value(self, attribute: str) -> str:
        return str(getattr(self, attribute))


@dataclass(frozen=True)
class World:
    seed: int
    people: tuple[Person, ...]
    towns: tuple[str, ...]

    def person(self, name: str) -> Person:
        for p in self.people:
            if p.name == name:
                return p
        raise KeyError(name)

    def facts(self) -> list[tuple[str, str]]:
        """Every (person name, attribute) pair, in a fixed order."""
        return [(p.name, a) for p in self.people for a in ATTRIBUTES]

    def choices_for(self, attribute: str) -> tuple[str, ...]:
        """All values an attribute can take (distractors are drawn from these)."""
        return {
            "job": tuple(JOBS),
            "town": self.towns,
            "pet": tuple(PETS),
            "food": tuple(FOODS),
            "friend": tuple(p.name for p in self.people),
            "tool": tuple(TOOLS),
        }[attribute]


def make_world(seed: int, n_people: int = 40, n_towns: int = 8) -> World:
    """Draw a world. Attributes are spread evenly (each job/pet/... used about equally often)
    so a task's majority-class baseline stays near chance."""
    if not 4 <= n_people <= len(FEMALE_NAMES) + len(MALE_NAMES):
        raise CompatlmError(
            f"demo recipe: n_people must be in 4..{len(FEMALE_NAMES) + len(MALE_NAMES)}, "
            f"found {n_people}"
        )
    max_towns = len(TOWN_PREFIXES) * len(TOWN_SUFFIXES)
    if not 1 <= n_towns <= max_towns:
        raise CompatlmError(f"demo recipe: n_towns must be in 1..{max_towns}, found {n_towns}")
    rng = random.Random(f"world:{seed}")
    n_f = n_people // 2
    names = [(n, True) for n in rng.sample(FEMALE_NAMES, n_f)]
    names += [(n, False) for n in rng.sample(MALE_NAMES, n_people - n_f)]
    rng.shuffle(names)
    towns = rng.sample([p + s for p in TOWN_PREFIXES for s in TOWN_SUFFIXES], n_towns)

    def balanced(values: list[str] | tuple[str, ...]) -> list[str]:
        out = [values[i % len(values)] for i in range(n_people)]
        rng.shuffle(out)
        return out

    jobs, homes = balanced(list(JOBS)), balanced(towns)
    pets, foods, tools = balanced(list(PETS)), balanced(FOODS), balanced(list(TOOLS))
    # Best friends come in pairs (symmetric), so no story contradicts another.
    order = list(range(n_people))
    rng.shuffle(order)
    friend = [0] * n_people
    for i in range(0, n_people - 1, 2):
        a, b = order[i], order[i + 1]
        friend[a], friend[b] = b, a
    if n_people % 2:  # odd one out befriends the first pair's first member (one-way)
        friend[order[-1]] = order[0]
    people = tuple(
        Person(
            name=n,
            female=f,
            job=jobs[i],
            town=homes[i],
            pet=pets[i],
            food=foods[i],
            friend=names[friend[i]][0],
            tool=tools[i],
        )
        for i, (n, f) in enumerate(names)
    )
    return World(seed=seed, people=people, towns=tuple(towns))


def fact_weights(
    world: World, view_seed: int, *, correlation: float, exponent: float
) -> dict[tuple[str, str], float]:
    """Long-tailed sampling weights over facts for one pre-training corpus.

    Rank r (0 = most mentioned) gets weight ``1 / (r + 3) ** exponent``. The ranking mixes a
    world-level "popularity" score (shared by all views) with a view-specific one:
    ``correlation=1`` → every view emphasises the same facts, ``0`` → independent emphasis.
    """
    shared = random.Random(f"popularity:{world.seed}")
    own = random.Random(f"view:{world.seed}:{view_seed}")
    facts = world.facts()
    score = {f: correlation * shared.random() + (1.0 - correlation) * own.random() for f in facts}
    ranked = sorted(facts, key=lambda f: -score[f])
    return {f: 1.0 / (r + 3) ** exponent for r, f in enumerate(ranked)}


def goal_weights(
    world: World, view_seed: int, *, correlation: float, exponent: float
) -> dict[tuple[str, str], float]:
    """Like :func:`fact_weights`, over (goal, tool) common-sense pairs instead of people."""
    shared = random.Random(f"goal-popularity:{world.seed}")
    own = random.Random(f"goal-view:{world.seed}:{view_seed}")
    pairs = [(g, t) for t, goals in TOOLS.items() for g in goals]
    score = {
        pair: correlation * shared.random() + (1.0 - correlation) * own.random() for pair in pairs
    }
    ranked = sorted(pairs, key=lambda pair: -score[pair])
    return {pair: 1.0 / (r + 3) ** exponent for r, pair in enumerate(ranked)}


def article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"
