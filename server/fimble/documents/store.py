"""The set of open documents, keyed by URI, and the size limit for the documents the rest of fimble takes on.

A document over `max_bytes` is kept in step with the editor (its edits are applied, cheaply) but its edit listeners
(syntax trees, context engine, diagnostics) never hear of it: to them it is not open. When an edit brings it back
under the limit they get one edit covering the whole text, as on open, and start afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fimble.documents.document import UTF16, Document, TextEdit
from fimble.errors import DocumentError

EditListener = Callable[[Document, list[TextEdit]], None]


class DocumentStore:
    def __init__(self, max_bytes: int = 0) -> None:
        self.encoding = UTF16  # set from the client's capabilities at initialize
        self.max_bytes = max_bytes  # the size limit in UTF-8 bytes; 0: none (see set_limit)
        self._docs: dict[str, Document] = {}
        self._listeners: list[EditListener] = []

    def on_edit(self, listener: EditListener) -> None:
        """Called after every open/change of a document within the size limit, with the edits applied (open, or
        coming back under the limit: one whole-document edit)."""
        self._listeners.append(listener)

    def oversized(self, doc: Document) -> bool:
        return self.max_bytes > 0 and doc.size_bytes > self.max_bytes

    def set_limit(self, max_bytes: int) -> list[Document]:
        """Change the size limit; returns the documents it puts over the limit (the caller drops what it keeps for
        them). Documents it brings back under the limit are announced to the edit listeners."""
        before = {doc.uri for doc in self._docs.values() if self.oversized(doc)}
        self.max_bytes = max(0, max_bytes)
        over = []
        for doc in list(self._docs.values()):
            if self.oversized(doc):
                if doc.uri not in before:
                    over.append(doc)
            elif doc.uri in before:
                self._notify(doc, [doc.whole_edit()])
        return over

    def open(self, uri: str, text: str, version: int | None, language_id: str) -> Document:
        doc = Document(
            uri=uri, text="", version=version, language_id=language_id or "plaintext", encoding=self.encoding
        )
        edit = doc.apply_change(text)
        self._docs[uri] = doc
        if not self.oversized(doc):
            self._notify(doc, [edit])
        return doc

    def change(
        self,
        uri: str,
        version: int | None,
        changes: list[tuple[str, tuple[int, int] | None, tuple[int, int] | None]],
    ) -> Document:
        doc = self.get(uri)
        was_oversized = self.oversized(doc)
        edits = [doc.apply_change(text, start, end) for text, start, end in changes]
        doc.version = version
        if not self.oversized(doc):
            self._notify(doc, [doc.whole_edit()] if was_oversized else edits)
        return doc

    def close(self, uri: str) -> Document | None:
        """Forget a document; returns it (None if it was not open). What others keep for it is dropped by the
        server's close handler, which names each part."""
        return self._docs.pop(uri, None)

    def get(self, uri: str) -> Document:
        try:
            return self._docs[uri]
        except KeyError:
            raise DocumentError(f"Document {uri} is not open (send textDocument/didOpen first).") from None

    def find(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def __iter__(self) -> Iterator[Document]:
        return iter(list(self._docs.values()))

    def _notify(self, doc: Document, edits: list[TextEdit]) -> None:
        for listener in self._listeners:
            listener(doc, edits)
