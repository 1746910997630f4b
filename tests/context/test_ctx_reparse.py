"""Re-parsing from an old tree when only two texts are known: same tree as a fresh parse."""

from __future__ import annotations

import pytest

from fimble.syntax.grammars import get_parser
from fimble.syntax.reparse import SpanEdit, reparse, span_edit

BASE = 'def f(x):\n    """Dóc ünïcode."""\n    if x:\n        return g(x, 1)\n    return None\n\n\nclass A:\n    pass\n'


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("abc", "abc", None),
        ("abc", "abXc", SpanEdit(2, 2, 3)),
        ("abXc", "abc", SpanEdit(2, 3, 2)),
        ("aaaa", "aaaaa", SpanEdit(4, 4, 5)),  # repeated characters: the prefix takes all it can
        ("", "x", SpanEdit(0, 0, 1)),
        ("hello world", "help", SpanEdit(3, 11, 4)),
    ],
)
def test_span_edit(old: str, new: str, expected: SpanEdit | None) -> None:
    edit = span_edit(old, new)
    assert edit == expected
    if edit is not None:
        assert old[: edit.start] + new[edit.start : edit.new_end] + old[edit.old_end :] == new


@pytest.mark.parametrize(
    "new",
    [
        BASE.replace("return g(x, 1)", "return g(x, 1) + h("),  # breaks the syntax
        BASE.replace("Dóc", "Döcümént"),  # multi-byte characters before the edit
        BASE.replace("    pass\n", "    def m(self):\n        return 'ünï'\n"),
        "x = 1\n",
        BASE + "y = [\n",
    ],
)
def test_reparse_gives_the_fresh_tree(new: str) -> None:
    parser = get_parser("python")
    assert parser is not None
    old_tree = parser.parse(BASE.encode())
    before = str(old_tree.root_node)
    tree = reparse(parser, BASE, old_tree, new)
    assert str(tree.root_node) == str(parser.parse(new.encode()).root_node)
    assert str(old_tree.root_node) == before  # the old tree is left as it was
