"""Recently edited and viewed code from other files, from the engine's ring of chunks.

Chunks very similar to the text around the cursor are dropped: a model shown a near-copy of what it is completing
tends to copy it back instead of continuing the code.
"""

from __future__ import annotations

from collections.abc import Callable

from fimble.context.recent_chunks import Ring, line_set, set_similarity
from fimble.context.source_types import Budget, Candidate, Cursor, lines_back
from fimble.prompt.assemble import Snippet

CURSOR_SIMILARITY = 0.5
_AROUND_CURSOR_LINES = 32

Allowed = Callable[[str], bool]
CoChange = Callable[[str, str], float]


class RingSource:
    name = "ring"

    def __init__(self, ring: Ring, allowed: Allowed, co_change: CoChange | None = None) -> None:
        self._ring = ring
        self._allowed = allowed
        self._co_change = co_change

    def gather(self, cursor: Cursor, budget: Budget) -> list[Candidate]:
        chunks = [c for c in self._ring.chunks() if c.uri != cursor.query.uri and c.path != cursor.query.path]
        if not chunks:
            return []
        around = line_set(_around(cursor.text, cursor.query.offset))
        newest = max(c.seq for c in chunks)
        out = []
        used = 0
        for chunk in sorted(chunks, key=lambda c: -c.seq):
            if budget.expired():
                break
            if not self._allowed(chunk.path) or set_similarity(chunk.lines, around) > CURSOR_SIMILARITY:
                continue
            score = 0.5 - 0.02 * (newest - chunk.seq)
            if self._co_change is not None:
                score += 0.15 * self._co_change(cursor.query.path, chunk.path)
            tokens = budget.count(chunk.text) + budget.count(chunk.path) + 4
            if used + tokens > budget.tokens:
                continue
            used += tokens
            snippet = Snippet(source=self.name, path=chunk.path, text=chunk.text, score=score)
            out.append(Candidate(snippet, tokens, key=(self.name, chunk.seq)))
        return out


def _around(text: str, offset: int) -> str:
    start = lines_back(text, offset, _AROUND_CURSOR_LINES)
    end = offset
    for _ in range(_AROUND_CURSOR_LINES // 2):
        nxt = text.find("\n", end + 1)
        if nxt == -1:
            end = len(text)
            break
        end = nxt
    return text[start:end]
