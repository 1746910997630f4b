"""The smallest enclosing syntactic unit of a range: what a fix rewrites and what an explanation shows as scope.

The unit is the smallest statement-like node around the range (an ERROR node counts, with the lines indented under
it), or the whole enclosing function when that is short (small models fix a short function more reliably than one of
its lines), else a window of lines when there is no grammar.
Units always cover whole lines, so a rewrite keeps the surrounding indentation intact.
"""

from __future__ import annotations

from dataclasses import dataclass

import tree_sitter

from fimble.documents.document import ByteMap

MAX_UNIT_LINES = 60
SMALL_DEFINITION_LINES = 12
WINDOW_LINES = 3

# Node types that are containers of statements: a named child of one of these is statement-like in any grammar.
_BLOCKS = frozenset({
    "module", "program", "source_file", "translation_unit", "chunk", "block", "compound_statement",
    "statement_block", "class_body", "declaration_list", "field_declaration_list", "interface_body", "enum_body",
    "switch_body", "switch_block", "case_clause", "default_clause", "expression_case", "default_case",
    "function_body", "do_group",
})  # fmt: skip
_DEFINITION_WORDS = ("function", "method", "class", "impl", "struct", "interface", "constructor", "arrow_function")
_DEFINITION_ENDINGS = ("_definition", "_declaration", "_item", "_specifier", "arrow_function", "function_expression")


@dataclass(frozen=True)
class Unit:
    start: int  # string index of the first character of the unit's first line
    end: int  # string index of the end of its last line (before the newline)
    kind: str  # the tree-sitter node type, or "lines"
    name: str = ""

    def text(self, source: str) -> str:
        return source[self.start : self.end]

    def lines(self, source: str) -> tuple[int, int]:
        """0-based first and last line."""
        first = source.count("\n", 0, self.start)
        return first, first + source.count("\n", self.start, self.end)


