"""Protocol <-> plain values, and fimble errors -> JSON-RPC errors."""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from fimble.documents import Document
from fimble.errors import DocumentError, FimbleError


class JsonRpcRequestFailed(JsonRpcException):
    """LSP's RequestFailed: the request was valid but the server could not answer it."""

    CODE = -32803


def rpc_error(exc: FimbleError) -> JsonRpcException:
    if isinstance(exc, DocumentError):
        return JsonRpcInvalidParams(str(exc))
    return JsonRpcRequestFailed(str(exc))


def offset_of(doc: Document, position: types.Position) -> int:
    return doc.offset_at(position.line, position.character)


def position_of(doc: Document, offset: int) -> types.Position:
    line, character = doc.position_at(offset)
    return types.Position(line=line, character=character)


def field(obj: Any, *path: str) -> Any:
    """Read a nested field from params pygls gives us for custom methods (namedtuples) or plain dicts."""
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return obj


def to_plain(obj: Any) -> Any:
    """Namedtuples (pygls' shape for unknown params) to dicts, recursively."""
    if hasattr(obj, "_asdict"):
        return {k: to_plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj
