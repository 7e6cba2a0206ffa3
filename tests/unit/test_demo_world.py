"""The demo generators — legacy world/corpus/tasks and the default skills family: determinism,
schema, split hygiene (by fact, by group), right labels, no leakage."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from compatlm.demo.corpus import CorpusView, make_corpus
from compatlm.demo.skill_corpus import DOC_KINDS, SkillView, make_skill_corpus
from compatlm.demo.skill_tasks import SLICES, group_split, make_skill_tasks
from compatlm.demo.tasks import (
    SPLITS,
    TASKS,
    _split_pool,
    corpus_units,
    fact_split,
    make_tasks,
)
from compatlm.demo.texts import make_dialogue, make_word_problem, word_problem_text
from compatlm.demo.world import JOBS, TOOLS, fact_weights, make_world
from compatlm.errors import CompatlmError

MIX = (0.3, 0.05, 0.3, 0.2, 0.1, 0.05)
SIZES = {"train": 60, "validation": 20, "test": 60}


def _view(seed: int, n_docs: int = 1500) -> CorpusView:
    return CorpusView(seed=seed, n_docs=n_docs, mix=MIX, summary_rate=0.8, max_n=12)


@pytest.fixture(scope="module")
def world():
    return make_world(7, n_people=40)


@pytest.fixture(scope="module")
def corpus(world):
    return make_corpus(world, _view(1)) + make_corpus(world, _view(2))


@pytest.fixture(scope="module")
def tasks(world, corpus):
    return make_tasks(world, {t: SIZES for t in TASKS}, seed=3, corpus_docs=corpus, max_n=12)


def test_world_is_a_pure_function_of_its_seed():
    state = random.getstate()
    a, b, c = make_world(7), make_world(7), make_world(8)
    assert random.getstate() == state  # never touches the global RNG
    assert a == b
    assert a != c


def test_world_size_out_of_range_is_a_user_error():
    with pytest.raises(CompatlmError, match="n_people must be in 4..60, found 3"):
        make_world(0, n_people=3)
    with pytest.raises(CompatlmError, match="n_towns"):
        make_world(0, n_towns=0)


def test_world_spreads_attributes_evenly_and_friendship_is_mutual(world):
    jobs = Counter(p.job for p in world.people)
    # 40 people over 12 jobs: 40 = 12 * 3 + 4 -> four jobs have 4 holders, eight have 3.
    assert sorted(jobs.values()) == [3] * 8 + [4] * 4
    assert set(jobs) == set(JOBS)
    for p in world.people:
        assert world.person(p.friend).friend == p.name
        assert p.friend != p.name


def test_fact_weights_follow_the_long_tail_and_views_disagree(world):
    w1 = fact_weights(world, 1, correlation=0.3, exponent=1.5)
    w2 = fact_weights(world, 2, correlation=0.3, exponent=1.5)
    n = len(world.facts())
    assert n == 240
    # rank 0 weighs 1/3**1.5, the last rank 1/(239+3)**1.5
    assert max(w1.values()) == pytest.approx(3**-1.5)
    assert min(w1.values()) == pytest.approx(242**-1.5)
    assert sorted(w1.values()) == sorted(w2.values())
    assert w1 != w2  # same tail, different facts in it
    same = fact_weights(world, 2, correlation=1.0, exponent=1.5)
    assert same == fact_weights(world, 1, correlation=1.0, exponent=1.5)


def test_corpus_is_deterministic_and_mixes_all_kinds(world):
    state = random.getstate()
    a, b = make_corpus(world, _view(1, 400)), make_corpus(world, _view(1, 400))
    assert random.getstate() == state
    assert a == b and len(a) == 400
    assert a != make_corpus(world, _view(2, 400))
    text = "\n".join(a)
    assert "In short, " in text  # dialogue summaries
    assert "####" in text  # worked word problems
    assert re.search(r"\d+ \+ \d+ = \d+", text)


def test_word_problem_answers_are_right(world):
    rng = random.Random(0)
    for kind in ("add", "sub", "mul", "two_step"):
        for _ in range(50):
            w = make_word_problem(world, rng, kind, max_n=12)
            _, ref = word_problem_text(w)
            # the last "= N" of the worked answer is the answer
            assert int(re.findall(r"= (\d+)", ref)[-1]) == w.answer >= 0
            lhs = re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", ref)
            for x, op, y, z in lhs:
                assert eval(f"{x} {op} {y}") == int(z)  # digits and one operator


def test_dialogue_summaries_keep_the_final_choice(world):
    rng = random.Random(1)
    for _ in range(200):
        d = make_dialogue(world, rng, "bring")
        if "instead?" in d.text():
            substitute = re.search(r"Can I bring (\w+) instead", d.text()).group(1)
            assert f" bring {substitute} to " in d.summary
            break
    else:
        pytest.fail("no substitution dialogue in 200 draws")


def test_tasks_are_deterministic(world, corpus, tasks):
    again = make_tasks(world, {t: SIZES for t in TASKS}, seed=3, corpus_docs=corpus, max_n=12)
    assert again == tasks
    other = make_tasks(world, {t: SIZES for t in TASKS}, seed=4, corpus_docs=corpus, max_n=12)
    assert other != tasks


def test_task_rows_follow_the_local_jsonl_schema(tasks):
    n_choices = {"demo_hellaswag": 4, "demo_piqa": 2}
    for task, splits in tasks.items():
        for split in SPLITS:
            rows = splits[split]
            assert len(rows) == SIZES[split]
            for i, row in enumerate(rows):
                assert row["id"] == f"{task}-{split}-{i:05d}"
                assert isinstance(row["slice"], str) and row["slice"]
                if TASKS[task] == "multiple_choice":
                    assert set(row) == {"id", "context", "choices", "label", "slice"}
                    assert len(row["choices"]) == n_choices[task]
                    assert len(set(row["choices"])) == len(row["choices"])
                    assert all(c.startswith(" ") and not c.startswith("  ") for c in row["choices"])
                    assert isinstance(row["label"], int)
                    assert 0 <= row["label"] < len(row["choices"])
                    assert not row["context"].endswith(" ")
                else:
                    assert set(row) == {"id", "prompt", "reference", "slice"}
                    assert not row["reference"].startswith(" ")
    for row in tasks["demo_gsm8k"]["test"]:
        assert row["prompt"].startswith("Question: ") and row["prompt"].endswith("\nAnswer:")
        final = re.fullmatch(r"(?s).*\n#### (\d+)", row["reference"])
        assert final is not None
        assert int(re.findall(r"= (\d+)", row["reference"])[-1]) == int(final.group(1))
    for row in tasks["demo_samsum"]["test"]:
        assert row["prompt"].startswith("Dialogue:\n") and row["prompt"].endswith("\nSummary:")
        assert row["reference"].endswith(".") and "\n" not in row["reference"]


def test_labels_are_not_positionally_biased(tasks):
    # Shuffled choices: every position is the right one for some rows (a dedup keyed on the
    # first choice once made PIQA's label 1 four times likelier than label 0).
    for task in ("demo_hellaswag", "demo_piqa"):
        labels = Counter(r["label"] for s in SPLITS for r in tasks[task][s])
        n = sum(labels.values())
        assert len(labels) == len(tasks[task]["test"][0]["choices"])
        assert max(labels.values()) / n < 0.7


def _content(row: dict) -> str:
    return row.get("context", row.get("prompt")) + "|" + "|".join(sorted(row.get("choices", [])))


def test_splits_are_disjoint(tasks):
    for task, splits in tasks.items():
        seen: dict[str, str] = {}
        for split in SPLITS:
            for row in splits[split]:
                key = _content(row)
                assert key not in seen, f"{task}: {split} repeats a {seen.get(key)} row"
                seen[key] = split


def test_fact_questions_are_split_by_fact(world, tasks):
    # A held-out fact never appears in the training split: its answer must come from the base.
    names = {p.name for p in world.people}
    for split in SPLITS:
        for row in tasks["demo_hellaswag"][split]:
            if row["slice"] == "friend":
                continue
            right = row["choices"][row["label"]]
            (name,) = [w for w in re.findall(r"\w+", right) if w in names]
            assert fact_split(3, f"{name}:{row['slice']}") == split


def test_distractors_come_from_answers_of_the_same_split(world, tasks):
    for split in SPLITS:
        pool = set(_split_pool(world, 3, "friend", split))
        for row in tasks["demo_hellaswag"][split]:
            if row["slice"] != "friend" or len(pool) < 4:
                continue
            friends = {re.search(r"best friend (\w+)", c).group(1) for c in row["choices"]}
            assert friends <= pool


def test_task_instances_never_appear_verbatim_in_the_corpus(tasks, corpus):
    text = "\n\n".join(corpus)
    dialogues, questions = corpus_units(corpus)
    for splits in tasks.values():
        for split in SPLITS:
            for row in splits[split]:
                if "choices" in row:
                    assert row["context"] not in text
                    assert row["context"] + row["choices"][row["label"]] not in text
                else:
                    assert row["prompt"] not in text
                    assert row["prompt"] + " " + row["reference"] not in text
    # Without the exclusion, one dialogue and one question of these splits would be in it.
    for split in SPLITS:
        for row in tasks["demo_samsum"][split]:
            body = row["prompt"].removeprefix("Dialogue:\n").removesuffix("\nSummary:")
            assert body not in dialogues
        for row in tasks["demo_gsm8k"][split]:
            question = row["prompt"].removeprefix("Question: ").removesuffix("\nAnswer:")
            assert question not in questions


def test_corpus_units_finds_dialogues_and_questions():
    docs = [
        "Ann: Hi!\nBo: Hello.\nIn short, Ann greets Bo.",
        "Cy: Bye.\nDee: Bye!",
        "Ann had 2 coins. How many coins does Ann have now? Now Ann has 2 coins.\n#### 2",
        "Ann is a baker.",
    ]
    dialogues, questions = corpus_units(docs)
    assert dialogues == {"Ann: Hi!\nBo: Hello.", "Cy: Bye.\nDee: Bye!"}
    assert questions == {"Ann had 2 coins. How many coins does Ann have now?"}


def test_piqa_purpose_goals_cover_every_tool():
    assert sum(len(g) for g in TOOLS.values()) == 36
    assert len({g for goals in TOOLS.values() for g in goals}) == 36


# --------------------------------------------------------------------------- the skills family
# (the default family: tasks made of skills, split by group; the tests above cover legacy)


SKILL_SIZES = {"train": 80, "validation": 40, "test": 40}


def _skill_view(seed: int, n_docs: int = 1200) -> SkillView:
    return SkillView(seed=seed, n_docs=n_docs, weights=dict.fromkeys(DOC_KINDS, 1.0))


@pytest.fixture(scope="module")
def skill_corpus():
    return make_skill_corpus(_skill_view(1)) + make_skill_corpus(_skill_view(2))


@pytest.fixture(scope="module")
def skill_tasks(skill_corpus):
    return make_skill_tasks({t: SKILL_SIZES for t in TASKS}, seed=3, corpus_docs=skill_corpus)


def test_skill_corpus_is_deterministic_by_seed_and_follows_the_weights():
    state = random.getstate()
    a, b = make_skill_corpus(_skill_view(1, 300)), make_skill_corpus(_skill_view(1, 300))
    assert random.getstate() == state  # never touches the global RNG
    assert a == b and len(a) == 300
    assert a != make_skill_corpus(_skill_view(2, 300))
    only_math = SkillView(seed=1, n_docs=200, weights={"mul": 1.0})
    docs = make_skill_corpus(only_math)
    assert all(re.search(r"\d+ \* \d+ = \d+", d) for d in docs)
    with pytest.raises(ValueError, match="unknown document kind 'dance'"):
        SkillView(seed=1, n_docs=5, weights={"dance": 1.0})


def test_skill_tasks_are_deterministic_by_seed(skill_corpus, skill_tasks):
    sizes = {t: SKILL_SIZES for t in TASKS}
    assert make_skill_tasks(sizes, seed=3, corpus_docs=skill_corpus) == skill_tasks
    assert make_skill_tasks(sizes, seed=4, corpus_docs=skill_corpus) != skill_tasks


def test_skill_splits_are_disjoint_by_group(skill_tasks):
    for task, splits in skill_tasks.items():
        owner: dict[str, str] = {}
        for split in SPLITS:
            groups = Counter(row["group"] for row in splits[split])
            # validation and test: one row per group, so rows are independent units
            assert max(groups.values()) <= (2 if split == "train" else 1), (task, split)
            for g in groups:
                assert owner.setdefault(g, split) == split, f"{task}: group {g} in two splits"
                assert g.split("-")[0] in SLICES[task]
        assert {r["slice"] for s in SPLITS for r in splits[s]} == set(SLICES[task])


def test_group_split_is_a_pure_function_of_seed_task_and_key():
    a = [group_split(3, "demo_piqa", f"k{i}") for i in range(2000)]
    assert a == [group_split(3, "demo_piqa", f"k{i}") for i in range(2000)]
    assert a != [group_split(4, "demo_piqa", f"k{i}") for i in range(2000)]
    shares = Counter(a)
    assert 0.45 < shares["train"] / 2000 < 0.55 and 0.2 < shares["test"] / 2000 < 0.3


def test_skill_rows_load_with_the_local_task_loader(skill_tasks, tmp_path):
    from compatlm.io import atomic_write_jsonl
    from compatlm.tasks.local import load_local_jsonl

    for task, splits in skill_tasks.items():
        path = atomic_write_jsonl(tmp_path / f"{task}.jsonl", splits["test"])
        kind, examples = load_local_jsonl(path)
        assert kind == TASKS[task] and len(examples) == SKILL_SIZES["test"]
        assert [e.group for e in examples] == [r["group"] for r in splits["test"]]
        assert all(e.slice in SLICES[task] for e in examples)


def _simulate_stash(text: str) -> dict[str, str]:
    """An independent reading of a stash story: where each thing ends up."""
    where: dict[str, str] = {}
    for item, box in re.findall(r"put the (\w+) in the (\w+ \w+)", text):
        where.setdefault(item, box)
    for pattern in (r"In the (\w+ \w+), \w+ put the (\w+)", r"Into the (\w+ \w+) went the (\w+)"):
        for box, item in re.findall(pattern, text):
            where.setdefault(item, box)
    for box, item in re.findall(r"The (\w+ \w+) got the (\w+)", text):
        where.setdefault(item, box)
    for item, box in re.findall(r"moved the (\w+) to the (\w+ \w+)", text):
        where[item] = box
    for item, box in re.findall(
        r"took the (\w+) out of the \w+ \w+ and put it in the (\w+ \w+)", text
    ):
        where[item] = box
    for item, box in re.findall(r"the (\w+) went from the \w+ \w+ into the (\w+ \w+)", text):
        where[item] = box
    return where


def test_skill_task_labels_are_right(skill_tasks):
    checked = Counter()
    for split in SPLITS:
        for row in skill_tasks["demo_hellaswag"][split] + skill_tasks["demo_piqa"][split]:
            right = row["choices"][row["label"]]
            if row["slice"] in ("count", "total", "crate", "change"):
                # the right ending is the one whose worked steps are all true
                for choice in row["choices"]:
                    steps = re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", choice)
                    ok = all(eval(f"{x} {op} {y}") == int(z) for x, op, y, z in steps)
                    assert steps and ok == (choice == right)
            elif row["slice"] in ("moves", "where"):
                item = re.search(r"(?:needed|Find) the (\w+)", row["context"]).group(1)
                assert right.rstrip(".").endswith(_simulate_stash(row["context"])[item])
            elif row["slice"] in ("plans", "plan"):
                # the last place chosen, whatever was considered or dropped on the way
                final = re.findall(r"(?:chose|picked|agreed on) the (\w+)", row["context"])[-1]
                assert right.rstrip(".").endswith(f" the {final}")
            else:
                continue
            checked[row["slice"]] += 1
        for row in skill_tasks["demo_gsm8k"][split]:
            steps = re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", row["reference"])
            assert steps and all(eval(f"{x} {op} {y}") == int(z) for x, op, y, z in steps)
            assert row["reference"].endswith(f"\n#### {steps[-1][3]}")
            checked["gsm8k"] += 1
    assert set(checked) == {
        "count",
        "total",
        "crate",
        "change",
        "moves",
        "where",
        "plans",
        "plan",
        "gsm8k",
    }


def test_skill_mc_distractors_come_from_the_text_and_labels_are_balanced(skill_tasks):
    for task, n in (("demo_hellaswag", 4), ("demo_piqa", 2)):
        rows = [r for s in SPLITS for r in skill_tasks[task][s]]
        assert all(len(r["choices"]) == len(set(r["choices"])) == n for r in rows)
        assert all(c.startswith(" ") and not c.startswith("  ") for r in rows for c in r["choices"])
        labels = Counter(r["label"] for r in rows)
        assert len(labels) == n and max(labels.values()) / len(rows) < 0.7
    for row in skill_tasks["demo_hellaswag"]["test"]:
        # wrong endings name containers or places the story mentions (arithmetic: wrong numbers)
        if row["slice"] in ("moves", "plans"):
            named = [c.rstrip(".").split(" the ")[-1] in row["context"] for c in row["choices"]]
            assert sum(named) >= 2


def test_skill_task_instances_never_appear_verbatim_in_the_corpus(skill_tasks, skill_corpus):
    text = "\n\n".join(skill_corpus)
    dialogues, questions = corpus_units(skill_corpus)
    for splits in skill_tasks.values():
        for split in SPLITS:
            for row in splits[split]:
                if "choices" in row:
                    assert row["context"] + row["choices"][row["label"]] not in text
                else:
                    body = row["prompt"].removeprefix("Dialogue:\n").removesuffix("\nSummary:")
                    question = body.removeprefix("Question: ").removesuffix("\nAnswer:")
                    assert body not in dialogues and question not in questions


def test_default_family_has_400_independent_groups_in_validation_and_test():
    from compatlm.demo.family import FamilyRecipe, corpora

    recipe = FamilyRecipe.default()
    docs = corpora(recipe)
    sizes = {t: recipe.task_sizes.model_dump() for t in TASKS}
    tasks = make_skill_tasks(sizes, seed=recipe.task_seed, corpus_docs=docs["old"] + docs["new"])
    for task, splits in tasks.items():
        for split in ("validation", "test"):
            assert len({r["group"] for r in splits[split]}) >= 400, (task, split)
        # every skill is measured on an equal share of each split
        for split, rows in splits.items():
            slices = Counter(r["slice"] for r in rows)
            assert max(slices.values()) - min(slices.values()) <= 1, (task, split)
