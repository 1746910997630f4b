"""Protocol <-> plain values, and fimble errors -> JSON-RPC errors."""

from __future__ import annotations

from typing import Any, TypeVar

from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from fimble.documents import Document
from fimble.errors import DocumentError, FimbleError

T = TypeVar("T")
# Client-sent values are structured fail-fast: the first wrong-typed field ends it, instead of one exception (with a
# traceback) per element of a wrong-typed value.
_converter = get_converter()


def harden(converter: Any) -> Any:
    """Fail fast (the first mismatch ends structuring) and take strings only where the protocol says string
    (cattrs would turn 5 into "5", and a URI or a path that was never text reaches the server's code)."""
    converter.detailed_validation = False
    converter.register_structure_hook(str, _strict_str)
    return converter


def _strict_str(value: Any, _cls: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


harden(_converter)


def structure(value: Any, cls: type[T]) -> T:
    """`value` (plain JSON, or the namedtuples pygls makes of unknown params) as the lsprotocol type `cls`;
    ValueError, with a readable reason, when it does not fit."""
    try:
        return _converter.structure(to_plain(value), cls)
    except Exception as exc:  # cattrs raises whatever the mismatch raised (TypeError, KeyError, ValueError, ...)
        raise ValueError(f"not a {cls.__name__}: {mismatch(exc)}") from None


def mismatch(exc: BaseException) -> str:
    """One readable line for why a value did not fit a protocol type."""
    if isinstance(exc, KeyError):
        return f"the field {exc.args[0]!r} is missing" if exc.args else "a field is missing"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def unstructure(value: Any) -> Any:
    return _converter.unstructure(value)


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
