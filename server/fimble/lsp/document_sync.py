"""pygls' protocol without pygls' own copy of every open document, and without a Future kept per keystroke.

pygls keeps each document in its `workspace` and applies every didChange to it by splitting the whole text into
lines and joining them again: a second copy of each document, and for a 20 MB one a quarter of a second and tens
of megabytes of garbage per keystroke. fimble never reads that copy (its `DocumentStore` is the one it uses), so
these handlers pass the notifications to fimble's own handlers and leave pygls' workspace alone.

pygls also files the Future of every notification whose built-in handler is a generator (didChange, didOpen,
didClose, initialized, ...) in `_request_futures` under a fresh id, and only requests are ever taken out: about a
kilobyte (a Future with its Condition) kept for every keystroke, for good. They are taken out here once done.
"""

from __future__ import annotations

from collections.abc import Generator
from concurrent.futures import Future
from typing import Any

from lsprotocol import types
from pygls.protocol import LanguageServerProtocol, lsp_method


class DocumentSyncProtocol(LanguageServerProtocol):
    def _check_handler_result(self, future: Future[Any]) -> None:
        """pygls' done-callback for notifications; also forgets the Future pygls kept for a generator handler
        (in-flight requests are the only other entries, so the scan is short)."""
        super()._check_handler_result(future)
        if future.cancelled():
            return  # only shutdown cancels these, while it iterates over _request_futures: leave the dict alone
        for msg_id, pending in list(self._request_futures.items()):
            if pending is future:
                del self._request_futures[msg_id]
                break

    def _to_user_handler(self, method: str, params: Any) -> Generator[Any, Any, None]:
        handler = self.fm.features.get(method)
        if handler is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> Generator[Any, Any, None]:
        yield from self._to_user_handler(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        yield from self._to_user_handler(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Generator[Any, Any, None]:
        yield from self._to_user_handler(types.TEXT_DOCUMENT_DID_CLOSE, params)
