"""Re-parse a text that differs from an already parsed one, reusing the old tree.

Callers that only hold two texts (not the editor's edits) get the edit as the one span where they differ: between
keystrokes, and between a text and the same text with a suggestion inserted, that span is a few characters, so
tree-sitter re-parses a few nodes instead of the whole text.
"""

from __future__ import annotations

from dataclasses import dataclass

import tree_sitter

from fimble.documents.document import byte_offset


@dataclass(frozen=True)
class SpanEdit:
    start: int  # string indices: old[start:old_end] became new[start:new_end]
    old_end: int
    new_end: int


def common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common prefix, by binary search over slice comparisons (C speed on long texts)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_suffix_len(a: str, b: str, limit: int) -> int:
    """Length of the longest common suffix, at most `limit`."""
    lo, hi = 0, min(len(a), len(b), limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def span_edit(old: str, new: str) -> SpanEdit | None:
    """The single span that turns `old` into `new`; None when they are equal."""
    if old == new:
        return None
    start = common_prefix_len(old, new)
    tail = common_suffix_len(old, new, min(len(old), len(new)) - start)
    return SpanEdit(start, len(old) - tail, len(new) - tail)


def _point(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index), byte_offset(text[line_start:index], index - line_start)


def reparse(parser: tree_sitter.Parser, old_text: str, old_tree: tree_sitter.Tree, new_text: str) -> tree_sitter.Tree:
    """The tree of `new_text`, parsed incrementally from `old_tree` (the tree of `old_text`, left untouched)."""
    edit = span_edit(old_text, new_text)
    if edit is None:
        return old_tree
    tree = old_tree.copy()
    tree.edit(
        start_byte=byte_offset(old_text, edit.start),
        old_end_byte=byte_offset(old_text, edit.old_end),
        new_end_byte=byte_offset(new_text, edit.new_end),
        start_point=_point(old_text, edit.start),
        old_end_point=_point(old_text, edit.old_end),
        new_end_point=_point(new_text, edit.new_end),
    )
    return parser.parse(new_text.encode("utf-8", "surrogatepass"), tree)
