from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace


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

    @property
    def line_prefix(self) -> str:
        return self.prefix[self.prefix.rfind("\n") + 1 :]

    @property
    def line_suffix(self) -> str:
        end = self.suffix.find("\n")
        return self.suffix if end == -1 else self.suffix[:end]


Filter = Callable[[Suggestion, FilterContext], Suggestion | None]


def apply_filters(suggestion: Suggestion, ctx: FilterContext, filters: Sequence[Filter]) -> Suggestion | None:
    current: Suggestion | None = suggestion
    for step in filters:
        if current is None:
            return None
        current = step(current, ctx)
    return current
