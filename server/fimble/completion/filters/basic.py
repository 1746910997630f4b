"""Small, always-on clean-ups."""

from __future__ import annotations

from fimble.completion.filters.suggestion import FilterContext, Suggestion


def normalize_newlines(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    return s.with_text(s.text.replace("\r\n", "\n").replace("\r", "\n"))


def trim_trailing_whitespace(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    """No trailing spaces on any line and no trailing blank lines; a lone leading newline is kept (next line)."""
    lines = [line.rstrip() for line in s.text.split("\n")]
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    return s.with_text("\n".join(lines))


def drop_empty(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    return s if s.text.strip() else None
