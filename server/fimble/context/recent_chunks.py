"""A bounded ring of code chunks the user recently edited or viewed (llama.vim's extra context).

Pure data structure: no threads, no LSP. A new chunk evicts near-duplicates of itself (an older version of the same
region), and the oldest chunk goes when the ring is full.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

CHUNK_LINES = 64
RING_SIZE = 16
EVICT_SIMILARITY = 0.9  # a new chunk replaces older chunks this similar to it
MIN_CHUNK_CHARS = 32


@dataclass(frozen=True)
class Chunk:
    path: str  # workspace-relative path
    uri: str
    start_row: int
    text: str
    seq: int  # insertion order: stable prompt order, recency for ranking
    lines: frozenset[str] = frozenset()  # its distinct stripped lines, kept for similarity checks per keystroke


def line_set(text: str) -> frozenset[str]:
    return frozenset(stripped for line in text.splitlines() if (stripped := line.strip()))


def set_similarity(la: frozenset[str], lb: frozenset[str]) -> float:
    """Dice coefficient of two sets of lines (llama.vim's chunk similarity)."""
    if not la or not lb:
        return 0.0
    return 2 * len(la & lb) / (len(la) + len(lb))


def line_similarity(a: str, b: str) -> float:
    """Dice coefficient of the two texts' sets of non-blank stripped lines."""
    return set_similarity(line_set(a), line_set(b))


def chunk_around(lines: list[str], row: int, size: int = CHUNK_LINES) -> tuple[int, str]:
    """The `size` lines centred on `row`, clipped to the text: (first row, text)."""
    start = max(0, min(row - size // 2, len(lines) - size))
    return start, "\n".join(lines[start : start + size])


class Ring:
    def __init__(self, size: int = RING_SIZE, evict_similarity: float = EVICT_SIMILARITY) -> None:
        self.size = size
        self.evict_similarity = evict_similarity
        self._chunks: list[Chunk] = []
        self._seq = 0
        self._lock = threading.Lock()

    def add(self, path: str, uri: str, start_row: int, text: str) -> Chunk | None:
        """Add a chunk; returns it, or None when it is too small or already present verbatim."""
        if len(text.strip()) < MIN_CHUNK_CHARS:
            return None
        with self._lock:
            if any(c.uri == uri and c.text == text for c in self._chunks):
                return None
            self._seq += 1
            chunk = Chunk(path, uri, start_row, text, self._seq, line_set(text))
            self._chunks = [c for c in self._chunks if set_similarity(c.lines, chunk.lines) < self.evict_similarity]
            self._chunks.append(chunk)
            if len(self._chunks) > self.size:
                del self._chunks[: len(self._chunks) - self.size]
            return chunk

    def chunks(self) -> list[Chunk]:
        with self._lock:
            return list(self._chunks)

    def __len__(self) -> int:
        return len(self._chunks)
