"""The loop's typed per-epoch sums and resumable state (compatlm.train.state), and the layering
rules: in compatlm.train components never import a recipe and nothing imports in a cycle;
compatlm.eval never imports compatlm.report (evaluation writes metrics.json, callers render);
no module of compatlm imports in a cycle, counting imports written inside functions."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from compatlm.train.diagnostics import COUNT_KEYS
from compatlm.train.losses import LossOutput
from compatlm.train.state import EpochSums, LoopState

SRC = Path(__file__).parents[2] / "src"
TRAIN = SRC / "compatlm" / "train"


def _out(loss: float, ce: float, kd: float, n: int, n_old: int, **counts: int) -> LossOutput:
    return LossOutput(
        loss=torch.tensor(loss),
        kd=torch.tensor(kd),
        ce=torch.tensor(ce),
        n_tokens=n,
        n_old_tokens=n_old,
        counts=counts,
    )


def test_sums_are_token_weighted_and_make_the_log_row():
    sums = EpochSums()
    sums.add(_out(2.0, 1.5, 0.5, 4, 1, student_wrong=3, old_observed=4), loss=2.0)
    sums.add(_out(1.0, 0.5, 0.25, 2, 2, student_wrong=1), loss=1.0)
    assert sums.to_list() == [10.0, 7.0, 2.5, 6.0, 3.0, 4.0, 0.0, 0.0, 4.0, 0.0]
    row = sums.history_row(epoch=2, step=7, lr=0.5)
    assert list(row) == [
        "epoch",
        "step",
        "train_loss",
        "train_ce",
        "train_kd",
        "old_token_fraction",
        "lr",
        "counts",
    ]
    assert row["train_loss"] == pytest.approx(10 / 6) and row["train_kd"] == pytest.approx(2.5 / 6)
    assert row["old_token_fraction"] == pytest.approx(0.5)
    assert row["counts"] == {
        "loss_tokens": 6,
        "old_tokens": 3,
        "student_wrong": 4,
        "student_wrong_old_right": 0,
        "student_wrong_new_right": 0,
        "old_observed": 4,
        "new_observed": 0,
    }
    # No token at all: means over max(n, 1), never a division by zero.
    assert EpochSums().history_row(epoch=1, step=0, lr=0.0)["train_loss"] == 0.0


def test_sums_round_trip_and_read_the_shorter_list_of_an_older_checkpoint():
    values = [float(i + 1) for i in range(5 + len(COUNT_KEYS))]
    assert EpochSums.from_list(values).to_list() == values
    old = EpochSums.from_list([4.0, 3.0, 2.0, 8.0, 1.0])  # before the diagnostics counters
    assert old.to_list() == [4.0, 3.0, 2.0, 8.0, 1.0, *[0.0] * len(COUNT_KEYS)]
    assert EpochSums.from_list([]) == EpochSums()


def test_state_json_keeps_sums_as_a_flat_list_in_its_place():
    state = LoopState(epoch=1, global_step=3, history=[{"epoch": 1}], lrs=[0.1, 0.2])
    state.sums.add(_out(1.0, 1.0, 0.0, 2, 0), loss=1.0)
    data = json.loads(json.dumps(state.to_dict()))
    assert list(data) == [
        "epoch",
        "batches_done",
        "global_step",
        "best_metric",
        "best_epoch",
        "finished",
        "history",
        "sums",
        "lrs",
        "order_hash",
    ]
    assert data["sums"] == state.sums.to_list()
    back = LoopState.from_dict({**data, "world_size": 2})  # extra keys of state.json ignored
    assert back == state and isinstance(back.sums, EpochSums)


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): its imports never run."""
    return isinstance(node, ast.If) and ast.unparse(node.test) in {
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    }


def _nodes(tree: ast.AST, runtime_only: bool) -> list[ast.AST]:
    """Every node of ``tree`` (``ast.walk``), without the bodies of ``if TYPE_CHECKING:``
    blocks when ``runtime_only``; their ``else:`` branches do run and are kept."""
    if not runtime_only:
        return list(ast.walk(tree))
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        todo.extend(node.orelse if _is_type_checking(node) else ast.iter_child_nodes(node))
    return found


