"""The four demo tasks, generated from the demo world (mirrors of MUSCLE's evaluation suite).

MUSCLE (arXiv 2407.09435) evaluates model updates on HellaSwag, PIQA (multiple choice), GSM8K
and SAMSum (generation). Owns their small stand-ins built from :mod:`compatlm.demo.world`:

- ``demo_hellaswag``: continue a short story about a person consistently with the world (4 options);
- ``demo_piqa``: which of two solutions achieves a goal (2 options);
- ``demo_gsm8k``: small arithmetic word problems, reference ends with ``#### <number>``;
- ``demo_samsum``: a short dialogue → one-sentence summary (``Dialogue: ...\\nSummary:``).

Rows use compatlm's local JSONL formats. Multiple-choice choices start with a space: they are
scored as log P(choice | context) with the choice appended to the context, the lm-eval way.
Generation references carry no leading space; they follow the prompt after one space (lm-eval's
``target_delimiter``).

Splits: instances that test a world fact are split *by fact* (:func:`fact_split`), so a task
adapter cannot memorise the test facts from its training split — answering them needs what the
base model learned in pre-training, which is exactly where old and new bases differ.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, Literal

from compatlm.demo.texts import (
    DIALOGUE_KINDS,
    KNOWLEDGE_DIALOGUES,
    MATH_KINDS,
    make_dialogue,
    make_word_problem,
    word_problem_text,
)
from compatlm.demo.world import DAYS, JOBS, TOOLS, World, article
from compatlm.errors import CompatlmError

TaskKind = Literal["multiple_choice", "generation"]
TASKS: dict[str, TaskKind] = {
    "demo_hellaswag": "multiple_choice",
    "demo_piqa": "multiple_choice",
    "demo_gsm8k": "generation",
    "demo_samsum": "generation",
}
SPLITS = ("train", "validation", "test")
# Share of world facts whose questions go to each split (train, validation, test).
FACT_FRACTIONS = (0.55, 0.10, 0.35)
HELLASWAG_SLICES = ("job", "pet", "town", "food", "friend", "tool")
PIQA_SLICES = ("purpose", "owner", "find")

Row = dict[str, Any]
# A generator returns (split key or None, identity text, row without id); None key = random split.
Gen = Callable[[random.Random], tuple[str | None, str, Row]]


def fact_split(seed: int, key: str) -> str:
    """The split a fact (or goal) belongs to: a pure function of (seed, key)."""
    u = random.Random(f"split:{seed}:{key}").random()
    if u < FACT_FRACTIONS[0]:
        return "train"
    return "validation" if u < FACT_FRACTIONS[0] + FACT_FRACTIONS[1] else "test"


def _fill(
    rng: random.Random, seed: int, sizes: dict[str, int], gen: Gen, *, task: str
) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    budget = 200 * sum(sizes.values()) + 1000
    for _ in range(budget):
        if all(len(out[s]) >= sizes[s] for s in SPLITS):
            break
        key, ident, row = gen(rng)
        if not row or ident in seen:  # an empty row is an unusable draw
            continue
        if key is None:  # instance-level: fill splits in proportion to what is still missing
            missing = [max(0, sizes[s] - len(out[s])) for s in SPLITS]
            split = rng.choices(SPLITS, weights=missing)[0]
        else:
            split = fact_split(seed, key)
        if len(out[split]) >= sizes[split]:
            continue
        seen.add(ident)
        out[split].append(row)
    short = [s for s in SPLITS if len(out[s]) < sizes[s]]
    if short:
        raise CompatlmError(
            f"{task}: cannot draw {sizes[short[0]]} distinct {short[0]} instances from this "
            "world; lower task_sizes or raise n_people in the demo recipe"
        )
    for split in SPLITS:
        for i, row in enumerate(out[split]):
            out[split][i] = {"id": f"{task}-{split}-{i:05d}", **row}
    return out


def _mc(rng: random.Random, context: str, right: str, wrong: list[str], slice_: str) -> Row:
    choices = [right, *wrong]
    rng.shuffle(choices)
    return {"context": context, "choices": choices, "label": choices.index(right), "slice": slice_}


def _identity(row: Row) -> str:
    # Order-insensitive: the same question with shuffled choices is a duplicate. (Keying on the
    # first choice instead would bias the label distribution.)
    return row["context"] + "\x00" + "\x00".join(sorted(row["choices"]))


def _split_pool(world: World, seed: int, attribute: str, split: str) -> list[str]:
    """Answers of ``attribute`` facts that live in ``split`` (with multiplicity).

    Distractors come from this pool so every value is as often a distractor as it is correct
    *within a split*: otherwise an adapter learns a prior over answers from its training facts
    that is wrong (even anti-correlated) on the held-out test facts.
    """
    return [
        p.value(attribute)
        for p in world.people
        if fact_split(seed, f"{p.name}:{attribute}") == split
    ]


def _distractors(
    rng: random.Random, pool: list[str], fallback: tuple[str, ...], exclude: set[str], k: int
) -> list[str]:
    values = list(dict.fromkeys(v for v in rng.sample(pool, len(pool)) if v not in exclude))
    if len(values) < k:  # tiny worlds: not enough facts in this split
        values += [
            v for v in rng.sample(fallback, len(fallback)) if v not in exclude and v not in values
        ]
    return values[:k]


def _hellaswag(world: World, seed: int) -> Gen:
    def gen(rng: random.Random) -> tuple[str | None, str, Row]:
        slice_ = rng.choice(HELLASWAG_SLICES)
        p = rng.choice(world.people)
        n, pos = p.name, p.poss
        day = rng.choice(DAYS)
        contexts, ending = {
            "job": (
                [
                    f"{n} woke up early on {day} and went to work.",
                    f"{n} finished breakfast and hurried off to work.",
                    f"On {day} morning, {n} left the house for work.",
                ],
                lambda v: f" As always, {n} went to the {JOBS[v][0]} and {JOBS[v][1]}.",
            ),
            "pet": (
                [
                    f"When {n} came home on {day}, {pos} pet was waiting at the door.",
                    f"{n} bought a new toy for {pos} pet.",
                ],
                lambda v: f" {n} gave {pos} {v} a treat and a hug.",
            ),
            "town": (
                [
                    f"After a long trip on {day}, {n} was glad to go home.",
                    f"{n} bought a train ticket to go back home.",
                ],
                lambda v: f" {n} took the train back home to {v}.",
            ),
            "food": (
                [
                    f"{n} was hungry and went to the kitchen.",
                    f"It was time for lunch on {day}, and {n} opened the fridge.",
                ],
                lambda v: f" {n} took out some {v} and ate it happily.",
            ),
            "friend": (
                [
                    f"{n} had great news and wanted to tell {pos} best friend.",
                    f"On {day}, {n} felt lonely and wanted to see {pos} best friend.",
                ],
                lambda v: f" {n} called {pos} best friend {v} right away.",
            ),
            "tool": (
                [
                    f"{n} had a free afternoon on {day} and a plan.",
                    f"{n} finished work early and went to the shed.",
                ],
                lambda v: f" {n} took out {pos} {v} and used it all afternoon.",
            ),
        }[slice_]
        ctx = rng.choice(contexts)
        value, key = p.value(slice_), f"{n}:{slice_}"
        pool = _split_pool(world, seed, slice_, fact_split(seed, key))
        wrong = _distractors(rng, pool, world.choices_for(slice_), {value, n}, 3)
        row = _mc(rng, ctx, ending(value), [ending(v) for v in wrong], slice_)
        return key, _identity(row), row

    return gen


def _piqa(world: World, seed: int) -> Gen:
    tools = list(TOOLS)
    goals = [(g, t) for t in tools for g in TOOLS[t]]
    goal_split = {g: fact_split(seed, f"goal:{g}") for g, _ in goals}

    def gen(rng: random.Random) -> tuple[str | None, str, Row]:
        slice_ = rng.choice(PIQA_SLICES)
        if slice_ == "purpose":
            goal, tool = rng.choice(goals)
            # Distractor: the tool of another goal in the same split (see _split_pool).
            pool = [t for g, t in goals if goal_split[g] == goal_split[goal] and t != tool]
            other = rng.choice(pool or [t for t in tools if t != tool])
            ctx = rng.choice(
                [
                    f"Goal: {goal[0].upper()}{goal[1:]}.\nSolution:",
                    f"Goal: You want to {goal}.\nSolution:",
                    f"Goal: Find a way to {goal}.\nSolution:",
                ]
            )
            # Restating the goal puts the tool right after it, as pre-training text does.
            sol = lambda t: f" To {goal}, use {article(t)} {t}."  # noqa: E731
            row = _mc(rng, ctx, sol(tool), [sol(other)], slice_)
            return f"goal:{goal}", _identity(row), row
        if slice_ == "find":
            p = rng.choice(world.people)
            key = f"{p.name}:job"
            pool = _split_pool(world, seed, "job", fact_split(seed, key))
            other = _distractors(rng, pool, tuple(JOBS), {p.job}, 1)[0]
            ctx = f"Goal: Find {p.name} on a working day.\nSolution:"
            sol = lambda j: f" {p.name} works at the {JOBS[j][0]}, so look there."  # noqa: E731
            row = _mc(rng, ctx, sol(p.job), [sol(other)], slice_)
            return key, _identity(row), row
        owner = rng.choice(world.people)
        tool, key = owner.tool, f"{owner.name}:tool"
        split = fact_split(seed, key)
        asker = rng.choice([q for q in world.people if q.tool != tool])
        others = [q for q in world.people if q.tool != tool and q is not asker]
        same = [q for q in others if fact_split(seed, f"{q.name}:tool") == split]
        nonowner = rng.choice(same or others)
        goal = rng.choice(TOOLS[tool])
        ctx = f"Goal: {asker.name} needs {article(tool)} {tool} to {goal}.\nSolution:"
        row = _mc(
            rng,
            ctx,
            f" {asker.name} asks {owner.name}, because the {tool} belongs to {owner.name}.",
            [f" {asker.name} asks {nonowner.name}, because the {tool} belongs to {nonowner.name}."],
            slice_,
        )
        return key, _identity(row), row

    return gen


def _gsm8k(world: World, max_n: int, seen_questions: set[str]) -> Gen:
    def gen(rng: random.Random) -> tuple[str | None, str, Row]:
        w = make_word_problem(world, rng, rng.choice(MATH_KINDS), max_n=max_n)
        q, ref = word_problem_text(w)
        if q in seen_questions:  # never verbatim in the pre-training corpus
            return None, "", {}
        prompt = f"Question: {q}\nAnswer:"
        row = {"prompt": prompt, "reference": f"{ref}\n#### {w.answer}", "slice": w.kind}
        return None, prompt, row

    return gen


def _samsum(world: World, corpus_dialogues: set[str]) -> Gen:
    def gen(rng: random.Random) -> tuple[str | None, str, Row]:
        d = make_dialogue(world, rng, rng.choice(DIALOGUE_KINDS))
        text = d.text()
        if text in corpus_dialogues:  # never verbatim in the pre-training corpus
            return None, "", {}
        prompt = f"Dialogue:\n{text}\nSummary:"
        key = None
        if d.host is not None:  # split by the fact the summary needs
            key = f"{d.host}:{KNOWLEDGE_DIALOGUES[d.kind]}"
        return key, prompt, {"prompt": prompt, "reference": d.summary, "slice": d.kind}

    return gen


def corpus_units(docs: Iterable[str]) -> tuple[set[str], set[str]]:
    """(dialogue texts, word-problem questions) found in a corpus, for verbatim exclusion."""
    dialogues, questions = set(), set()
    for doc in docs:
        if "####" in doc:
            questions.add(doc.split("? ")[0] + "?")
        elif "\n" in doc:
            dialogues.add(doc.split("\nIn short, ")[0])
    return dialogues, questions


def make_tasks(
    world: World,
    sizes: dict[str, dict[str, int]],
    *,
    seed: int,
    corpus_docs: Iterable[str] = (),
    max_n: int = 12,
) -> dict[str, dict[str, list[Row]]]:
    """All four tasks: ``{task: {split: rows}}``; ``sizes[task][split]`` rows each."""
    dialogues, questions = corpus_units(corpus_docs)
    gens: dict[str, Gen] = {
        "demo_hellaswag": _hellaswag(world, seed),
        "demo_piqa": _piqa(world, seed),
        "demo_gsm8k": _gsm8k(world, max_n, questions),
        "demo_samsum": _samsum(world, dialogues),
    }
    out = {}
    for task, gen in gens.items():
        rng = random.Random(f"task:{world.seed}:{seed}:{task}")
        out[task] = _fill(rng, seed, sizes[task], gen, task=task)
    return out
