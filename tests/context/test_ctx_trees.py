"""Per-document trees follow didChange edits incrementally and always match a fresh parse."""

from __future__ import annotations

import tree_sitter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fimble.documents import DocumentStore
from fimble.syntax.trees import SyntaxTrees, parse_text

PY = 'def f(x):\n    """Doc é."""\n    return [x, "ü", 3]\n\n\nclass K:\n    def m(self):\n        pass\n'
JS = "function f(a) {\n  return a + 1; // ok\n}\nconst s = `tmpl ${f(2)}`;\n"


def shape(node: tree_sitter.Node) -> tuple[object, ...]:
    return (node.type, node.start_byte, node.end_byte, tuple(shape(c) for c in node.children))


def splits_crlf(text: str, index: int) -> bool:
    return 0 < index < len(text) and text[index - 1 : index + 1] == "\r\n"


edit = st.tuples(st.integers(0, 10_000), st.integers(0, 6), st.text(alphabet='abc (){}[]:"\n\té😀=\r', max_size=6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=st.sampled_from([("python", "a.py", PY), ("javascript", "a.js", JS)]), edits=st.lists(edit, max_size=12))
def test_incremental_tree_matches_fresh_parse(initial: tuple[str, str, str], edits: list[tuple[int, int, str]]) -> None:
    language_id, name, text = initial
    store = DocumentStore()
    trees = SyntaxTrees()
    trees.attach(store)
    uri = f"file:///tmp/{name}"
    doc = store.open(uri, text, 1, language_id)
    assert trees.tree(uri) is not None
    for version, (pos, length, insert) in enumerate(edits, start=2):
        current = doc.text
        start = min(pos, len(current))
        end = min(start + length, len(current))
        if splits_crlf(current, start) or splits_crlf(current, end):
            continue  # LSP has no position between the \r and \n of one line break
        store.change(uri, version, [(insert, doc.position_at(start), doc.position_at(end))])
        if version % 3 == 0:  # sometimes several edits land before the tree is read
            tree = trees.tree(uri, doc.text)
            assert tree is not None
            fresh = parse_text(doc.text, language_id)
            assert fresh is not None
            assert shape(tree.root_node) == shape(fresh.root_node)
    tree = trees.tree(uri, doc.text)
    fresh = parse_text(doc.text, language_id)
    assert tree is not None and fresh is not None
    assert shape(tree.root_node) == shape(fresh.root_node)


def test_edits_reparse_incrementally_not_from_scratch() -> None:
    store = DocumentStore()
    trees = SyntaxTrees()
    trees.attach(store)
    doc = store.open("file:///x.py", PY * 50, 1, "python")
    trees.tree(doc.uri)
    for i in range(5):
        store.change(doc.uri, i + 2, [("y", (0, 4), (0, 5))])
        assert trees.tree(doc.uri, doc.text) is not None
    full, incremental = trees.stats(doc.uri)
    assert full == 1
    assert incremental == 5


def test_stale_snapshot_gets_no_tree_and_unknown_language_none() -> None:
    store = DocumentStore()
    trees = SyntaxTrees()
    trees.attach(store)
    doc = store.open("file:///x.py", "x = 1\n", 1, "python")
    old = doc.text
    store.change(doc.uri, 2, [("2", (0, 4), (0, 5))])
    assert trees.tree(doc.uri, old) is None  # the caller parses its own snapshot
    store.open("file:///notes.txt", "hello", 1, "plaintext")
    assert trees.tree("file:///notes.txt") is None


def test_lone_carriage_returns_fall_back_to_full_parse() -> None:
    store = DocumentStore()
    trees = SyntaxTrees()
    trees.attach(store)
    doc = store.open("file:///m.py", "a = 1\rb = 2\r\nc = 3\n", 1, "python")
    store.change(doc.uri, 2, [("x", (1, 0), (1, 1))])
    tree = trees.tree(doc.uri, doc.text)
    fresh = parse_text(doc.text, "python")
    assert tree is not None and fresh is not None
    assert shape(tree.root_node) == shape(fresh.root_node)


def test_documents_opened_before_attach_are_tracked() -> None:
    store = DocumentStore()
    store.open("file:///early.go", "package main\n", 1, "go")
    trees = SyntaxTrees()
    trees.attach(store)
    assert trees.tree("file:///early.go") is not None


def test_a_reparse_over_budget_returns_the_shifted_tree_and_finishes_later() -> None:
    store = DocumentStore()
    trees = SyntaxTrees()
    trees.attach(store)
    slow: list[str] = []
    trees.on_slow = slow.append
    doc = store.open("file:///big.py", PY * 400, 1, "python")
    assert trees.tree(doc.uri) is not None
    store.change(doc.uri, 2, [("f(", (1, 0), (1, 0))])  # an unclosed bracket: much of the file re-parses
    stale = trees.tree(doc.uri, doc.text, budget_s=0.0)
    assert slow == [doc.uri]
    assert stale is not None and stale.root_node.end_byte == len(doc.text.encode())  # shifted by the edit
    fresh = parse_text(doc.text, "python")
    done = trees.tree(doc.uri, doc.text)
    assert done is not None and fresh is not None
    assert shape(done.root_node) == shape(fresh.root_node)
