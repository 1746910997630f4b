"""The user's recent edits across the workspace, as small before/after hunks in the order they were made.

A next-edit model reads what the user just did to guess what comes next, so the history must say it the way a diff
would: whole lines before and after, one hunk per place. Keystrokes at one place are coalesced into one hunk (a
rename typed letter by letter is one edit); an edit at another place, or in another file, closes it. Bounded in
count and size, and a closed document's hunks are dropped with it.

Cheap on the keystroke path: an edit near the open hunk only moves two line numbers; the hunk's text is computed
(one pass over the document's lines) when it closes or when a next-edit request reads the history.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fimble.documents.document import Document, TextEdit

MAX_HUNKS = 16
MAX_HUNK_LINES = 40  # a bigger change (a paste, a formatter's rewrite) tells the model little and costs many tokens
MAX_HUNK_CHARS = 4000
# Edits this many lines or fewer from the open hunk join it: typing a line and fixing the one above is one edit.
JOIN_GAP_LINES = 2


@dataclass(frozen=True)
class Hunk:
    """One recent edit: the whole lines `before` (each with its newline) were replaced by `after`, at 0-based line
    `start_line` of the file as it is after the edit."""

    path: str
    start_line: int
    before: str
    after: str
    uri: str = ""


@dataclass
class _Open:
    """The hunk being typed: the document's text when it began and the lines it covers in the text now."""

    uri: str
    base: str
    first: int
    last: int  # inclusive, in the current text


def line_span(edit: TextEdit) -> tuple[int, int, int]:
    """The rows an edit touched: first, last in the old text, last in the new text."""
    return edit.start_point[0], edit.old_end_point[0], edit.new_end_point[0]


def changed_rows(old: str, new: str) -> tuple[int, int, int] | None:
    """The rows that differ between two texts (first, last old, last new), from their common first and last lines;
    None when they are equal. For whole-text edits (open, clients that send whole documents)."""
    if old == new:
        return None
    a, b = old.split("\n"), new.split("\n")
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, max(head, len(a) - 1 - tail), max(head, len(b) - 1 - tail)


def hunk_between(path: str, uri: str, base: str, now: str, first: int, last: int) -> Hunk | None:
    """The hunk that turned `base` into `now`, knowing that only rows first..last of `now` may differ; trimmed to the
    lines that really changed. None for no change or a change over the size bounds."""
    old_lines = base.splitlines(keepends=True)
    new_lines = now.splitlines(keepends=True)
    tail = max(0, len(new_lines) - (last + 1))
    before = old_lines[first : len(old_lines) - tail]
    after = new_lines[first : last + 1]
    # Typed and then undone, or the span took in unchanged neighbours: keep only the lines that differ.
    while before and after and before[0] == after[0]:
        before, after, first = before[1:], after[1:], first + 1
    while before and after and before[-1] == after[-1]:
        before, after = before[:-1], after[:-1]
    if not before and not after:
        return None
    if max(len(before), len(after)) > MAX_HUNK_LINES:
        return None
    old_text, new_text = "".join(before), "".join(after)
    if len(old_text) + len(new_text) > MAX_HUNK_CHARS:
        return None
    return Hunk(path, first, old_text, new_text, uri)


class EditHistory:
    """Recent hunks of every open document, oldest first. Fed by the document store's edit listener (the event
    loop); read by next-edit requests (any thread)."""

    def __init__(self, path_of: Callable[[str], str], max_hunks: int = MAX_HUNKS) -> None:
        self._path_of = path_of
        self._hunks: deque[Hunk] = deque(maxlen=max_hunks)
        self._texts: dict[str, str] = {}  # each open document's text after its last edit
        self._open: _Open | None = None
        self._lock = threading.Lock()

    def on_edit(self, doc: Document, edits: Sequence[TextEdit]) -> None:
        """A document store listener: every open and change of a document within the size limit."""
        with self._lock:
            old = self._texts.get(doc.uri)
            self._texts[doc.uri] = doc.text
            if old is None:  # opened (or back under the size limit): not an edit the user made
                return
            if len(edits) == 1 and edits[0].start_byte == 0 and edits[0].old_end_byte >= len(old.encode()):
                span = changed_rows(old, doc.text)  # a whole-text change: where it really differs
                if span is None:
                    return
                spans = [span]
            else:
                spans = [line_span(edit) for edit in edits]
            for first, old_last, new_last in spans:
                self._extend(doc.uri, old, doc.text, first, old_last, new_last)

    def _extend(self, uri: str, old: str, new: str, first: int, old_last: int, new_last: int) -> None:
        """Join one edit to the open hunk when it is near it in the same document, else close that hunk and open
        one here. Edits of one didChange are applied in turn; `old` and `new` bracket them all, which only matters
        when they are far apart (rare: a multi-cursor edit), where the hunk is still computed from texts that hold
        every change."""
        hunk = self._open
        if hunk is not None and hunk.uri == uri and hunk.first - JOIN_GAP_LINES <= first <= hunk.last + JOIN_GAP_LINES:
            delta = new_last - old_last
            last = hunk.last + delta if first <= hunk.last else hunk.last
            hunk.first = min(hunk.first, first)
            hunk.last = max(last, new_last, hunk.first)
            return
        self._close(old)
        self._open = _Open(uri, old, first, new_last)

    def _close(self, text_now: str | None = None) -> None:
        hunk = self._open
        self._open = None
        if hunk is None:
            return
        now = text_now if text_now is not None else self._texts.get(hunk.uri)
        if now is None:
            return
        done = hunk_between(self._path_of(hunk.uri), hunk.uri, hunk.base, now, hunk.first, hunk.last)
        if done is not None:
            self._hunks.append(done)

    def hunks(self) -> tuple[Hunk, ...]:
        """The recent hunks, oldest first, the one being typed last."""
        with self._lock:
            out = list(self._hunks)
            hunk = self._open
            if hunk is not None and (now := self._texts.get(hunk.uri)) is not None:
                typing = hunk_between(self._path_of(hunk.uri), hunk.uri, hunk.base, now, hunk.first, hunk.last)
                if typing is not None:
                    out.append(typing)
            return tuple(out[-self._hunks.maxlen :] if self._hunks.maxlen else out)

    def forget(self, uri: str) -> None:
        """A document was closed: what it was and what was done to it go."""
        with self._lock:
            self._texts.pop(uri, None)
            if self._open is not None and self._open.uri == uri:
                self._open = None
            kept = [h for h in self._hunks if h.uri != uri]
            self._hunks.clear()
            self._hunks.extend(kept)

    def __len__(self) -> int:
        return len(self.hunks())
