"""The filters every suggestion passes (the foundation set; shaping filters build on these)."""

from __future__ import annotations

from fimble.completion.filters.base import Filter, FilterContext, Suggestion


def normalize_newlines(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    return s.with_text(s.text.replace("\r\n", "\n").replace("\r", "\n"))


def finish_line_when_mid_line(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    """With code right of the cursor, the suggestion only finishes the current line."""
    if ctx.line_suffix.strip():
        return s.with_text(s.text.split("\n", 1)[0])
    return s


def trim_trailing_whitespace(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    lines = [line.rstrip() for line in s.text.split("\n")]
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    return s.with_text("\n".join(lines))


def drop_empty(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    return s if s.text.strip() else None


DEFAULT_FILTERS: tuple[Filter, ...] = (
    normalize_newlines,
    finish_line_when_mid_line,
    trim_trailing_whitespace,
    drop_empty,
)
