"""The shape every context source shares: (cursor, budget) -> ranked candidate snippets.

A source is a class with a `name` and a `gather(cursor, budget)` method. It must respect `budget.tokens` (estimated)
and check `budget.expired()` inside any loop, because sources run on the request's path and a slow one must give up
rather than delay the completion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import tree_sitter

from fimble.prompt.assemble import Snippet
from fimble.syntax.specs import LangSpec

TokenCounter = Callable[[str], int]


def lines_back(text: str, offset: int, lines: int) -> int:
    """Where the text `lines` line breaks before `offset` starts (at that line break; 0 at the top of the file)."""
    start = offset
    for _ in range(lines):
        start = text.rfind("\n", 0, start)
        if start <= 0:
            return 0
    return start


@dataclass(frozen=True)
class ContextQuery:
    """What the pipeline knows about a request; the engine derives the rest (tree, grammar, workspace path)."""

    text: str
    offset: int  # string index of the cursor
    language_id: str
    path: str  # workspace-relative path (shown to the model)
    uri: str = ""
    window: tuple[int, int] | None = None  # string offsets of the cursor window already in the prompt


@dataclass
class Budget:
    tokens: int
    deadline: float  # time.monotonic()
    count: TokenCounter

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


@dataclass
class Cursor:
    """A request as the sources see it: text, tree and positions computed once by the engine."""

    query: ContextQuery
    rel: str | None  # path relative to the indexed root; None outside it
    grammar: str | None
    spec: LangSpec | None
    tree: tree_sitter.Tree | None
    src: bytes  # UTF-8 of query.text (what tree byte offsets index)
    cursor_byte: int
    row: int  # 0-based line of the cursor
    window_rows: tuple[int, int]  # first and last line of the cursor window (inclusive)
    tracked: bool = False  # a document open in the editor (keystroke after keystroke), not a one-off request

    @property
    def text(self) -> str:
        return self.query.text

    def in_window(self, row: int) -> bool:
        return self.window_rows[0] <= row <= self.window_rows[1]


@dataclass
class Candidate:
    """A snippet a source proposes, with its estimated token cost and a stable key for ordering in the prompt."""

    snippet: Snippet
    tokens: int
    key: tuple[str | int, ...] = ()


class Source(Protocol):
    name: str

    def gather(self, cursor: Cursor, budget: Budget) -> list[Candidate]: ...


@dataclass
class ContextResult:
    snippets: list[Snippet] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)  # per source, plus "syntax" for the tree update
    tokens: dict[str, int] = field(default_factory=dict)  # estimated tokens kept, per source
    notes: dict[str, str] = field(default_factory=dict)  # why a source gave nothing (off, deadline, no index...)
    snap: Callable[[int, int], tuple[int, int]] | None = None  # moves window edges to syntactic boundaries


class ContextProvider(Protocol):
    """What the completion pipeline needs from the context engine."""

    def gather(
        self,
        query: ContextQuery,
        sources: tuple[str, ...],
        budget_tokens: int,
        count_tokens: TokenCounter,
        deadline: float,
    ) -> ContextResult: ...
