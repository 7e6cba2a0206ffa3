"""Roles of an eval config: their models per task, grouped for loading, and the tokenizer check
made before any model loads."""

from __future__ import annotations

from types import SimpleNamespace

from compatlm.config import EvalConfig, RuntimeConfig
from compatlm.eval.roles import model_groups, roles_of, tokenizer_check
from compatlm.spec import ModelSpec

TASKS = [
    SimpleNamespace(name="mc1", kind="multiple_choice"),
    SimpleNamespace(name="gen", kind="generation"),
    SimpleNamespace(name="mc2", kind="multiple_choice"),
]


def _cfg(old: str = "o", new: str = "n", **models: dict[str, str]) -> EvalConfig:
    tasks = [{"name": t.name, "models": models.get(t.name, {})} for t in TASKS]
    return EvalConfig(old=old, new=new, candidates={"c": "n+c_ad"}, tasks=tasks)


def test_roles_and_their_groups_in_task_order():
    cfg = _cfg(mc2={"new": "n+mc2_ad", "only": "x"})
    roles = roles_of(cfg)
    assert [r for r, _ in roles] == ["old", "new", "c", "only"]
    assert dict(roles)["only"] is None and dict(roles)["c"] == ModelSpec("n", None, "c_ad")
    groups = model_groups(cfg, "new", cfg.new, TASKS)
    assert {s.format(): [t.name for t in g] for s, g in groups.items()} == {
        "n": ["mc1", "gen"],
        "n+mc2_ad": ["mc2"],
    }
    mc = model_groups(cfg, "new", cfg.new, TASKS, kind="multiple_choice")
    assert {s.format(): [t.name for t in g] for s, g in mc.items()} == {
        "n": ["mc1"],
        "n+mc2_ad": ["mc2"],
    }
    only = model_groups(cfg, "only", None, TASKS)
    assert {s.format(): [t.name for t in g] for s, g in only.items()} == {"x": ["mc2"]}


def test_tokenizer_check_warns_once_per_model_that_differs(tiny_family, tmp_path):
    from helpers import make_tokenizer

    other = tmp_path / "other"
    make_tokenizer(vocab_size=300).save_pretrained(other)  # a tokenizer is all it reads
    same = _cfg(str(tiny_family["old"]), str(tiny_family["new"]))
    same = same.model_validate({**same.model_dump(), "candidates": {}})
    check = tokenizer_check(same, TASKS, RuntimeConfig(device="cpu"))
    assert check.warnings == [] and check.fingerprints["old"] == check.fingerprints["new"]
    differ = _cfg(str(tiny_family["old"]), str(other))
    differ = differ.model_validate({**differ.model_dump(), "candidates": {}})
    check = tokenizer_check(differ, TASKS, RuntimeConfig(device="cpu"))
    fps = check.fingerprints
    assert fps["old"] != fps["new"]
    (msg,) = check.warnings
    assert msg.startswith(f"new ({other}) tokenises differently from old") and fps["new"] in msg
