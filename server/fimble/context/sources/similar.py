"""Passages of nearby workspace files that look like the lines before the cursor (see context/passage_search.py).

Measured with `fimble eval --suite repo` on Gemma 3 270M: the masked line's log-probability rose by about two nats
per task with three such passages in the prompt, on top of the definitions source.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from fimble.context.passage_search import ChunkCache, CodeChunk, best_chunks, jaccard, overlaps, query_words
from fimble.context.source_types import Budget, Candidate, Cursor
from fimble.prompt.assemble import Snippet

MAX_PASSAGES = 3
# In an open document a passage already in the prompt stays while it scores at least this share of the best new
# one: a passage that comes and goes makes the model evaluate the whole cursor window after it again.
HOLD_SHARE = 0.5
MIN_SIMILARITY = 0.15
# Recent questions whose answers are kept (all documents together).
ANSWERS_REMEMBERED = 16
MIN_QUERY_WORDS = 3  # the first lines of a file say too little to look for
NEARBY_FILES = 32

Nearby = Callable[[str, str], list[str]]  # (current file, grammar) -> nearby files of that grammar, nearest first
Allowed = Callable[[str], bool]
Cold = Callable[[str, str], None]  # (current file, grammar): read the neighbourhood's files off the request path


class SimilarSource:
    name = "similar"

    def __init__(self, cache: ChunkCache, nearby: Nearby, allowed: Allowed, on_cold: Cold | None = None) -> None:
        self._cache = cache
        self._nearby = nearby
        self._allowed = allowed
        self._on_cold = on_cold
        # The last ranking: typing within a word, or on a line whose words are all seen, asks the same question.
        self._last: tuple[tuple[str, frozenset[str], int], list[tuple[float, CodeChunk]]] | None = None
        self._held: dict[str, list[CodeChunk]] = {}  # per open document: the passages its last prompt held
        # What recent questions got, per document: an undo, or a line typed and deleted, asks one of them again,
        # and the same answer lets the prompt be one the model has seen (its KV cache is still there to restore).
        self._answered: OrderedDict[tuple[str, frozenset[str], int], list[CodeChunk]] = OrderedDict()

    def gather(self, cursor: Cursor, budget: Budget) -> list[Candidate]:
        rel, grammar = cursor.rel, cursor.grammar
        if rel is None or grammar is None:
            return []
        query = query_words(cursor.text, cursor.query.offset)
        if len(query) < MIN_QUERY_WORDS:
            return []
        key = (rel, query, self._cache.version)
        if self._last is not None and self._last[0] == key:
            ranked = self._last[1]
        else:
            ranked, complete = self._rank(rel, grammar, query, budget)
            self._last = (key, ranked) if complete else None
        if cursor.tracked:
            ranked = self._hold(cursor.query.uri, query, ranked)
        out: list[Candidate] = []
        used = 0
        for score, chunk in ranked:
            tokens = budget.count(chunk.text) + budget.count(chunk.path) + 4
            if used + tokens > budget.tokens:
                continue
            used += tokens
            snippet = Snippet(source=self.name, path=chunk.path, text=chunk.text, score=0.3 + 0.5 * score)
            out.append(Candidate(snippet, tokens, key=(self.name, chunk.path, chunk.start_row)))
        return out

    def _hold(
        self, uri: str, query: frozenset[str], ranked: list[tuple[float, CodeChunk]]
    ) -> list[tuple[float, CodeChunk]]:
        """What the same question got lately in this document, if it still reads the same on disk; else the
        document's previous passages that still score well (and still read the same), then the best new ones."""
        floor = max(MIN_SIMILARITY, HOLD_SHARE * ranked[0][0]) if ranked else MIN_SIMILARITY
        # Keyed by the cache's version too: once more files are read, the same question may have a better answer.
        question = (uri, query, self._cache.version)
        answered = self._answered.get(question)
        if answered is not None and all(self._still_reads_so(chunk) for chunk in answered):
            picked = [(jaccard(query, chunk.words), chunk) for chunk in answered]
        else:
            picked = [
                (score, chunk)
                for chunk in self._held.get(uri, [])
                if (score := jaccard(query, chunk.words)) >= floor and self._still_reads_so(chunk)
            ]
            for score, chunk in ranked:
                if len(picked) >= MAX_PASSAGES:
                    break
                if not overlaps(chunk, (p for _, p in picked)):
                    picked.append((score, chunk))
        if len(self._held) > 64:  # documents long closed
            self._held.clear()
        self._held[uri] = [chunk for _, chunk in picked]
        self._answered[question] = self._held[uri]
        self._answered.move_to_end(question)
        while len(self._answered) > ANSWERS_REMEMBERED:
            self._answered.popitem(last=False)
        return picked

    def forget(self, uri: str) -> None:
        """Drop what a closed document's prompts held and asked. Runs on the event loop while `gather` may write on
        the model worker: list() takes the keys in one step (no Python code runs between them under the GIL)."""
        self._held.pop(uri, None)
        for question in list(self._answered):
            if question[0] == uri:
                self._answered.pop(question, None)

    def holds(self, uri: str) -> bool:
        """Whether anything is kept for the document (for tests)."""
        return uri in self._held or any(question[0] == uri for question in list(self._answered))

    def _still_reads_so(self, chunk: CodeChunk) -> bool:
        return chunk in (self._cache.cached(chunk.path) or ())

    def _rank(
        self, rel: str, grammar: str, query: frozenset[str], budget: Budget
    ) -> tuple[list[tuple[float, CodeChunk]], bool]:
        """The best chunks of the nearby files read so far, and whether every nearby file was looked at."""
        chunks: list[CodeChunk] = []
        unread = False
        for path in self._nearby(rel, grammar):
            if budget.expired():
                unread = True
                break
            if path == rel or not self._allowed(path):
                continue
            found = self._cache.cached(path)
            if found is None:
                unread = True
            else:
                chunks.extend(found)
        if unread and self._on_cold is not None:
            self._on_cold(rel, grammar)  # read in the background (or finish ranking) for the next keystroke
        return best_chunks(query, chunks, MAX_PASSAGES, MIN_SIMILARITY), not unread
