"""The cursor window's edges moved to syntactic boundaries (after `prompt/budget.py` cut it to its token budget at
line boundaries), so the model never sees a statement, string or argument list that starts mid-way."""

from __future__ import annotations

import tree_sitter

from fimble.documents.document import byte_offset

# How far (in lines) a window edge may move to reach a boundary; beyond it the line cut stands.
SNAP_LINES = 12
# Nodes whose direct children are statements or declarations: a line starting one of those children starts a
# complete syntactic unit.
BLOCKS = frozenset(
    {
        "module", "block", "program", "source_file", "translation_unit", "chunk", "statement_block",
        "compound_statement", "declaration_list", "class_body", "field_declaration_list", "interface_body",
        "enum_body", "statement_list", "switch_body", "constructor_body", "switch_block", "class_declaration_list",
        "do_group", "else_clause", "if_statement", "for_statement", "while_statement",
    }
)  # fmt: skip


def statement_start(tree: tree_sitter.Tree, text: str, line_start: int) -> bool:
    """Whether the line starting at string offset `line_start` begins a statement or declaration (or is blank)."""
    end = text.find("\n", line_start)
    line = text[line_start : end if end != -1 else len(text)]
    stripped = line.lstrip()
    if not stripped.strip():
        return True
    b = byte_offset(text, line_start + len(line) - len(stripped))
    node: tree_sitter.Node | None = tree.root_node.descendant_for_byte_range(b, b)
    if node is None:
        return False
    while node.parent is not None and node.parent.start_byte == b:
        node = node.parent
    if node.start_byte != b:
        return False  # inside a token that began on an earlier line (a multi-line string or comment)
    parent = node.parent
    return parent is None or parent.type in BLOCKS or node.type in BLOCKS


def snap_window(tree: tree_sitter.Tree | None, text: str, cursor: int, start: int, end: int) -> tuple[int, int]:
    """Move the prefix start forward and the suffix end backward (never into the cursor's line) to the nearest line
    that starts a statement; without a tree, to a line after a blank one. The window only shrinks, so its token
    budget still holds."""

    def boundary(pos: int) -> bool:
        if tree is not None:
            return statement_start(tree, text, pos)
        if pos < 1:
            return True
        prev_start = text.rfind("\n", 0, pos - 1) + 1
        return not text[prev_start : pos - 1].strip()

    if 0 < start < cursor and text[start - 1] == "\n":
        cursor_line_start = text.rfind("\n", 0, cursor) + 1
        pos = start
        for _ in range(SNAP_LINES):
            if pos > cursor_line_start:
                break
            if boundary(pos):
                start = pos
                break
            pos = text.find("\n", pos) + 1
    if cursor < end < len(text):
        limit = text.find("\n", cursor)
        pos = end + 1 if text[end] == "\n" else text.rfind("\n", 0, end) + 1
        for _ in range(SNAP_LINES):
            if limit == -1 or pos <= limit:
                break
            if boundary(pos):
                end = min(pos, end)
                break
            pos = text.rfind("\n", 0, pos - 1) + 1
    return start, end
