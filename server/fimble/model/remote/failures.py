"""What went wrong with a remote engine, said so that the user knows what to fix: `RemoteError` and its kinds
(which drive retries and the fallback), and the readable message for a transport failure, an HTTP error status,
an error body (each engine words its own) or an answer that is not an LLM server's. `http.py` does the talking.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Literal

from fimble.errors import ContextOverflowError, ModelError

ErrorKind = Literal["config", "connect", "timeout", "tls", "auth", "http", "protocol", "loading", "overflow", "stream"]
_OVERFLOW_HINTS = ("context size", "context window", "context length", "exceed_context", "maximum context", "too long")


class RemoteError(ModelError):
    """A remote engine failed. `str()` is the message for the user; `kind` drives retries and the fallback."""

    def __init__(
        self, message: str, kind: ErrorKind, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Worth asking again shortly: the server is down, overloaded, restarting or still loading its model."""
        return self.kind in ("connect", "timeout", "loading") or self.status in (429, 502, 503, 504)

    @property
    def use_fallback(self) -> bool:
        """The remote cannot serve this user now, so a configured local fallback model should answer instead.
        Not for a prompt too long for the server: that is about the request, and the pipeline trims for it."""
        return self.kind != "overflow"


class RemoteContextOverflow(RemoteError, ContextOverflowError):
    """The server said the prompt does not fit its context window."""


@dataclass(frozen=True)
class Server:
    """The server a message is about, as the messages name it and the settings that reach it."""

    engine: str  # the 'backend' setting
    host: str
    display: str  # its address as the user wrote it, normalised
    key_sent: bool
    api_key_env: str = ""
    not_found_hint: str = ""  # said after a 404 (e.g. which server version added the endpoint)

    @property
    def label(self) -> str:
        return f"{self.engine} at {self.display}"


def transport_error(server: Server, exc: BaseException, timeout: float, mid_answer: bool = False) -> RemoteError:
    where = server.label
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return RemoteError(
            f"TLS error talking to {where}: {reason(exc)}. If the server speaks plain HTTP, use http:// in "
            "'url'; if it uses a private certificate authority, point SSL_CERT_FILE at its certificate.",
            "tls",
        )
    if isinstance(exc, socket.gaierror):
        return RemoteError(
            f"Cannot resolve the host '{server.host}' of 'url' ({server.display}): {reason(exc)}.",
            "connect",
        )
    if isinstance(exc, ConnectionRefusedError):
        return RemoteError(
            f"Cannot connect to {where}: connection refused. Is the server running, and is 'url' right?",
            "connect",
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return RemoteError(
            f"{where} did not answer within {timeout * 1000:.0f} ms. Check 'url' and the server, or raise "
            "'requestTimeoutMs'.",
            "timeout",
        )
    if isinstance(exc, http.client.HTTPException):
        if mid_answer:
            return RemoteError(f"{where} broke off its answer ({reason(exc)}).", "stream")
        return RemoteError(
            f"{where} did not answer with HTTP ({reason(exc)}). If the server uses TLS, use https:// in 'url'; "
            "otherwise 'url' does not point at an LLM server.",
            "protocol",
        )
    if mid_answer:
        return RemoteError(f"{where} broke the connection mid-answer ({reason(exc)}).", "stream")
    return RemoteError(f"Cannot connect to {where}: {reason(exc)}. Check 'url'.", "connect")


def status_error(server: Server, resp: http.client.HTTPResponse, raw: bytes, path: str) -> RemoteError:
    status = resp.status
    if 300 <= status < 400:
        location = resp.getheader("Location") or "?"
        return RemoteError(
            f"{server.label} redirects {path} to {location}; put the final address in 'url'.", "http", status
        )
    try:
        payload: Any = json.loads(raw) if raw else None
    except ValueError:
        payload = None
    return payload_error(server, payload, resp, path, raw)


def payload_error(
    server: Server, payload: Any, resp: http.client.HTTPResponse | None, path: str, raw: bytes = b""
) -> RemoteError:
    status = resp.status if resp is not None else None
    message, etype = _error_message(payload)
    if not message and raw:
        ctype = (resp.getheader("Content-Type") or "") if resp is not None else ""
        message = "an HTML page" if "html" in ctype.lower() else raw.decode("utf-8", "replace").strip()[:200]
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        status = status or _int(payload["error"].get("code"))
    label = server.label
    detail = f" ({status}: {message})" if status else f" ({message})"
    retry_after = _retry_after(resp)
    lowered = f"{message} {etype}".lower()
    if status == 503 and ("loading" in lowered or etype == "unavailable_error"):
        return RemoteError(f"{label} is still loading its model; fimble retries with backoff.", "loading", 503)
    if status in (401, 403):
        if not server.key_sent:
            hint = (
                f"No API key was sent: put the server's key in the environment variable "
                f"{server.api_key_env or 'FIMBLE_API_KEY'} (the name is the 'apiKeyEnv' setting) and restart fimble."
            )
        else:
            hint = f"Check the key in the environment variable {server.api_key_env} (named by 'apiKeyEnv')."
        return RemoteError(f"{label} refused the request{detail}. {hint}", "auth", status)
    if status == 404:
        hint = f" {server.not_found_hint}" if server.not_found_hint else ""
        return RemoteError(
            f"{label} has no {path} endpoint{detail}. Check 'url' and 'backend' ({server.engine}).{hint}",
            "http",
            status,
        )
    if any(h in lowered for h in _OVERFLOW_HINTS) and (status is None or 400 <= status < 500):
        return RemoteContextOverflow(
            f"The prompt does not fit the server's context window{detail}. Set 'nCtx' to the server's context "
            "size (or start the server with a larger one).",
            "overflow",
            status,
        )
    if status is None:
        return RemoteError(f"{label} reported an error mid-answer{detail}.", "stream")
    if status == 429:
        return RemoteError(f"{label} is busy{detail}; fimble retries with backoff.", "http", status, retry_after)
    if status >= 500:
        return RemoteError(f"{label} failed{detail}.", "http", status, retry_after)
    return RemoteError(f"{label} rejected the request{detail}.", "http", status)


def not_llm_error(server: Server, path: str, resp: http.client.HTTPResponse, raw: bytes) -> RemoteError:
    ctype = resp.getheader("Content-Type") or "no content type"
    start = raw[:60].decode("utf-8", "replace").strip()
    return RemoteError(
        f"{server.label} answered {path} with something that is not the JSON an LLM server sends ({ctype}, "
        f"starting {start!r}). Check that 'url' points at the model server and 'backend' ({server.engine}) "
        "matches it.",
        "protocol",
        resp.status,
    )


def _error_message(payload: Any) -> tuple[str, str]:
    """(message, type) from the error bodies engines send: {"error": {"message", "type"}} (OpenAI, llama-server),
    {"error": "..."} (Ollama), {"detail": ...} (FastAPI: llama-cpp-python, vLLM), {"message": ...}."""
    if not isinstance(payload, dict):
        return "", ""
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("msg") or ""), str(error.get("type") or "")
    if isinstance(error, str):
        return error, ""
    detail = payload.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return str(detail[0].get("msg") or detail[0]), ""
    if detail:
        return str(detail), ""
    return str(payload.get("message") or ""), str(payload.get("type") or "")


def _retry_after(resp: http.client.HTTPResponse | None) -> float | None:
    if resp is None:
        return None
    value = resp.getheader("Retry-After")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
