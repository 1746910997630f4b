from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property


@dataclass(frozen=True)
class Suggestion:
    """Text to insert at the cursor, replacing `replace_suffix` characters to the right of it."""

    text: str
    replace_suffix: int = 0

    def with_text(self, text: str) -> Suggestion:
        return replace(self, text=text)


@dataclass(frozen=True)
class FilterContext:
    prefix: str  # the whole document before the cursor
    suffix: str  # the whole document after the cursor
    language_id: str
    path: str = ""

    @cached_property
    def line_prefix(self) -> str:
        return self.prefix[self.prefix.rfind("\n") + 1 :]

    @cached_property
    def line_suffix(self) -> str:
        end = self.suffix.find("\n")
        return self.suffix if end == -1 else self.suffix[:end]

    @cached_property
    def lines_below(self) -> list[str]:
        """Up to 50 lines after the cursor's line (the suffix without the rest of the current line)."""
        end = self.suffix.find("\n")
        if end == -1:
            return []
        return self.suffix[end + 1 :].split("\n", 50)[:50]

    @cached_property
    def indent_unit(self) -> str:
        """The file's indentation unit: a tab, or the most common step between space indents (default 4)."""
        return detect_indent_unit(self.prefix[-20000:] + "\n" + self.suffix[:20000])


Filter = Callable[[Suggestion, FilterContext], Suggestion | None]


@dataclass(frozen=True)
class Filtered:
    """What the filters left, and (when nothing) the name of the filter that dropped the suggestion."""

    suggestion: Suggestion | None
    dropped_by: str = ""


def run_filters(suggestion: Suggestion, ctx: FilterContext, filters: Sequence[Filter]) -> Filtered:
    """The filters in order. Many cut a suggestion down to nothing rather than drop it (the scope filter cuts at the
    block's end) and `drop_empty` then drops it: the one that emptied it is named, as that says why."""
    current = suggestion
    emptied_by = "" if suggestion.text.strip() else "the model"
    for step in filters:
        name = getattr(step, "__name__", repr(step))
        shaped = step(current, ctx)
        if shaped is None:
            return Filtered(None, emptied_by or name)
        if not emptied_by and not shaped.text.strip():
            emptied_by = name
        current = shaped
    return Filtered(current)


def apply_filters(suggestion: Suggestion, ctx: FilterContext, filters: Sequence[Filter]) -> Suggestion | None:
    return run_filters(suggestion, ctx, filters).suggestion


def indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def indent_width(line: str, tab: int = 4) -> int:
    return len(indent_of(line).expandtabs(tab))


def detect_indent_unit(text: str) -> str:
    tabs = spaces = 0
    steps: dict[int, int] = {}
    previous = 0
    for line in text.split("\n"):
        if not line.strip():
            continue
        lead = indent_of(line)
        if lead.startswith("\t"):
            tabs += 1
            continue
        width = len(lead)
        if width:
            spaces += 1
        if width > previous:
            step = width - previous
            steps[step] = steps.get(step, 0) + 1
        previous = width
    if tabs > spaces:
        return "\t"
    if not steps:
        return "    "
    best = max(sorted(steps), key=lambda s: steps[s])
    return " " * best if best in (2, 3, 4, 8) else "    "
