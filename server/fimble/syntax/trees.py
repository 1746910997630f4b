"""Per-document syntax trees, updated incrementally from the document store's edits.

Each didChange applies `Tree.edit` at once (cheap, O(depth)); the re-parse that reuses the edited tree runs only when
someone asks for the tree, so a burst of keystrokes costs one incremental parse instead of one per keystroke. The
listener runs on the LSP event loop while readers run on the model worker thread, hence the lock.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import tree_sitter

from fimble.documents.document import Document, TextEdit
from fimble.documents.store import DocumentStore
from fimble.languages import grammar_name
from fimble.syntax.grammars import get_language, get_parser

# tree-sitter counts rows by '\n' only; the document also breaks lines at a lone '\r', so with one present the
# points in a TextEdit would not match tree-sitter's and an incremental parse could go wrong: parse afresh instead.
_LONE_CR = re.compile(r"\r(?!\n)")
# How fast tree-sitter parses a file from scratch (measured: 0.3 ms per KB of Python on a loaded laptop core). A
# parse with a time budget runs only on text it could parse whole within the budget; larger documents lend their
# previous tree, shifted by the edits, and finish in the background. A parse cannot be stopped early instead:
# tree-sitter's progress callback needs the text through a read callback, and py-tree-sitter 0.26 keeps a reference
# to every chunk such a callback returns, so each budgeted parse would leak the text it read.
FULL_PARSE_BYTES_PER_S = 3_500_000


def uri_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("file", "") else parsed.path


def parse_text(
    text: str, language_id: str | None, path: str | None = None, budget_s: float | None = None
) -> tree_sitter.Tree | None:
    """A fresh tree for `text`; None for a language without a grammar or text too long to parse within
    `budget_s`."""
    parser = get_parser(language_id, path)
    if parser is None:
        return None
    return _parse(parser, text.encode("utf-8", "surrogatepass"), None, budget_s)


@dataclass
class _Entry:
    language: tree_sitter.Language
    grammar: str
    text: str
    tree: tree_sitter.Tree | None = None
    stale: bool = True  # edits applied with Tree.edit, re-parse pending
    version: int = 0  # bumped by every edit, so a parse finished after newer edits is not installed
    reparses: int = 0
    full_parses: int = 0


class SyntaxTrees:
    """The current syntax tree of every open document that has a grammar."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self.on_slow: Callable[[str], None] | None = None  # a budgeted re-parse gave up: finish it elsewhere

    def attach(self, store: DocumentStore) -> None:
        store.on_edit(self.on_edit)
        for doc in store:  # documents opened before attaching
            if not store.oversized(doc):
                self.on_edit(doc, [])

    def on_edit(self, doc: Document, edits: Sequence[TextEdit]) -> None:
        grammar = grammar_name(doc.language_id, uri_path(doc.uri))
        language = get_language(grammar) if grammar else None
        with self._lock:
            if language is None or grammar is None:
                self._entries.pop(doc.uri, None)
                return
            entry = self._entries.get(doc.uri)
            fresh = (
                entry is None
                or entry.language is not language
                or entry.tree is None
                or any(_replaces_all(e, entry.text) for e in edits)
                or ("\r" in doc.text and _LONE_CR.search(doc.text) is not None)
            )
            if fresh or entry is None:
                self._entries[doc.uri] = _Entry(language=language, grammar=grammar, text=doc.text)
                return
            tree = entry.tree
            if tree is not None:
                for e in edits:
                    tree.edit(
                        start_byte=e.start_byte,
                        old_end_byte=e.old_end_byte,
                        new_end_byte=e.new_end_byte,
                        start_point=e.start_point,
                        old_end_point=e.old_end_point,
                        new_end_point=e.new_end_point,
                    )
            entry.text = doc.text
            entry.stale = True
            entry.version += 1

    def tree(self, uri: str, text: str | None = None, budget_s: float | None = None) -> tree_sitter.Tree | None:
        """The tree of an open document, re-parsed incrementally if edits are pending.

        None when the document is unknown or has no grammar, or when `text` is given and the document has moved on
        since (the caller then parses its own snapshot). With `budget_s`, a document too long to parse whole within it
        is not re-parsed here: the previous tree, shifted by the edits, is returned instead (typing `f(` can make
        tree-sitter re-parse everything after the cursor, and a slightly stale tree serves context better than a
        late one). `on_slow` is then told, so the parse can finish in the background.

        The parse runs outside the lock (the event loop must not wait on it) and a copy is returned, because
        `Tree.edit` on the event loop would otherwise mutate a tree another thread is reading.
        """
        with self._lock:
            entry = self._entries.get(uri)
            if entry is None:
                return None
            if text is not None and entry.text is not text and entry.text != text:
                return None
            if not entry.stale and entry.tree is not None:
                return entry.tree.copy()
            old = entry.tree.copy() if entry.tree is not None else None
            version = entry.version
            source = entry.text.encode("utf-8", "surrogatepass")
            grammar = entry.grammar
        parser = get_parser(grammar)
        if parser is None:
            return None
        new = _parse(parser, source, old, budget_s)
        with self._lock:
            current = self._entries.get(uri)
            if new is not None and current is entry and entry.version == version:
                entry.tree = new
                entry.stale = False
                if old is None:
                    entry.full_parses += 1
                else:
                    entry.reparses += 1
        if new is None:
            if self.on_slow is not None:
                self.on_slow(uri)
            return old
        return new.copy()

    def tracked(self, uri: str) -> bool:
        with self._lock:
            return uri in self._entries

    def matches(self, uri: str, text: str) -> bool:
        """Whether the tracked document's current text is `text`."""
        with self._lock:
            entry = self._entries.get(uri)
            return entry is not None and (entry.text is text or entry.text == text)

    def stats(self, uri: str) -> tuple[int, int]:
        """(full parses, incremental re-parses) of a document, for tests and the benchmark."""
        with self._lock:
            entry = self._entries.get(uri)
            return (entry.full_parses, entry.reparses) if entry else (0, 0)

    def forget(self, uri: str) -> None:
        """Drop a document's tree (closed, or over the size limit): a tree takes several times its text's size."""
        with self._lock:
            self._entries.pop(uri, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _parse(
    parser: tree_sitter.Parser, source: bytes, old: tree_sitter.Tree | None, budget_s: float | None
) -> tree_sitter.Tree | None:
    """Parse (incrementally from `old`); None, without parsing, when a parse from scratch could take longer than
    `budget_s` (see FULL_PARSE_BYTES_PER_S)."""
    if budget_s is not None and len(source) > budget_s * FULL_PARSE_BYTES_PER_S:
        return None
    return parser.parse(source, old) if old is not None else parser.parse(source)


def _replaces_all(edit: TextEdit, old_text: str) -> bool:
    return edit.start_byte == 0 and edit.old_end_byte >= len(old_text.encode("utf-8", "surrogatepass"))
