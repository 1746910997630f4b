"""The set of open documents, keyed by URI."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fimble.documents.document import UTF16, Document, TextEdit
from fimble.errors import DocumentError

EditListener = Callable[[Document, list[TextEdit]], None]


class DocumentStore:
    def __init__(self) -> None:
        self.encoding = UTF16  # set from the client's capabilities at initialize
        self._docs: dict[str, Document] = {}
        self._listeners: list[EditListener] = []
        self._close_listeners: list[Callable[[str], None]] = []

    def on_edit(self, listener: EditListener) -> None:
        """Called after every open/change with the edits applied (open: one whole-document edit)."""
        self._listeners.append(listener)

    def on_close(self, listener: Callable[[str], None]) -> None:
        """Called with the URI after a document is closed (e.g. to clear its diagnostics)."""
        self._close_listeners.append(listener)

    def open(self, uri: str, text: str, version: int | None, language_id: str) -> Document:
        doc = Document(
            uri=uri, text="", version=version, language_id=language_id or "plaintext", encoding=self.encoding
        )
        edit = doc.apply_change(text)
        self._docs[uri] = doc
        self._notify(doc, [edit])
        return doc

    def change(
        self,
        uri: str,
        version: int | None,
        changes: list[tuple[str, tuple[int, int] | None, tuple[int, int] | None]],
    ) -> Document:
        doc = self.get(uri)
        edits = [doc.apply_change(text, start, end) for text, start, end in changes]
        doc.version = version
        self._notify(doc, edits)
        return doc

    def close(self, uri: str) -> None:
        if self._docs.pop(uri, None) is not None:
            for listener in self._close_listeners:
                listener(uri)

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
