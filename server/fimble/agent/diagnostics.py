"""fimble's own diagnostics: tree-sitter ERROR and MISSING nodes as syntax problems, plus the counting the fix
loop uses to make sure a candidate does not add syntax errors.

Positions are string indices into the document text (the document layer converts them to UTF-16 LSP positions);
tree-sitter works in UTF-8 bytes, so every node offset is converted here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import tree_sitter

from fimble.documents.document import ByteMap
from fimble.languages import is_python
from fimble.syntax.error_nodes import error_nodes
from fimble.syntax.grammars import get_parser

SOURCE = "fimble"
SYNTAX_CODES = ("syntax-error", "missing")
# A file with hundreds of errors is usually a file in another language or mid-paste; the first ones are enough.
MAX_PROBLEMS = 50


@dataclass(frozen=True)
class Problem:
    """One diagnostic in plain terms, whoever reported it (fimble, pyright, ruff, tsserver...)."""

    start: int  # string index into the document text
    end: int
    message: str
    source: str = ""
    code: str = ""

    @property
    def is_syntax(self) -> bool:
        return self.source == SOURCE and self.code in SYNTAX_CODES

    def describe(self, text: str) -> str:
        """'line 3: message (source)' with a 1-based line, for prompts and titles."""
        line = text.count("\n", 0, self.start) + 1
        origin = f" ({self.source}{' ' + self.code if self.code else ''})" if self.source else ""
        return f"line {line}: {self.message}{origin}"


def parse(text: str, language_id: str, path: str | PurePath | None = None) -> tree_sitter.Tree | None:
    """A fresh syntax tree, or None for languages without a grammar."""
    parser = get_parser(language_id, path)
    if parser is None:
        return None
    return parser.parse(text.encode("utf-8"))


def syntax_problems(text: str, language_id: str, path: str | PurePath | None = None) -> list[Problem]:
    tree = parse(text, language_id, path)
    if tree is None or not tree.root_node.has_error:
        return []
    nodes = error_nodes(tree.root_node, MAX_PROBLEMS)
    problems = [_problem(node, text, ByteMap(text)) for node in nodes]
    if is_python(language_id, path) and problems:
        problems = _refine_with_compile(problems, nodes, text)
    return problems


def problems_from_tree(tree: tree_sitter.Tree, text: str) -> list[Problem]:
    bmap = ByteMap(text)
    return [_problem(node, text, bmap) for node in error_nodes(tree.root_node, MAX_PROBLEMS)]


def _problem(node: tree_sitter.Node, text: str, bmap: ByteMap) -> Problem:
    start = bmap.to_index(node.start_byte)
    end = bmap.to_index(node.end_byte)
    if node.is_missing:
        what = node.type if not node.is_named else node.type.replace("_", " ")
        return Problem(start, end, f"Syntax error: missing '{what}'", SOURCE, "missing")
    # Error recovery often starts an ERROR node at the whitespace before the offending token: skip it.
    while start < end and text[start].isspace():
        start += 1
    # An ERROR node can swallow the rest of a block; underline only its first line so the squiggle points at
    # where parsing went wrong rather than at everything after it.
    line_end = text.find("\n", start)
    if line_end != -1 and line_end < end:
        end = line_end
    snippet = text[start:end].strip()
    if len(snippet) > 40:
        snippet = snippet[:37] + "..."
    message = f"Syntax error: unexpected '{snippet}'" if snippet else "Syntax error"
    return Problem(start, max(end, start), message, SOURCE, "syntax-error")


def python_compile_error(text: str, filename: str = "<fimble>") -> SyntaxError | str | None:
    """Python's own verdict on the text: None when it compiles. Compiling never runs the code."""
    try:
        compile(text, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return exc
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _refine_with_compile(problems: list[Problem], nodes: list[tree_sitter.Node], text: str) -> list[Problem]:
    """Python's parser names the actual mistake ("expected ':'", "'(' was never closed") where tree-sitter only
    knows where it got lost, which after an unclosed bracket can be the top of the file. Use Python's message and
    position for the innermost error node around Python's error line."""
    err = python_compile_error(text)
    if not isinstance(err, SyntaxError) or not err.lineno:
        return problems
    lines = text.split("\n")
    row = err.lineno - 1
    if not 0 <= row < len(lines):
        return problems
    around = [i for i, n in enumerate(nodes) if n.start_point.row <= row <= n.end_point.row]
    if not around and err.msg != "invalid syntax":
        # A header missing its ':' often makes tree-sitter complain a line or two later: take the nearest node.
        around = [i for i, n in enumerate(nodes) if 0 < n.start_point.row - row <= 2]
    if not around:
        return problems
    index = min(around, key=lambda i: nodes[i].end_byte - nodes[i].start_byte)
    node = nodes[index]
    # A bare "invalid syntax" says less than tree-sitter's "unexpected 'retrun'"; keep ours then, unless our node is
    # a big one whose first line is probably not where the mistake is.
    if err.msg == "invalid syntax" and node.end_point.row - node.start_point.row <= 3:
        return problems
    line_start = sum(len(line) + 1 for line in lines[:row])
    line_end = line_start + len(lines[row])
    col = max(0, (err.offset or 1) - 1)
    start = min(line_start + col, line_end)
    end_col = (err.end_offset or 0) - 1 if err.end_lineno == err.lineno else -1
    end = min(line_start + end_col, line_end) if end_col > col else start
    if end == start and start < line_end:
        end = start + 1  # a zero-width range is nearly invisible in most editors
    refined = list(problems)
    refined[index] = Problem(start, max(start, end), f"Syntax error: {err.msg}", SOURCE, problems[index].code)
    return refined
