"""Open documents: text, version and language of each file the editor has open."""

from fimble.documents.document import Document, TextEdit
from fimble.documents.store import DocumentStore

__all__ = ["Document", "DocumentStore", "TextEdit"]
