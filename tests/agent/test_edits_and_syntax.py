"""Minimal versioned edits, fimble's syntax diagnostics, and the units a fix rewrites."""

from __future__ import annotations

import pytest
from lsprotocol import types

from fimble.agent.diagnostics import parse, syntax_problems
from fimble.agent.edits import apply_replacements, minimal_replacements, workspace_edit
from fimble.agent.enclosing_unit import enclosing_definition, enclosing_unit, identifiers
from fimble.documents.document import Document
from fimble.syntax.error_nodes import count_errors, error_nodes


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("def f(x)\n    return x\n", "def f(x):\n    return x\n"),
        ("a\nb\nc\nd\n", "a\nB\nc\nD\n"),
        ("a\nb\n", "a\nb\nc\n"),
        ("a\nb\nc", "c"),
        ("x = 1\r\ny = 2\r\n", "x = 1\r\ny = 3\r\n"),
        ("same\n", "same\n"),
        ("", "new file\n"),
    ],
)
def test_minimal_replacements_reproduce_the_new_text(old: str, new: str) -> None:
    reps = minimal_replacements(old, new)
    assert apply_replacements(old, reps) == new
    assert sum(r.end - r.start for r in reps) <= len(old)


def test_minimal_replacement_is_small() -> None:
    old = "def f(x)\n    return x\n" + "# filler\n" * 50
    new = old.replace("def f(x)", "def f(x):")
    reps = minimal_replacements(old, new)
    assert len(reps) == 1 and reps[0].text == ":" and reps[0].start == reps[0].end == len("def f(x)")


def test_workspace_edit_is_versioned_and_utf16() -> None:
    doc = Document(uri="file:///a.py", text="s = '😀'; t = 1\nu = 2\n", version=7, language_id="python")
    edit = workspace_edit(doc, doc.text.replace("t = 1", "t = 2"))
    assert edit.document_changes is not None
    change = edit.document_changes[0]
    assert isinstance(change, types.TextDocumentEdit)
    assert change.text_document.version == 7 and change.text_document.uri == "file:///a.py"
    [text_edit] = change.edits
    assert isinstance(text_edit, types.TextEdit)
    # The emoji is two UTF-16 code units: "t = 1"'s "1" sits at UTF-16 column 14.
    assert text_edit.range.start == types.Position(line=0, character=14)
    assert text_edit.new_text == "2"


def test_syntax_problems_python() -> None:
    text = "def add(a, b)\n    return a + b\n"
    [problem] = syntax_problems(text, "python")
    assert problem.message == "Syntax error: expected ':'" and problem.source == "fimble" and problem.is_syntax
    assert text[: problem.start].endswith("def add(a, b)")


def test_syntax_problems_other_languages_and_none() -> None:
    assert syntax_problems("func main() {\n\tx := (1 + 2\n}\n", "go")
    [missing] = syntax_problems("int f() { return 1 }", "c")
    assert missing.code == "missing" and "';'" in missing.message
    assert syntax_problems("fine = True\n", "python") == []
    assert syntax_problems("anything (", "plaintext") == []


def test_error_node_is_underlined_on_its_first_line_only() -> None:
    text = "x = [1,\n  2,\n  3\ny = 4\n"
    for p in syntax_problems(text, "python"):
        assert "\n" not in text[p.start : p.end]


def test_count_errors() -> None:
    broken = count_errors(parse("x = (1 +\n", "python"))
    assert broken.nodes >= 1
    assert count_errors(parse("x = 1\n", "python")) == (0, 0)
    assert count_errors(None) == (0, 0)
    # an ERROR node swallows text, a MISSING one is empty; nested errors count once, in the outermost node
    tree = parse("def f(:\n    return )\n", "python")
    assert tree is not None
    nodes = error_nodes(tree.root_node)
    assert nodes and [n.start_byte for n in nodes] == sorted(n.start_byte for n in nodes)
    assert count_errors(tree) == (len(nodes), sum(n.end_byte - n.start_byte for n in nodes if not n.is_missing))
    assert error_nodes(tree.root_node, limit=1) == nodes[:1]


def test_units() -> None:
    text = (
        "import os\n\n\nclass Shop:\n    @property\n    def total(self):\n        return sum(self.items)\n\n"
        "    def count(self):\n        return len(self.items)\n"
    )
    at = text.index("sum")
    unit = enclosing_unit(text, parse(text, "python"), at, at + 3)
    assert unit.text(text) == "    @property\n    def total(self):\n        return sum(self.items)"
    definition = enclosing_definition(text, parse(text, "python"), at, at)
    assert definition is not None and definition.name == "total"
    assert identifiers(parse(text, "python"), text, unit.start, unit.end) == [
        "property",
        "total",
        "self",
        "sum",
        "items",
    ]


def test_unit_without_grammar_is_a_line_window() -> None:
    text = "a\nb\nc\nd\ne\nf\ng\nh\ni\n\nlater\n"
    at = text.index("e")
    unit = enclosing_unit(text, None, at, at + 1)
    assert unit.kind == "lines" and unit.text(text) == "b\nc\nd\ne\nf\ng\nh"


def test_long_definition_falls_back_to_a_statement() -> None:
    body = "".join(f"    v{i} = {i}\n" for i in range(100))
    text = "def big():\n" + body + "    w = (1 +\n    return w\n"
    at = text.index("w = (")
    unit = enclosing_unit(text, parse(text, "python"), at, at + 1)
    assert unit.kind != "function_definition" and unit.text(text).count("\n") < 10
