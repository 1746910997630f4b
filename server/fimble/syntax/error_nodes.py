"""Where a parse failed: tree-sitter's ERROR and MISSING nodes, found and counted one way for the whole server
(the syntax filter, diagnostics, the fix loop's verification and the evaluation harness).

Only the outermost such nodes count: errors nested inside an ERROR node are one problem to the user, and a walk
descends only into nodes that contain an error, so a clean subtree costs one attribute read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import tree_sitter


class ErrorCount(NamedTuple):
    nodes: int  # outermost ERROR and MISSING nodes
    error_bytes: int  # bytes covered by those ERROR nodes (a MISSING node covers none)


def _outermost(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            yield node
        elif node.has_error:
            # Reversed so that popping visits children in document order.
            stack.extend(reversed(node.children))


def error_nodes(root: tree_sitter.Node, limit: int | None = None) -> list[tree_sitter.Node]:
    """The outermost ERROR and MISSING nodes under `root` (at most `limit`), in document order."""
    found: list[tree_sitter.Node] = []
    for node in _outermost(root):
        if limit is not None and len(found) >= limit:
            break
        found.append(node)
    found.sort(key=lambda n: n.start_byte)
    return found


def count_errors(tree: tree_sitter.Tree | tree_sitter.Node | None) -> ErrorCount:
    """How many outermost ERROR/MISSING nodes a tree (or subtree) has, and how much text the ERROR nodes swallow;
    nothing for no tree (a language without a grammar)."""
    if tree is None:
        return ErrorCount(0, 0)
    nodes = size = 0
    for node in _outermost(tree.root_node if isinstance(tree, tree_sitter.Tree) else tree):
        nodes += 1
        if not node.is_missing:
            size += node.end_byte - node.start_byte
    return ErrorCount(nodes, size)