def _statements(path: Path, root: Path = SRC, *, runtime_only: bool = False) -> list[list[str]]:
    """Per import statement in ``path`` (top level or inside a function), the dotted names it
    may load: ``from m import a, b`` gives ``[m, m.a, m.b]`` (``a`` may be a submodule or a
    name defined in ``m``), ``import m.n`` gives ``[m.n]``. Relative imports are resolved
    against ``path``'s package (``root`` holds ``compatlm/``); ``runtime_only`` leaves out the
    imports under ``if TYPE_CHECKING:``."""
    package = _module(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8")), runtime_only):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append([module, *(f"{module}.{a.name}" for a in node.names)])
        elif isinstance(node, ast.Import):
            found.extend([a.name] for a in node.names)
    return found


def _imports(path: Path, prefix: str, root: Path = SRC) -> set[str]:
    """Modules under ``prefix`` that ``path`` imports anywhere (top level or inside a function);
    relative imports are resolved against ``path``'s package (``root`` holds ``compatlm/``)."""
    found = {name for names in _statements(path, root) for name in names}
    return {m for m in found if m == prefix or m.startswith(prefix + ".")}


def _train_imports(path: Path) -> set[str]:
    """compatlm.train modules ``path`` imports anywhere (top level or inside a function)."""
    return _imports(path, "compatlm.train")


def _module(path: Path, root: Path = SRC) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_components_never_import_a_recipe_and_nothing_imports_in_a_cycle():
    paths = sorted(TRAIN.rglob("*.py"))
    modules = {_module(p): p for p in paths}
    graph = {m: _train_imports(p) & modules.keys() for m, p in modules.items()}
    # The two old import paths of the recipes re-export them and are not components.
    shims = {"compatlm.train.task", "compatlm.train.compat"}
    for m, deps in graph.items():
        if ".recipes" not in m and m not in shims:
            assert not {d for d in deps if ".recipes." in d}, m
    seen: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        seen[m] = 1
        for d in graph[m]:
            assert seen.get(d) != 1, " -> ".join([*stack[stack.index(d) :], d])
            if d not in seen:
                visit(d, [*stack, d])
        seen[m] = 2

    for m in graph:
        if m not in seen:
            visit(m, [m])


def test_eval_never_imports_report():
    # Reports are rendered by the callers of compare (the CLI, the demo, sweeps): evaluation
    # must write metrics.json without the report layer (and matplotlib) behind it.
    paths = sorted((SRC / "compatlm" / "eval").rglob("*.py"))
    assert len(paths) > 10
    offenders = {_module(p): sorted(_imports(p, "compatlm.report")) for p in paths}
    assert {m: deps for m, deps in offenders.items() if deps} == {}


def test_the_import_scan_sees_imports_inside_functions_and_relative_ones(tmp_path):
    pkg = tmp_path / "compatlm" / "eval"
    pkg.mkdir(parents=True)
    mod = pkg / "x.py"
    mod.write_text(
        "def f():\n    from ..report import render_report\n    import compatlm.report.html\n"
    )
    found = _imports(mod, "compatlm.report", root=tmp_path)
    assert found == {"compatlm.report", "compatlm.report.render_report", "compatlm.report.html"}


def _import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """compatlm module -> the compatlm modules it imports when it runs (top level or inside a
    function; ``if TYPE_CHECKING:`` imports never run and are not edges). Each imported name
    points to the closest module that holds it: ``from pkg import sub`` to ``pkg.sub`` when
    that is a module, ``from pkg import name`` to ``pkg``."""
    modules = {_module(p, root): p for p in sorted((root / "compatlm").rglob("*.py"))}

    def holder(name: str) -> str | None:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in modules else None

    graph: dict[str, set[str]] = {}
    for m, p in modules.items():
        targets = set()
        for module, *names in _statements(p, root, runtime_only=True):
            targets |= {holder(n) for n in names} if names else {holder(module)}
        graph[m] = targets - {m, None}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d not in index:
                visit(d)
                low[m] = min(low[m], low[d])
            elif d in stack:
                low[m] = min(low[m], index[d])
        if low[m] == index[m]:
            component = []
            while not component or component[-1] != m:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return found


def test_no_module_of_compatlm_imports_in_a_cycle():
    # A cycle hidden in a function-level import still couples both modules (neither can be
    # understood, tested or loaded without the other). Lazy imports exist only to keep heavy
    # dependencies off light paths, and then they must point downwards too.
    graph = _import_graph()
    # The scan sees the whole package, and an import inside a function is an edge.
    assert len(graph) > 100 and "compatlm.report.html" in graph["compatlm.report"]
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_scan_sees_function_imports_and_skips_type_checking_ones(tmp_path):
    pkg = tmp_path / "compatlm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from compatlm.b import B\n")
    (pkg / "b.py").write_text("B = 1\n\n\ndef f():\n    from . import a\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .a import x\n"
    )
    (pkg / "d.py").write_text("import compatlm.c\n")
    graph = _import_graph(tmp_path)
    assert graph["compatlm.a"] == {"compatlm.b"} and graph["compatlm.b"] == {"compatlm.a"}
    assert graph["compatlm.c"] == set() and graph["compatlm.d"] == {"compatlm.c"}
    assert _cycles(graph) == [["compatlm.a", "compatlm.b"]]
    (pkg / "c.py").write_text("def g():\n    from .d import y\n")
    assert _cycles(_import_graph(tmp_path)) == [
        ["compatlm.a", "compatlm.b"],
        ["compatlm.c", "compatlm.d"],
    ]
