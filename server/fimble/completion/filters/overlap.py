"""Text right of the cursor: do not duplicate it, and replace brackets the editor auto-closed."""

from __future__ import annotations

from fimble.completion.filters.suggestion import FilterContext, Suggestion

_CLOSING = set(")]}\"'`")


def merge_with_line_suffix(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    rest = ctx.line_suffix
    if not rest or "\n" in s.text:
        return s
    text = s.text
    stripped = rest.rstrip()
    if stripped and text.endswith(stripped):
        # The suggestion already contains what is right of the cursor (often an auto-closed ")"): replace it.
        return Suggestion(text=text, replace_suffix=len(stripped))
    if stripped and all(ch in _CLOSING for ch in stripped):
        # Only closers to the right: keep the suggestion's own closers and replace the editor's, so `foo(|)` +
        # "a, b)" gives `foo(a, b)` rather than `foo(a, b))`.
        i = len(text)
        matched = 0
        while i > 0 and matched < len(stripped) and text[i - 1] in _CLOSING:
            i -= 1
            matched += 1
        if matched and text[i:] == stripped[:matched]:
            return Suggestion(text=text, replace_suffix=matched)
        return s
    # The suggestion's tail re-types the start of the rest of the line: trim that overlap.
    for size in range(min(len(text), len(stripped)), 2, -1):
        if text.endswith(stripped[:size]):
            return s.with_text(text[:-size])
    return s
