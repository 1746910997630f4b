"""Code elsewhere in the workspace that looks like the code just before the cursor.

Copilot's neighbouring-tab snippets, RepoCoder's sparse retrieval and Tabby's code search all rest on the same
observation: a package repeats itself (the same call shapes, the same error handling, the same test set-up), and a
model shown a similar passage from another file copies its shape. Files are cut into overlapping windows of lines;
a window's similarity to the lines before the cursor is the Jaccard index of their sets of identifiers. As in
RepoCoder, a passage shows the lines that follow its window too: the window matched what the user has written, and
what came next there is the part that says what to write next here.

Pure functions plus one small cache of chunked files; which files to look at is the caller's business.
"""

from __future__ import annotations

import heapq
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fimble.context.source_types import lines_back
from fimble.index.workspace_files import read_source
from fimble.trust.paths import confine, resolve

CHUNK_LINES = 12  # also the number of lines before the cursor that make the query
CHUNK_STRIDE = 4
FOLLOWING_LINES = 6  # lines after a window shown with it (not matched on)
MIN_CHUNK_WORDS = 4  # a window of blank lines and brackets matches everything a little
CACHED_FILES = 512

_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


@dataclass(frozen=True)
class CodeChunk:
    path: str  # workspace-relative
    start_row: int
    text: str  # the window and the lines that follow it
    words: frozenset[str]  # the window's identifiers


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


def chunk_text(
    path: str, text: str, lines: int = CHUNK_LINES, stride: int = CHUNK_STRIDE, following: int = FOLLOWING_LINES
) -> list[CodeChunk]:
    """Overlapping windows of `lines` lines every `stride` lines (one window for a shorter file), each shown with
    the `following` lines after it."""
    rows = text.splitlines()
    out: list[CodeChunk] = []
    for start in range(0, max(1, len(rows) - lines + stride), stride):
        found = words("\n".join(rows[start : start + lines]))
        if len(found) >= MIN_CHUNK_WORDS:
            out.append(CodeChunk(path, start, "\n".join(rows[start : start + lines + following]), found))
        if start + lines >= len(rows):
            break
    return out


def query_words(text: str, offset: int, lines: int = CHUNK_LINES) -> frozenset[str]:
    """Identifiers of the `lines` lines that end at the cursor (the line being typed included, less a word still
    being typed: the query then stays the same for every keystroke of a word)."""
    start = lines_back(text, offset, lines)
    end = offset
    while end > start and (text[end - 1].isalnum() or text[end - 1] in "_$"):
        end -= 1
    return words(text[start:end])


def overlaps(chunk: CodeChunk, others: Iterable[CodeChunk]) -> bool:
    return any(o.path == chunk.path and abs(o.start_row - chunk.start_row) < CHUNK_LINES for o in others)


def best_chunks(
    query: frozenset[str], chunks: Iterable[CodeChunk], limit: int, min_similarity: float
) -> list[tuple[float, CodeChunk]]:
    """The `limit` most similar chunks, best first, no two overlapping in the same file."""
    scored = ((jaccard(query, c.words), c) for c in chunks)
    ranked = heapq.nlargest(limit * 4, (sc for sc in scored if sc[0] >= min_similarity), key=lambda sc: sc[0])
    picked: list[tuple[float, CodeChunk]] = []
    for score, chunk in ranked:
        if not overlaps(chunk, (p for _, p in picked)):
            picked.append((score, chunk))
            if len(picked) == limit:
                break
    return picked


class ChunkCache:
    """Chunked workspace files, re-read when their size or modification time changes; the least recently used
    file goes when the cache is full. Safe to share between the request path and the background worker."""

    def __init__(self, root: Path | None, max_files: int = CACHED_FILES) -> None:
        self.root = root
        self._real_root = resolve(root) if root is not None else None  # what every read is confined to
        self.max_files = max_files
        self._files: OrderedDict[str, tuple[int, int, list[CodeChunk]]] = OrderedDict()
        self._lock = threading.Lock()
        self.version = 0  # changes whenever a file is read: answers computed from the cache are stale then

    def cached(self, rel: str) -> list[CodeChunk] | None:
        """The file's chunks as last read, without touching the disk (the request path); None if never read."""
        with self._lock:
            hit = self._files.get(rel)
            if hit is None:
                return None
            self._files.move_to_end(rel)
            return hit[2]

    def refresh(self, rels: Iterable[str]) -> None:
        """Re-read those of `rels` that are cached (files saved or changed on disk)."""
        for rel in rels:
            if self.cached(rel) is not None:
                self.chunks(rel)

    def chunks(self, rel: str) -> list[CodeChunk]:
        """The file's chunks, read now if it changed on disk (empty for a missing, binary, generated or oversized
        file, or one whose path leads outside the root). Does I/O: for the background worker and one-off requests."""
        root = self._real_root
        path = confine(root, rel) if root is not None else None
        if root is None or path is None:
            return []
        try:
            st = path.stat()
        except OSError:
            return []
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._files.get(rel)
            if hit is not None and hit[:2] == stamp:
                self._files.move_to_end(rel)
                return hit[2]
        data = read_source(root, rel)
        found = chunk_text(rel, data.decode("utf-8", "replace")) if data is not None else []
        with self._lock:
            self.version += 1
            self._files[rel] = (*stamp, found)
            self._files.move_to_end(rel)
            while len(self._files) > self.max_files:
                self._files.popitem(last=False)
        return found

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)
