"""The four tasks of the default demo family, made of skills and split by group.

Same names, kinds and row formats as the legacy tasks (:mod:`compatlm.demo.tasks`), different
content: every row tests one *skill* (its ``slice``) on a freshly drawn situation from
:mod:`compatlm.demo.skills`, answerable from the row's own text plus tables shared by all splits.

- ``demo_hellaswag`` (4 endings): ``count`` (n rows of m things plus some, worked out; endings
  differ in the product), ``total`` (a sum, likewise), ``moves`` (where a thing is after it was
  moved), ``plans`` (where a once or twice re-planned outing went; wrong endings name places the
  story mentions);
- ``demo_piqa`` (2 solutions): ``crate`` (room for n bags of m things plus some), ``change``
  (money back), ``where`` (where to look for a thing that may have been moved), ``plan`` (where
  to find two people whose outing was re-planned);
- ``demo_gsm8k``: ``add``, ``sub``, ``mul`` (rows of n, plus some), ``two_step`` word problems;
- ``demo_samsum``: chats whose summary keeps the final decision (``meet``, ``bring``, ``swap``),
  or restates a reason or a name (``sick``, ``news``).

Each row carries a ``group``: the slice plus a hash of the instance's key (the content that
decides the answer, without names or wording where those do not matter). Splits are disjoint by
group, a pure function of ``(seed, task, key)``; validation and test hold one row per group, so
their instances are independent units for paired statistics.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from typing import Any

from compatlm.demo import skills as sk
from compatlm.demo.skill_corpus import plan_setup, stash_setup
from compatlm.demo.tasks import SPLITS, corpus_units
from compatlm.errors import CompatlmError

# Share of each task's group universe per split (train, validation, test).
GROUP_FRACTIONS = (0.5, 0.25, 0.25)
MAX_PER_GROUP = {"train": 2, "validation": 1, "test": 1}
SLICES: dict[str, tuple[str, ...]] = {
    "demo_hellaswag": ("count", "total", "moves", "plans"),
    "demo_piqa": ("crate", "change", "where", "plan"),
    "demo_gsm8k": sk.MATH_KINDS,
    "demo_samsum": sk.CHAT_KINDS,
}

Row = dict[str, Any]
# (rng, slice) -> (group key, row without id/group/slice), or None for an unusable draw
Gen = Callable[[random.Random, str], tuple[str, Row] | None]


def group_split(seed: int, task: str, key: str) -> str:
    """The split a group belongs to: a pure function of (seed, task, key)."""
    u = random.Random(f"group-split:{seed}:{task}:{key}").random()
    if u < GROUP_FRACTIONS[0]:
        return "train"
    return "validation" if u < GROUP_FRACTIONS[0] + GROUP_FRACTIONS[1] else "test"


def group_id(slice_: str, key: str) -> str:
    return f"{slice_}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _mc(rng: random.Random, context: str, right: str, wrong: list[str]) -> Row:
    choices = [right, *wrong]
    rng.shuffle(choices)
    return {"context": context, "choices": choices, "label": choices.index(right)}


def _four(right: str, mentioned: list[str], pool: list[str], rng: random.Random) -> list[str]:
    """Three distractors: things the text mentions first, then other values of the same kind."""
    wrong = [m for m in dict.fromkeys(mentioned) if m != right]
    rng.shuffle(wrong)
    extra = [p for p in pool if p != right and p not in wrong]
    return (wrong + rng.sample(extra, len(extra)))[:3]


def _near(rng: random.Random, right: int, k: int, steps: list[int]) -> list[int]:
    """``k`` distinct positive wrong numbers at ``right`` ± one of ``steps`` (plausible slips)."""
    cands = [right + d for s in steps for d in (s, -s) if right + d > 0 and d != 0]
    out = list(dict.fromkeys(rng.sample(cands, len(cands))))
    return [v for v in out if v != right][:k]


def _text(rng: random.Random, sentences: list[str]) -> str:
    return " ".join(sentences)


def _hellaswag(rng: random.Random, slice_: str) -> tuple[str, Row] | None:
    if slice_ in ("stash", "moves"):
        # Which container to open for a thing: four things put away (stash), or three and one
        # of them moved later (moves; its first container is among the wrong endings).
        moved = slice_ == "moves"
        st = sk.make_stash(rng, 3 if moved else 4, 1 if moved else 0)
        n, s = st.agent.name, st.agent.subj.capitalize()
        item = st.moves[-1][0] if moved else rng.choice(st.placed)[0]
        right = st.where(item)
        mentioned = [st.moves[-1][1]] if moved else []
        pool = [f"{c} {b}" for c in sk.COLOURS for b in sk.CONTAINERS]
        wrong = _four(right, [*mentioned, *st.containers()], pool, rng)
        ctx = f"{_text(rng, stash_setup(rng, st))} Later, {n} needed the {item}."
        row = _mc(rng, ctx, f" {s} opened the {right}.", [f" {s} opened the {w}." for w in wrong])
        return st.key(item), row
    if slice_ == "count":
        # n rows of m things plus some: the endings differ only in the product (a multiplication
        # fact), each chain adding up consistently after it.
        p = sk.make_problem(rng, "mul")
        (a, b, c), who, t = p.numbers, p.people[0].name, p.thing
        ctx = rng.choice(
            [
                f"{who} packed {a} bags with {b} {t} in each and kept {c} more {t} aside.",
                f"{who} set out {a} rows of {b} {t}, then added {c} more {t}.",
            ]
        )
        prods = [a * b, *_near(rng, a * b, 3, [a, b, 1, 2])]
        ends = [f" That makes {a} * {b} = {m}, and {m} + {c} = {m + c} {t}." for m in prods]
        return p.key(), _mc(rng, ctx, ends[0], ends[1:])
    if slice_ == "total":
        # Addition in a story; the endings differ in the sum.
        p = sk.make_problem(rng, "add")
        (x, y), (a, b), t = p.numbers, p.people, p.thing
        ctx = rng.choice(
            [
                f"{a.name} had {x} {t}. Then {b.name} gave {a.obj} {y} more {t}.",
                f"{a.name} found {x} {t} in the morning and {y} {t} in the evening.",
            ]
        )
        sums = [p.answer, *_near(rng, p.answer, 3, [1, 2, 10])]
        ends = [f" So {a.name} had {x} + {y} = {v} {t}." for v in sums]
        return p.key(), _mc(rng, ctx, ends[0], ends[1:])
    if slice_ == "plans":
        pl = sk.make_plan(rng)
        wrong = _four(pl.final, [*pl.places, pl.rejected], sk.PLACES, rng)
        ctx = _text(rng, plan_setup(rng, pl))
        end = f" On {pl.day}, they went to the "
        row = _mc(rng, ctx, f"{end}{pl.final}.", [f"{end}{w}." for w in wrong])
        return pl.key(), row
    raise ValueError(slice_)


def _piqa(rng: random.Random, slice_: str) -> tuple[str, Row] | None:
    if slice_ == "where":
        st = sk.make_stash(rng, rng.randint(2, 3), rng.choice((0, 1, 1)))
        item = st.moves[-1][0] if st.moves else rng.choice(st.placed)[0]
        right = st.where(item)
        others = [st.moves[-1][1]] if st.moves else [c for c in st.containers() if c != right]
        ctx = f"{_text(rng, stash_setup(rng, st))}\nGoal: Find the {item}.\nSolution:"
        return st.key(item), _mc(
            rng, ctx, f" Look in the {right}.", [f" Look in the {rng.choice(others)}."]
        )
    if slice_ == "crate":
        # How much room a crate needs: the solutions differ in the product.
        p = sk.make_problem(rng, "mul")
        (a, b, c), t = p.numbers, p.thing
        ctx = f"Goal: Pack {a} bags of {b} {t} and {c} loose {t} into one crate.\nSolution:"
        prods = [a * b, *_near(rng, a * b, 1, [a, b])]
        sols = [f" Make room for {a} * {b} = {m}, and {m} + {c} = {m + c} {t}." for m in prods]
        return p.key(), _mc(rng, ctx, sols[0], sols[1:])
    if slice_ == "change":
        # Change to expect: the solutions differ in the difference.
        p = sk.make_problem(rng, "sub")
        (x, y), t = p.numbers, p.thing
        ctx = f"Goal: Pay {y} coins for some {t} with {x} coins.\nSolution:"
        diffs = [p.answer, *_near(rng, p.answer, 1, [10])]  # a slip in the tens
        sols = [f" Expect {x} - {y} = {d} coins back." for d in diffs]
        return p.key(), _mc(rng, ctx, sols[0], sols[1:])
    if slice_ == "plan":
        pl = sk.make_plan(rng)
        (a, b), other = pl.people, rng.choice([*pl.places[:-1], pl.rejected])
        ctx = f"{_text(rng, plan_setup(rng, pl))}\nGoal: Meet {a.name} and {b.name} on {pl.day}.\nSolution:"
        return pl.key(), _mc(rng, ctx, f" Go to the {pl.final}.", [f" Go to the {other}."])
    raise ValueError(slice_)


def _gsm8k(seen_questions: set[str]) -> Gen:
    def gen(rng: random.Random, slice_: str) -> tuple[str, Row] | None:
        p = sk.make_problem(rng, slice_)
        q, worked = sk.problem_text(p, rng)
        if q in seen_questions:  # never verbatim in a pre-training corpus
            return None
        return p.key(), {
            "prompt": f"Question: {q}\nAnswer:",
            "reference": f"{worked}\n#### {p.answer}",
        }

    return gen


def _samsum(seen_dialogues: set[str]) -> Gen:
    def gen(rng: random.Random, slice_: str) -> tuple[str, Row] | None:
        chat = sk.make_chat(rng, slice_)
        if chat.text() in seen_dialogues:
            return None
        return chat.key(), {
            "prompt": f"Dialogue:\n{chat.text()}\nSummary:",
            "reference": chat.summary,
        }

    return gen


def _quotas(size: int, slices: tuple[str, ...]) -> dict[str, int]:
    """Rows per slice in a split of ``size`` rows: as equal as the division allows."""
    q, r = divmod(size, len(slices))
    return {s: q + (i < r) for i, s in enumerate(slices)}


def _fill(
    rng: random.Random, seed: int, task: str, sizes: dict[str, int], gen: Gen
) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {s: [] for s in SPLITS}
    slices = SLICES[task]
    # Equal slice shares in every split: each skill is measured on as many rows as the others.
    left = {split: _quotas(sizes[split], slices) for split in SPLITS}
    per_group: dict[str, int] = {}
    budget = 100 * sum(sizes.values()) + 1000
    for _ in range(budget):
        open_slices = [s for s in slices if any(left[split][s] for split in SPLITS)]
        if not open_slices:
            break
        slice_ = rng.choice(open_slices)
        drawn = gen(rng, slice_)
        if drawn is None:
            continue
        key, row = drawn
        split = group_split(seed, task, f"{slice_}|{key}")
        gid = group_id(slice_, key)
        if not left[split][slice_] or per_group.get(gid, 0) >= MAX_PER_GROUP[split]:
            continue
        per_group[gid] = per_group.get(gid, 0) + 1
        left[split][slice_] -= 1
        out[split].append({**row, "group": gid, "slice": slice_})
    short = [s for s in SPLITS if len(out[s]) < sizes[s]]
    if short:
        raise CompatlmError(
            f"{task}: cannot draw {sizes[short[0]]} {short[0]} rows from distinct groups;"
            " lower task_sizes in the demo recipe"
        )
    for rows in out.values():  # the easiest slices filled first; interleave them again
        rng.shuffle(rows)
    return {
        split: [{"id": f"{task}-{split}-{i:05d}", **row} for i, row in enumerate(rows)]
        for split, rows in out.items()
    }


def make_skill_tasks(
    sizes: dict[str, dict[str, int]], *, seed: int, corpus_docs: Iterable[str] = ()
) -> dict[str, dict[str, list[Row]]]:
    """All four tasks: ``{task: {split: rows}}``; ``sizes[task][split]`` rows each."""
    dialogues, questions = corpus_units(corpus_docs)
    gens: dict[str, Gen] = {
        "demo_hellaswag": _hellaswag,
        "demo_piqa": _piqa,
        "demo_gsm8k": _gsm8k(questions),
        "demo_samsum": _samsum(dialogues),
    }
    return {
        task: _fill(random.Random(f"skill-task:{seed}:{task}"), seed, task, sizes[task], gen)
        for task, gen in gens.items()
    }
