"""JSON-RPC at the edge: every request gets exactly one answer, and no message can stall the event loop.

pygls, left to itself, drops a request whose params fail validation without answering it, answers nothing after
`shutdown`, lets requests in before `initialize`, logs expected client errors with tracebacks, and structures params
with cattrs' detailed validation (a 50 KB string where an array belongs costs seconds and hundreds of MB). This
protocol decodes and validates each message on the reader thread with a fail-fast converter, answers every request
it cannot serve with the error the specification names, keeps the lifecycle (`initialize` first, nothing but `exit`
after `shutdown`, `exit`'s code), and keeps no second copy of the documents (fimble's DocumentStore is the one).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import attrs
import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol, default_converter, lsp_method
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage, MsgId

from fimble.lsp.convert import harden, mismatch

if TYPE_CHECKING:
    from fimble.lsp.server import FimbleServer

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002

# Unpaired UTF-16 surrogates can only arrive as \uXXXX escapes; the scan of decoded strings runs only when one is
# in the body.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]|\\u[dD][c-fC-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Methods whose text fimble keeps: their unpaired surrogates are read as U+FFFD, which is one UTF-16 (and UTF-32)
# code unit like the surrogate it replaces, so every position the editor sends later still lands where it should.
_TEXT_SYNC = frozenset({types.TEXT_DOCUMENT_DID_OPEN, types.TEXT_DOCUMENT_DID_CHANGE})


def fail_fast_converter() -> cattrs.Converter:
    """pygls' converter without detailed validation: the first mismatch ends structuring, instead of one exception
    (with traceback) per element of a wrong-typed value. Messages of fimble's own methods keep their params as plain
    JSON: pygls would build a namedtuple class for every object in them."""
    converter = harden(default_converter())
    for cls in (JsonRPCRequestMessage, JsonRPCNotification, JsonRPCResponseMessage):
        converter.register_structure_hook(cls, _plain_message)
    return converter


def _plain_message(obj: Any, cls: type[Any]) -> Any:
    return cls(**{f.name: obj.get(f.name) for f in attrs.fields(cls)})


@dataclass(frozen=True)
class Decoded:
    """What the reader thread hands to the event loop: a message to dispatch, or an error answer to send, or
    nothing (with the reason to log)."""

    message: Any = None
    reply_id: MsgId | None = None
    error: types.ResponseError | None = None
    note: str = ""
    repaired_uri: str = ""  # a synced document whose unpaired surrogates were replaced

    @property
    def is_reply(self) -> bool:
        return self.error is not None


def error_reply(msg_id: MsgId | None, code: int, message: str) -> Decoded:
    return Decoded(reply_id=msg_id, error=types.ResponseError(code=code, message=message), note=message)


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _repair_surrogates(value: Any) -> tuple[Any, bool]:
    """`value` with unpaired surrogates in its strings replaced by U+FFFD, and whether there were any."""
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value) is None:
            return value, False
        return _LONE_SURROGATE.sub("\ufffd", value), True
    if isinstance(value, list):
        found = False
        out = []
        for item in value:
            fixed, hit = _repair_surrogates(item)
            out.append(fixed)
            found = found or hit
        return out, found
    if isinstance(value, dict):
        found = False
        fixed_dict = {}
        for key, item in value.items():
            fixed, hit = _repair_surrogates(item)
            fixed_dict[key] = fixed
            found = found or hit
        return fixed_dict, found
    return value, False


class FimbleProtocol(LanguageServerProtocol):
    """pygls' language-server protocol with conformance at the edge (see the module docstring)."""

    _server: FimbleServer

    def __init__(self, server: FimbleServer, converter: cattrs.Converter) -> None:
        super().__init__(server, converter)
        self.initialize_seen = False
        self.exit_code: int | None = None  # set by `exit`
        self.stopped = threading.Event()  # `exit` arrived: the reading loop ends

    # -- decoding (reader thread) --------------------------------------------------------------------------
    def decode(self, body: bytes) -> Decoded:
        """Parse, check and structure one message body. Pure apart from reading the pending-response types, so it
        runs on the reader thread and the event loop only dispatches."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting
            return error_reply(None, PARSE_ERROR, f"Parse error: {mismatch(exc)}")
        if not isinstance(data, dict):
            kind = "batch" if isinstance(data, list) else type(data).__name__
            return error_reply(None, INVALID_REQUEST, f"Invalid request: a JSON-RPC {kind} is not an LSP message.")
        raw_id = data.get("id")
        has_id = "id" in data
        msg_id = raw_id if _valid_id(raw_id) else None
        method = data.get("method")
        if data.get("jsonrpc") != "2.0":
            return self._invalid(has_id, msg_id, method, "'jsonrpc' must be \"2.0\"")
        if has_id and not _valid_id(raw_id):
            return self._invalid(True, None, method, "'id' must be an integer or a string")
        if "method" in data and not isinstance(method, str):
            return self._invalid(has_id, msg_id, None, "'method' must be a string")
        if method is None:
            if has_id and ("result" in data or "error" in data):
                return self._decode_response(data, raw_id)
            return self._invalid(has_id, msg_id, None, "a message needs a 'method', or a 'result' or 'error'")
        assert isinstance(method, str)
        repaired = False
        if _SURROGATE_ESCAPE.search(body):
            params, repaired = _repair_surrogates(data.get("params"))
            if repaired:
                if has_id:
                    return error_reply(
                        msg_id,
                        INVALID_PARAMS,
                        f"{method}: a string holds an unpaired UTF-16 surrogate, which is not text.",
                    )
                if method not in _TEXT_SYNC:
                    return Decoded(note=f"dropped {method}: a string holds an unpaired UTF-16 surrogate")
                data["params"] = params
        expected = self.get_message_type(method)
        if expected is None and method not in self.fm.features and method not in self.fm.builtin_features:
            if has_id:
                return error_reply(msg_id, METHOD_NOT_FOUND, f"Method not found: {method}")
            quiet = method.startswith("$/")  # the specification lets servers ignore these
            return Decoded(note="" if quiet else f"dropped {method}: fimble does not handle it")
        fallback: type[Any] = JsonRPCRequestMessage if has_id else JsonRPCNotification
        try:
            message = self._converter.structure(data, expected or fallback)
        except Exception as exc:  # anything the converter raises means the params do not fit the protocol
            if has_id:
                return error_reply(msg_id, INVALID_PARAMS, f"Invalid params for {method}: {mismatch(exc)}")
            return Decoded(note=f"dropped {method}: its params do not fit the protocol ({mismatch(exc)})")
        uri = ""
        if repaired:
            doc = data.get("params", {}).get("textDocument", {}) if isinstance(data.get("params"), dict) else {}
            uri = doc.get("uri", "") if isinstance(doc, dict) and isinstance(doc.get("uri"), str) else "?"
        return Decoded(message=message, repaired_uri=uri)

    def _invalid(self, has_id: bool, msg_id: MsgId | None, method: Any, why: str) -> Decoded:
        where = f" ({method})" if isinstance(method, str) else ""
        if has_id:
            return error_reply(msg_id, INVALID_REQUEST, f"Invalid request{where}: {why}.")
        return Decoded(note=f"dropped a message{where}: {why}")

    def _decode_response(self, data: dict[str, Any], msg_id: Any) -> Decoded:
        """A client's answer to one of our requests; one that does not fit fails that request's future instead of
        leaving whoever awaits it waiting."""
        if "error" in data:
            try:
                return Decoded(message=self._converter.structure(data, types.ResponseErrorMessage))
            except Exception as exc:
                return self._fail_pending(msg_id, f"an error response that does not fit the protocol: {mismatch(exc)}")
        result_type = self._result_types.pop(msg_id, None)
        try:
            if result_type is None:
                return Decoded(message=self._converter.structure(data, JsonRPCResponseMessage))
            return Decoded(message=self._converter.structure(data, result_type))
        except Exception as exc:
            return self._fail_pending(msg_id, f"a result that does not fit the protocol: {mismatch(exc)}")

    def _fail_pending(self, msg_id: Any, why: str) -> Decoded:
        future = self._request_futures.pop(msg_id, None) if _valid_id(msg_id) else None
        if future is not None and not future.done():
            future.set_exception(JsonRpcException(message=f"The client sent {why}."))
        return Decoded(note=f"client response {msg_id!r}: {why}")

    # -- dispatch (event loop) -----------------------------------------------------------------------------
    def deliver(self, decoded: Decoded) -> None:
        if decoded.note:
            log.warning("%s", decoded.note)
        if decoded.is_reply:
            assert decoded.error is not None
            self._send_response(decoded.reply_id, error=decoded.error)
            return
        if decoded.message is not None:
            if decoded.repaired_uri:
                self._server.tell_once(
                    f"surrogates:{decoded.repaired_uri}",
                    f"{decoded.repaired_uri} holds unpaired UTF-16 surrogates; fimble reads each as U+FFFD, which "
                    "keeps positions in step.",
                )
            self.handle_message(decoded.message)

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        is_request = hasattr(message, "id") and method is not None
        if method == types.EXIT:
            # pygls would sys.exit() inside the handler, which its own start-up code then swallows (exit code 0).
            self.exit_code = 0 if self._shutdown else 1
            self.stopped.set()
            return
        if not self.initialize_seen and method != types.INITIALIZE:
            if is_request:
                self._send_response(
                    message.id,
                    error=types.ResponseError(
                        code=SERVER_NOT_INITIALIZED, message=f"{method}: the server is not initialized yet."
                    ),
                )
            elif method is not None:
                log.info("dropped %s: it came before initialize", method)
            return
        if self._shutdown and method is not None:
            if is_request:
                self._send_response(
                    message.id,
                    error=types.ResponseError(
                        code=INVALID_REQUEST, message=f"{method}: the server is shutting down (shutdown was received)."
                    ),
                )
            else:
                log.info("dropped %s: it came after shutdown", method)
            return
        if method == types.INITIALIZE:
            if self.initialize_seen:
                self._send_response(
                    message.id,
                    error=types.ResponseError(code=INVALID_REQUEST, message="initialize may be sent only once."),
                )
                return
            self.initialize_seen = True
        super().handle_message(message)

    # -- answers and their log lines ---------------------------------------------------------------------
    def _send_response(
        self, msg_id: MsgId | None, result: Any | None = None, error: types.ResponseError | None = None
    ) -> None:
        if msg_id is None and error is not None:
            # lsprotocol leaves a None id out, but JSON-RPC wants `"id": null` on an error about a message whose
            # id could not be read.
            self._send_data({"jsonrpc": "2.0", "id": None, "error": self._converter.unstructure(error)})
            return
        super()._send_response(msg_id, result, error)  # type: ignore[arg-type]

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        if not _valid_id(msg_id):  # lsprotocol's int | str union lets any JSON value through
            log.warning("dropped $/cancelRequest: 'id' must be an integer or a string")
            return
        super()._handle_cancel_notification(msg_id)

    def _send_handler_result(self, future: Any, *, msg_id: MsgId) -> None:
        """As pygls', but an error the handler raised on purpose (a JsonRpcException: bad params, a document not
        open, content modified) is one log line; only unexpected exceptions are logged with their traceback."""
        self._request_futures.pop(msg_id, None)
        if not future.cancelled():
            exc = future.exception()
            if isinstance(exc, JsonRpcException):
                log.info("request %s answered with error %s: %s", msg_id, exc.code, exc.message)
                self._send_response(msg_id, error=exc.to_response_error())
                return
        super()._send_handler_result(future, msg_id=msg_id)

    def _handle_request(self, msg_id: MsgId, method_name: str, params: Any) -> None:
        try:
            handler = self._get_handler(method_name)
        except JsonRpcException as error:
            log.info("request %s: unknown method %r", msg_id, method_name)
            self._send_response(msg_id, None, error.to_response_error())
            return
        self._ctx_msg_id.set(msg_id)
        try:
            self._execute_handler(
                msg_id=msg_id,
                handler=handler,
                args=(params,),
                callback=lambda future: self._send_handler_result(future, msg_id=msg_id),
            )
        except JsonRpcException as error:
            log.info("request %s (%s) answered with error %s: %s", msg_id, method_name, error.code, error.message)
            self._send_response(msg_id, None, error.to_response_error())
        except Exception as error:  # a bug: answer it, and keep the traceback for the report
            log.exception("request %s (%s) failed", msg_id, method_name)
            self._send_response(
                msg_id, None, types.ResponseError(code=-32603, message=f"Internal error: {mismatch(error)}")
            )

    def _check_handler_result(self, future: Any) -> None:
        """pygls' done-callback for notifications; also forgets the Future pygls files under a fresh id for a
        notification whose built-in handler is a generator (didChange, didOpen, ...) and never takes out: about a
        kilobyte kept for every keystroke, for good. In-flight requests are the only other entries."""
        super()._check_handler_result(future)
        if future.cancelled():
            return  # only shutdown cancels these, while it iterates over _request_futures: leave the dict alone
        for msg_id, pending in list(self._request_futures.items()):
            if pending is future:
                del self._request_futures[msg_id]
                break

    # -- documents: fimble's DocumentStore holds them; pygls' second copy would cost a Python loop over every line
    # of the document on each keystroke (seconds on a 20 MB file) and its own memory.
    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None
