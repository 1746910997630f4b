"""A suggestion must not add syntax errors: prefix + suggestion + suffix is parsed with tree-sitter and compared
with prefix + suffix. A suggestion that adds errors is cut back line by line, or dropped."""

from __future__ import annotations

import threading

import tree_sitter

from fimble.completion.filters.suggestion import FilterContext, Suggestion
from fimble.syntax.error_nodes import ErrorCount, count_errors
from fimble.syntax.grammars import get_parser
from fimble.syntax.reparse import reparse

# Only a window around the cursor is parsed (about 50 lines each side, reaching back to a line at column 0): the
# check runs on every suggestion, and tree-sitter's error recovery on half-typed code costs about a millisecond per
# 1,000 characters.
_WINDOW_CHARS = 2000
# The window's start moves in steps of this many characters, so between keystrokes the parsed text changes only
# at the cursor and the last tree can be re-parsed incrementally.
_WINDOW_GRID = 1024


class _LastParse:
    """The last window parsed per grammar, so the next keystroke's window (and each candidate, which is that
    window plus a suggestion) is parsed incrementally from it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[int, tuple[str, tree_sitter.Tree]] = {}

    def parse(self, parser: tree_sitter.Parser, text: str) -> tree_sitter.Tree:
        key = id(parser.language)
        with self._lock:
            last = self._last.get(key)
        if last is None or abs(len(last[0]) - len(text)) > _WINDOW_GRID:
            tree = parser.parse(text.encode("utf-8", "surrogatepass"))
        else:
            tree = reparse(parser, last[0], last[1], text)
        with self._lock:
            self._last[key] = (text, tree)
        return tree


_last_parse = _LastParse()


def _not_worse(candidate: ErrorCount, baseline: ErrorCount) -> bool:
    # Fewer errors is better (the suggestion completed something); as many, then no more text swallowed by them.
    return candidate.nodes < baseline.nodes or (
        candidate.nodes == baseline.nodes and candidate.error_bytes <= baseline.error_bytes
    )


def no_new_syntax_errors(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    parser = get_parser(ctx.language_id, ctx.path or None)
    if parser is None:
        return s
    before = _window_start(ctx.prefix)
    after = ctx.suffix[:_WINDOW_CHARS][: _cut_end(ctx.suffix[:_WINDOW_CHARS])]
    rest = after[s.replace_suffix :]
    base_text = before + after
    base_tree = _last_parse.parse(parser, base_text)
    baseline = count_errors(base_tree)
    lines = s.text.split("\n")
    while lines:
        candidate = "\n".join(lines)
        if candidate.strip():
            tree = reparse(parser, base_text, base_tree, before + candidate + rest)
            if _not_worse(count_errors(tree), baseline):
                return s.with_text(candidate)
        lines.pop()
    return None


def _window_start(prefix: str) -> str:
    if len(prefix) <= _WINDOW_CHARS:
        return prefix
    start = len(prefix) - _WINDOW_CHARS
    start -= start % _WINDOW_GRID
    # Back to the nearest line that starts at column 0, however far: parsed from inside an indented block or a
    # docstring, the window is all errors, and then a perfectly good suggestion can look like it adds some.
    while start > 0:
        line = prefix.rfind("\n", 0, start) + 1
        if prefix[line : line + 1] not in _NOT_A_STATEMENT_START:
            return prefix[line:]
        start = line - 1
    return prefix


# First characters of a line that cannot begin a top-level statement ("" is an empty line).
_NOT_A_STATEMENT_START = frozenset({"", " ", "\t", "\r", "\n", ")", "]", "}"})


def _cut_end(suffix_window: str) -> int:
    if len(suffix_window) < _WINDOW_CHARS:
        return len(suffix_window)
    end = suffix_window.rfind("\n")
    return end if end > 0 else len(suffix_window)