def line_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Expand [start, end) to whole lines (without the final newline)."""
    begin = text.rfind("\n", 0, start) + 1
    stop = text.find("\n", max(end, start))
    if end > start and end > 0 and text[end - 1] == "\n":
        stop = end - 1  # a range ending right after a newline does not include the next line
    return begin, len(text) if stop == -1 else stop


def is_definition(node: tree_sitter.Node) -> bool:
    t = node.type
    return any(w in t for w in _DEFINITION_WORDS) and (t.endswith(_DEFINITION_ENDINGS) or t == "arrow_function")


def _name_of(node: tree_sitter.Node) -> str:
    name = node.child_by_field_name("name")
    if name is None:
        declarator = node.child_by_field_name("declarator")
        while declarator is not None and declarator.child_by_field_name("declarator") is not None:
            declarator = declarator.child_by_field_name("declarator")
        name = declarator
    return name.text.decode("utf-8", errors="replace") if name is not None and name.text else ""


def _statement_like(node: tree_sitter.Node) -> bool:
    parent = node.parent
    return parent is not None and node.is_named and (parent.type in _BLOCKS or parent.parent is None)


def _with_decorators(node: tree_sitter.Node) -> tree_sitter.Node:
    parent = node.parent
    if parent is not None and parent.type in ("decorated_definition", "export_statement"):
        return parent
    return node


def _ancestors(node: tree_sitter.Node | None) -> list[tree_sitter.Node]:
    chain: list[tree_sitter.Node] = []
    while node is not None:
        chain.append(node)
        node = node.parent
    return chain


def enclosing_unit(text: str, tree: tree_sitter.Tree | None, start: int, end: int) -> Unit:
    """The unit a fix for [start, end) rewrites."""
    if tree is not None:
        bmap = ByteMap(text)
        b0, b1 = bmap.to_byte(start), bmap.to_byte(max(start, end))
        if b0 == b1 and b0 > 0:
            # A zero-width problem (a MISSING token) sits right after the token it should follow; at the end of the
            # file it would otherwise find no node but the root.
            b0 -= 1
        chain = _ancestors(tree.root_node.descendant_for_byte_range(b0, b1))
        root = tree.root_node
        candidates = [n for n in chain if n is not root]

        def fits(node: tree_sitter.Node) -> bool:
            lines = node.end_point.row - node.start_point.row + 1
            return lines <= MAX_UNIT_LINES or lines == 1

        # A short definition is rewritten whole: small models fix a whole short function more reliably than one
        # line of it, and the fix may need its parameters. In a longer one, the smallest statement is the unit.
        for node in candidates:
            if is_definition(node):
                if _rows(node) <= SMALL_DEFINITION_LINES:
                    node = _with_decorators(node)
                    s, e = line_span(text, bmap.to_index(node.start_byte), bmap.to_index(node.end_byte))
                    return Unit(s, e, node.type, _name_of(node))
                break
        for node in candidates:
            if (_statement_like(node) or node.is_error) and fits(node):
                s, e = line_span(text, bmap.to_index(node.start_byte), bmap.to_index(node.end_byte))
                if node.is_error:
                    e = _with_indented_body(text, s, e)
                return Unit(s, e, node.type, _name_of(node))
    return _line_window(text, start, end)


def _rows(node: tree_sitter.Node) -> int:
    return node.end_point.row - node.start_point.row + 1


def _with_indented_body(text: str, start: int, end: int) -> int:
    """Extend an ERROR unit over the lines indented under its first line: a header the parser could not finish
    ("def f(x)" without its colon) leaves its body outside the ERROR node, and the fix needs both."""
    first = text[start : text.find("\n", start) if "\n" in text[start:] else len(text)]
    indent = len(first) - len(first.lstrip())
    pos = end
    taken = text.count("\n", start, end) + 1
    while pos < len(text) and taken < MAX_UNIT_LINES:
        nxt = text.find("\n", pos + 1)
        line = text[pos + 1 : nxt if nxt != -1 else len(text)]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        pos = nxt if nxt != -1 else len(text)
        taken += 1
    # Trailing blank lines belong to what follows.
    while pos > end and not text[text.rfind("\n", 0, pos) + 1 : pos].strip():
        pos = text.rfind("\n", 0, pos)
    return max(end, pos)


def _line_window(text: str, start: int, end: int) -> Unit:
    """A few lines around the range, stopping at blank lines: no grammar, or no node small enough."""
    lines = text.split("\n")
    first = text.count("\n", 0, start)
    last = text.count("\n", 0, max(start, end))
    lo, hi = first, last
    while lo > 0 and first - lo < WINDOW_LINES and lines[lo - 1].strip():
        lo -= 1
    while hi < len(lines) - 1 and hi - last < WINDOW_LINES and lines[hi + 1].strip():
        hi += 1
    s = sum(len(line) + 1 for line in lines[:lo])
    e = sum(len(line) + 1 for line in lines[: hi + 1]) - 1
    return Unit(s, max(s, e), "lines")


def enclosing_definition(text: str, tree: tree_sitter.Tree | None, start: int, end: int) -> Unit | None:
    """The innermost function/class around a range (for an explanation's scope), whatever its size."""
    if tree is None:
        return None
    bmap = ByteMap(text)
    node = tree.root_node.descendant_for_byte_range(bmap.to_byte(start), bmap.to_byte(max(start, end)))
    for n in _ancestors(node):
        if is_definition(n):
            n = _with_decorators(n)
            s, e = line_span(text, bmap.to_index(n.start_byte), bmap.to_index(n.end_byte))
            return Unit(s, e, n.type, _name_of(_definition_core(n)))
    return None


def _definition_core(node: tree_sitter.Node) -> tree_sitter.Node:
    if node.type == "decorated_definition":
        inner = node.child_by_field_name("definition")
        if inner is not None:
            return inner
    return node


def identifiers(tree: tree_sitter.Tree | None, text: str, start: int, end: int, limit: int = 40) -> list[str]:
    """Distinct identifier names used in [start, end), in order of first use (for definition look-ups)."""
    if tree is None:
        return []
    bmap = ByteMap(text)
    b0, b1 = bmap.to_byte(start), bmap.to_byte(end)
    seen: dict[str, None] = {}
    stack = [tree.root_node]
    while stack and len(seen) < limit:
        node = stack.pop()
        if node.end_byte <= b0 or node.start_byte >= b1:
            continue
        if node.type in ("identifier", "type_identifier", "field_identifier", "property_identifier") and node.text:
            seen.setdefault(node.text.decode("utf-8", errors="replace"), None)
        stack.extend(reversed(node.children))
    return list(seen)
