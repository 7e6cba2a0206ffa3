"""YAML parsing with bounds: what a config file may cost before it is validated.

PyYAML's ``safe_load`` is safe against code execution but not against cost: a 500-byte file of
nested aliases ("billion laughs") composes into a small shared graph that every walker of the
loaded data (override application, ``None`` dropping, pydantic) expands exponentially, and a
deeply nested flow collection recurses until ``RecursionError``. :class:`BoundedLoader` refuses,
before anything is expanded, documents that

* are larger than :data:`MAX_BYTES` (checked by the caller on the file size),
* nest deeper than :data:`MAX_DEPTH` levels, counting what aliases splice in,
* expand to more than :data:`MAX_NODES` values once every alias is replaced by its target,
* contain an alias to a collection that contains it (a recursive structure),
* repeat a key in one mapping (PyYAML keeps the last one silently; a repeated key in a config
  is a mistake, e.g. two ``runtime:`` sections). Merge keys (``<<: *defaults``) stay allowed.

Every refusal is a :class:`YamlLimitError` carrying the line it concerns.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 10 * 1024 * 1024  # configs are kilobytes; 10 MB leaves room for inline data
MAX_DEPTH = 64  # the deepest real config is ~5 levels
MAX_NODES = 1_000_000  # values after alias expansion; every walker of the data is O(this)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlLimitError(yaml.MarkedYAMLError):
    """A document refused for its cost or a repeated key; ``problem_mark.line`` is 0-based."""


def _refuse(message: str, node_or_mark: Any) -> YamlLimitError:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return YamlLimitError(problem=message, problem_mark=mark)


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def check_expansion(root: Node) -> None:
    """Refuse a node graph whose alias expansion is too big, too deep or recursive.

    Iterative post-order walk over the composed graph (each shared node visited once), so the
    check itself costs O(composed nodes) and cannot hit the recursion limit.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    state: dict[int, int] = {}  # 1 = on the current path, 2 = finished
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        children = _children(node)
        if finished:
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            state[key] = 2
            if size[key] > MAX_NODES:
                raise _refuse(
                    f"aliases expand this value to more than {MAX_NODES:,} values"
                    " (an alias bomb?); refusing to load it",
                    node,
                )
            if depth[key] > MAX_DEPTH:
                raise _refuse(f"nested deeper than {MAX_DEPTH} levels (with aliases)", node)
            continue
        if state.get(key) == 2:
            continue
        state[key] = 1
        stack.append((node, True))
        for child in children:
            if state.get(id(child)) == 1:
                raise _refuse("an alias refers to a collection that contains it", child)
            if id(child) not in state:
                stack.append((child, False))


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the bounds of this module (see the module docstring)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        # PyYAML composes recursively (a few frames per level): stop long before Python does.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _refuse(f"nested deeper than {MAX_DEPTH} levels", self.peek_event())
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        # Checked on the composed node, before merge keys are flattened into it (an explicit
        # key overriding a merged one is not a repetition).
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            ident = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if ident in seen:
                raise _refuse(
                    f"duplicate key {key_node.value!r} (first on line {seen[ident]})", key_node
                )
            seen[ident] = line
        return node

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None:
            check_expansion(node)
        return node


def load(text: str) -> Any:
    """Parse one YAML document with the bounds above (``yaml.YAMLError`` on any problem)."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
