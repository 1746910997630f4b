"""The cursor window: prefix and suffix around the cursor, cut to a token budget at line boundaries, then moved to
syntactic boundaries so the model never sees a statement, string or argument list that starts mid-way."""

from __future__ import annotations

import tree_sitter

from fimble.documents.document import byte_offset
from fimble.model.backend import ModelBackend

# Cheap upper bound used before tokenizing: no tokenizer packs more than ~8 characters into a token on code.
_MAX_CHARS_PER_TOKEN = 8
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


# When the prefix must be cut, its first line is a multiple of this many lines into the document: as the user
# types on, the window's start (and so the KV cache for everything after it) stays put for a while instead of
# moving, and forcing a full re-evaluation, with every new line.
PREFIX_GRID_LINES = 16


def cut_prefix(backend: ModelBackend, text: str, budget: int) -> str:
    """The longest tail of `text` that fits `budget` tokens, starting at a line start when it must be cut."""
    if budget <= 0:
        return ""
    full = text
    if len(text) > budget * _MAX_CHARS_PER_TOKEN:
        text = text[-budget * _MAX_CHARS_PER_TOKEN :]
        if "\n" in text:
            text = text[text.index("\n") + 1 :]
    text = _fit_tail(backend, text, budget)
    if len(text) < len(full) and "\n" in text:
        start_line = full.count("\n", 0, len(full) - len(text))
        extra = -start_line % PREFIX_GRID_LINES
        lines = text.split("\n")
        if 0 < extra <= len(lines) // 2:  # never give up more than half the window for the alignment
            text = "\n".join(lines[extra:])
    return text


def _fit_tail(backend: ModelBackend, text: str, budget: int) -> str:
    while text and (n := len(backend.tokenize(text))) > budget:
        # drop roughly the excess share of lines in one step, then at least one line
        lines = text.split("\n")
        drop = max(1, int(len(lines) * (n - budget) / n))
        if len(lines) <= 1:
            return _tail_at_space(text, budget)  # one enormous line
        text = "\n".join(lines[drop:])
    return text


def cut_suffix(backend: ModelBackend, text: str, budget: int) -> str:
    """The longest head of `text` that fits `budget` tokens, ending at a line end when it must be cut."""
    if budget <= 0:
        return ""
    text = text[: budget * _MAX_CHARS_PER_TOKEN]
    while text and (n := len(backend.tokenize(text))) > budget:
        lines = text.split("\n")
        keep = min(len(lines) - 1, int(len(lines) * budget / n))
        if len(lines) <= 1:
            return _head_at_space(text, budget)
        text = "\n".join(lines[:keep])
    return text


def _tail_at_space(text: str, budget: int) -> str:
    """A tail of one very long line of at most `budget` characters (a token is at least one), starting after
    whitespace or punctuation so no identifier is cut in two."""
    tail = text[len(text) - budget :]
    for i, ch in enumerate(tail[: min(len(tail), 200)]):
        if not (ch.isalnum() or ch == "_"):
            return tail[i:]
    return tail


def _head_at_space(text: str, budget: int) -> str:
    head = text[:budget]
    for i in range(len(head) - 1, max(-1, len(head) - 200), -1):
        if not (head[i].isalnum() or head[i] == "_"):
            return head[: i + 1]
    return head


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
