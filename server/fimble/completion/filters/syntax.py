"""A suggestion must not add syntax errors: prefix + suggestion + suffix is parsed with tree-sitter and compared
with prefix + suffix. A suggestion that adds errors is cut back line by line, or dropped."""

from __future__ import annotations

import tree_sitter

from fimble.completion.filters.base import FilterContext, Suggestion
from fimble.syntax.languages import get_parser

# Only a window around the cursor is parsed: the check runs on every suggestion and must stay in milliseconds.
_WINDOW_CHARS = 6000


def count_errors(node: tree_sitter.Node) -> tuple[int, int]:
    """(number of ERROR/MISSING nodes, bytes covered by ERROR nodes) under `node`."""
    if not node.has_error:
        return 0, 0
    if node.is_missing:
        return 1, 0
    if node.is_error:
        return 1, node.end_byte - node.start_byte
    count = size = 0
    for child in node.children:
        c, s = count_errors(child)
        count += c
        size += s
    return count, size


def _errors(parser: tree_sitter.Parser, text: str) -> tuple[int, int]:
    return count_errors(parser.parse(text.encode("utf-8", "surrogatepass")).root_node)


def _not_worse(candidate: tuple[int, int], baseline: tuple[int, int]) -> bool:
    # Fewer errors is better (the suggestion completed something); as many, then no more text swallowed by them.
    return candidate[0] < baseline[0] or (candidate[0] == baseline[0] and candidate[1] <= baseline[1])


def no_new_syntax_errors(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    parser = get_parser(ctx.language_id, ctx.path or None)
    if parser is None:
        return s
    before = _window_start(ctx.prefix)
    after = ctx.suffix[:_WINDOW_CHARS][: _cut_end(ctx.suffix[:_WINDOW_CHARS])]
    rest = after[s.replace_suffix :]
    baseline = _errors(parser, before + after)
    lines = s.text.split("\n")
    while lines:
        candidate = "\n".join(lines)
        if candidate.strip() and _not_worse(_errors(parser, before + candidate + rest), baseline):
            return s.with_text(candidate)
        lines.pop()
    return None


def _window_start(prefix: str) -> str:
    if len(prefix) <= _WINDOW_CHARS:
        return prefix
    window = prefix[-_WINDOW_CHARS:]
    # start at a line that begins at column 0 so the parser does not see half a statement
    for i, ch in enumerate(window):
        if ch == "\n" and i + 1 < len(window) and window[i + 1] not in " \t\n":
            return window[i + 1 :]
    return window


def _cut_end(suffix_window: str) -> int:
    if len(suffix_window) < _WINDOW_CHARS:
        return len(suffix_window)
    end = suffix_window.rfind("\n")
    return end if end > 0 else len(suffix_window)
