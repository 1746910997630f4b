"""Uncommitted changes in other files, as "recent changes": the code the user is in the middle of writing elsewhere.

Hunks come from a cache the indexing thread refreshes (git runs a subprocess; never on the keystroke path). Each hunk
is shown as its post-image, the code as it now reads, which a code model continues better than a diff.
"""

from __future__ import annotations

from collections.abc import Callable

from fimble.context.source_types import Budget, Candidate, Cursor
from fimble.index.gitinfo import Hunk
from fimble.prompt.assemble import Snippet

MAX_LINES_PER_FILE = 60

Hunks = Callable[[], dict[str, list[Hunk]]]
Allowed = Callable[[str], bool]
CoChange = Callable[[str, str], float]


class GitSource:
    name = "git"

    def __init__(self, hunks: Hunks, allowed: Allowed, co_change: CoChange | None = None) -> None:
        self._hunks = hunks
        self._allowed = allowed
        self._co_change = co_change

    def gather(self, cursor: Cursor, budget: Budget) -> list[Candidate]:
        current = cursor.rel or cursor.query.path
        files = [(path, hunks) for path, hunks in self._hunks().items() if path != current]
        ranked = []
        for path, hunks in files:
            if not self._allowed(path):
                continue
            changed = sum(h.added + h.removed for h in hunks)
            score = 0.3 + min(0.1, changed / 200)
            if self._co_change is not None:
                score += 0.3 * self._co_change(current, path)
            ranked.append((score, path, hunks))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        out = []
        used = 0
        for score, path, hunks in ranked:
            if budget.expired():
                break
            text = render_hunks(hunks)
            tokens = budget.count(text) + budget.count(path) + 4
            if used + tokens > budget.tokens:
                continue
            used += tokens
            out.append(Candidate(Snippet(self.name, path, text, score), tokens, key=(self.name, path)))
        return out


def render_hunks(hunks: list[Hunk], max_lines: int = MAX_LINES_PER_FILE) -> str:
    parts = []
    total = 0
    for hunk in sorted(hunks, key=lambda h: h.start):
        lines = list(hunk.lines[: max(0, max_lines - total)])
        if not lines:
            break
        total += len(lines)
        parts.append("\n".join(lines))
    return "\n...\n".join(parts)
