"""Suggestions that repeat the code below the cursor, or themselves, are cut or dropped."""

from __future__ import annotations

import re

from fimble.completion.filters.suggestion import FilterContext, Suggestion

_DEGENERATE = re.compile(r"(.{1,12}?)\1{4,}", re.DOTALL)


def stop_at_suffix_repeat(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    """Cut the suggestion where it starts re-typing the lines that already follow the cursor."""
    below = [line.strip() for line in ctx.lines_below if line.strip()][:3]
    if not below:
        return s
    lines = s.text.split("\n")
    for i, line in enumerate(lines):
        if i == 0 and not line.strip():
            continue
        if line.strip() and line.strip() == below[0]:
            # one matching line might be legitimate (e.g. `return x`) when the next ones differ
            following = [ln.strip() for ln in lines[i + 1 : i + 3] if ln.strip()]
            if not following or below[1 : 1 + len(following)] == following or len(below) == 1:
                return s.with_text("\n".join(lines[:i]))
    return s


def drop_degenerate(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    """Cut a looping model's text back to the whole lines before the loop (dropping it when nothing is left): one
    short pattern repeated, a few patterns interleaved, or a line repeated three times (blank lines between or not)."""
    text = s.text
    if "\ufffd" in text:  # bytes that are not UTF-8: keep what came before them
        text = text[: text.index("\ufffd")]
    lines = _without_repeated_lines(text.split("\n"))
    # The model usually writes something sensible and then falls into the loop: keep the part before it.
    while lines and (_looping(lines[-1]) or _looping("\n".join(lines))):
        lines.pop()
    text = "\n".join(lines)
    if not text.strip():
        return None
    return s if text == s.text else s.with_text(text)


def _looping(text: str) -> bool:
    stripped = text.strip()
    for m in _DEGENERATE.finditer(text):
        # indentation is whitespace repeated, not a loop
        if m.group(1).strip() and (m.end() - m.start()) >= 0.6 * len(stripped) and len(stripped) >= 8:
            return True
    # A few patterns interleaved ("fovfovRJ2fovfov...") escape the regex; they have far fewer distinct trigrams
    # per character than code (measured: loops ~0.1, code 0.4-0.7).
    return len(text) >= 48 and len({text[i : i + 3] for i in range(len(text) - 2)}) < 0.2 * len(text)


def _without_repeated_lines(lines: list[str]) -> list[str]:
    """The lines up to a line's third appearance in a row (blank lines between them do not break the row), with
    the repeats and the blank lines after its first appearance left out."""
    run = 0
    first = last = -1  # where the current row of equal lines began; the last non-blank line
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if last >= 0 and line == lines[last]:
            run += 1
            if run >= 2:  # the same line three times: the model is looping; keep its first occurrence
                return lines[: first + 1]
        else:
            run = 0
            first = i
        last = i
    return lines
