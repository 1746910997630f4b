"""HTTP for remote engines: JSON requests, streamed answers (SSE `data:` lines or NDJSON), cancellation by closing
the connection, retries with backoff, and health (an unreachable server is skipped for a while). Every failure is
raised as one readable `RemoteError` naming the setting to fix; `failures.py` words them.

Standard library only (`http.client`): one blocking connection per request on the model worker thread is all
fimble needs, and it keeps remote support free of new dependencies.

Timeouts: `requestTimeoutMs` bounds connecting and every wait for the server's next bytes, so a dead or silent
server never holds a request longer than that. A request's own deadline (the completion time budget) and its
cancel token are enforced by a watchdog thread that shuts the socket down: the read in progress returns at once,
and the server, seeing the connection closed, stops generating (llama-server, vLLM, Ollama and llama-cpp-python
all abort a streamed generation when its client goes away).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from fimble import __version__
from fimble.model.backend import CancelToken
from fimble.model.remote.failures import (
    RemoteError,
    Server,
    not_llm_error,
    payload_error,
    reason,
    status_error,
    transport_error,
)

T = TypeVar("T")
Framing = Literal["sse", "ndjson"]

_MAX_BODY = 32 << 20  # a JSON answer larger than this is not something fimble asked for
_MAX_ERROR_BODY = 64 << 10
_MAX_LINE = 8 << 20
_WATCH_INTERVAL_S = 0.02  # how quickly a cancel or deadline closes the connection
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 2.0  # between retries inside one request
_CONNECT_RETRY_S = 1.0  # a refused connection is retried this long (a restart), not the whole timeout
_BREAKER_FIRST_S = 0.5
_BREAKER_MAX_S = 30.0  # how long an unreachable server is skipped (fail fast / use the fallback) before a new try


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    prefix: str  # path prefix without a trailing slash ("" or e.g. "/llama" behind a reverse proxy)

    @property
    def display(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"


def parse_url(url: str | None, engine: str, strip_suffixes: tuple[str, ...] = ()) -> Endpoint:
    """Validate the 'url' setting; `strip_suffixes` drops an API path users often include (".../v1")."""
    if not url or not url.strip():
        raise RemoteError(
            f"The '{engine}' backend needs the server's address: set 'url' (FIMBLE_URL, --url), "
            "e.g. http://gpu-box:8080.",
            "config",
        )
    text = url.strip()
    if "://" not in text:
        raise RemoteError(
            f"'url' must start with http:// or https:// (got {text!r}); e.g. http://{text.rstrip('/')}.", "config"
        )
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise RemoteError(f"'url' must use http:// or https:// (got {parts.scheme}:// in {text!r}).", "config")
    try:
        port = parts.port
    except ValueError:
        raise RemoteError(f"'url' has an invalid port: {text!r}.", "config") from None
    if not parts.hostname:
        raise RemoteError(f"'url' has no host name: {text!r}.", "config")
    if parts.query or parts.fragment:
        raise RemoteError(f"'url' must be the server's base address without ?query or #fragment: {text!r}.", "config")
    prefix = parts.path.rstrip("/")
    for suffix in strip_suffixes:
        if prefix.endswith(suffix):
            prefix = prefix[: -len(suffix)]
            break
    return Endpoint(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), prefix)


def api_key(env_name: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The API key from the environment variable named by 'apiKeyEnv' (keys never live in settings files)."""
    environ = os.environ if environ is None else environ
    if not env_name:
        return None
    value = environ.get(env_name, "").strip()
    return value or None


def remaining_s(cancel: CancelToken | None) -> float | None:
    if cancel is None or cancel.deadline is None:
        return None
    return cancel.deadline - time.monotonic()


class HttpClient:
    """Requests to one server. Used from the model worker thread; the small shared state is lock-protected so the
    bench helper or a test may call from elsewhere."""

    def __init__(
        self,
        url: str | None,
        *,
        engine: str,
        timeout_ms: int,
        api_key_env: str | None = None,
        strip_suffixes: tuple[str, ...] = (),
        environ: Mapping[str, str] | None = None,
        not_found_hint: str = "",
    ) -> None:
        self.engine = engine
        self.endpoint = parse_url(url, engine, strip_suffixes)
        self.timeout_s = max(0.05, timeout_ms / 1000)
        self.api_key_env = api_key_env or ""
        self._key = api_key(api_key_env, environ)
        self.server = Server(
            engine, self.endpoint.host, self.endpoint.display, self._key is not None, self.api_key_env, not_found_hint
        )
        self._lock = threading.Lock()
        self._idle: http.client.HTTPConnection | None = None
        self._failures = 0
        self._down_until = 0.0
        self._last_error: RemoteError | None = None

    @property
    def label(self) -> str:
        return self.server.label

    # -- health: fail fast while a server is known to be down ---------------------------------------------
    def check_health(self) -> None:
        """Raise the last failure again while the server is in its backoff window, instead of waiting for another
        connect timeout on every keystroke; the first request after the window tries the server again."""
        with self._lock:
            last, wait = self._last_error, self._down_until - time.monotonic()
        if last is not None and wait > 0:
            # The same message as the failure itself: clients show a repeated message once, not per keystroke.
            raise RemoteError(str(last), last.kind, last.status)

    def _record(self, error: RemoteError | None) -> None:
        with self._lock:
            if error is None:
                self._failures, self._down_until, self._last_error = 0, 0.0, None
            elif error.retryable:
                self._failures += 1
                delay = min(_BREAKER_MAX_S, _BREAKER_FIRST_S * 2 ** (self._failures - 1))
                self._down_until = time.monotonic() + delay
                self._last_error = error

    @property
    def healthy(self) -> bool:
        with self._lock:
            return self._last_error is None

    def reset_health(self) -> None:
        self._record(None)

    # -- requests ------------------------------------------------------------------------------------------
    def get_json(
        self, path: str, *, cancel: CancelToken | None = None, retry: bool = True, timeout_s: float | None = None
    ) -> Any:
        return self._with_retries(lambda: self._json_once("GET", path, None, cancel, timeout_s), cancel, retry)

    def post_json(
        self,
        path: str,
        body: Any,
        *,
        cancel: CancelToken | None = None,
        retry: bool = True,
        timeout_s: float | None = None,
    ) -> Any:
        return self._with_retries(lambda: self._json_once("POST", path, body, cancel, timeout_s), cancel, retry)

    def stream(
        self, path: str, body: Any, cancel: CancelToken, framing: Framing = "sse", *, retry: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Events of a streamed answer. Ends quietly when `cancel` fires or its deadline passes (the caller checks
        which); ends at `[DONE]` or when the server closes the stream; raises RemoteError for anything else.
        Retries happen only before the first event, so text is never delivered twice."""
        conn, resp = self._with_retries(lambda: self._open("POST", path, body, cancel, None), cancel, retry)
        done = threading.Event()
        watchdog = threading.Thread(target=_watch, args=(cancel, conn, done), name="fimble-http-watchdog", daemon=True)
        watchdog.start()
        try:
            yield from self._events(resp, framing, cancel)
        finally:
            done.set()
            conn.close()  # never reused: a half-read stream would poison the next request

    # -- internals -----------------------------------------------------------------------------------------
    def _with_retries(self, attempt: Callable[[], T], cancel: CancelToken | None, retry: bool) -> T:
        self.check_health()
        start = time.monotonic()
        give_up = start + self.timeout_s
        left = remaining_s(cancel)
        if left is not None:
            give_up = min(give_up, start + left)
        tries = 0
        while True:
            tries += 1
            try:
                result = attempt()
            except RemoteError as exc:
                stop = cancel is not None and (cancel.cancelled or cancel.expired())
                delay = exc.retry_after if exc.retry_after is not None else _BACKOFF_FIRST_S * 2 ** (tries - 1)
                delay = min(_BACKOFF_MAX_S, delay) * (0.8 + 0.4 * random.random())  # jitter: editors don't sync up
                window = min(give_up, start + _CONNECT_RETRY_S) if exc.kind == "connect" else give_up
                if stop or not (retry and exc.retryable) or time.monotonic() + delay >= window:
                    self._record(exc)
                    raise
                if not _sleep(delay, cancel):
                    self._record(exc)
                    raise
                continue
            self._record(None)
            return result

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            conn, self._idle = self._idle, None
        if conn is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn
        ep = self.endpoint
        if ep.scheme == "https":
            return http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout, context=ssl.create_default_context())
        return http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)

    def _headers(self, body: bytes | None) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream", "User-Agent": f"fimble/{__version__}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _open(
        self, method: str, path: str, body: Any, cancel: CancelToken | None, timeout_s: float | None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        timeout = timeout_s or self.timeout_s
        left = remaining_s(cancel)
        if left is not None:
            # The deadline bounds connecting too; a request past its deadline is not sent at all.
            if left <= 0:
                raise RemoteError(f"{self.label}: the request's time budget ran out before it was sent.", "timeout")
            timeout = min(timeout, max(0.05, left))
        data = json.dumps(body).encode("utf-8") if body is not None else None
        url_path = self.endpoint.prefix + path
        for fresh in (False, True):
            conn = self._connection(timeout) if not fresh else self._connection_fresh(timeout)
            reused = conn.sock is not None
            try:
                conn.request(method, url_path, body=data, headers=self._headers(data))
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                if reused and not fresh:
                    continue  # the server closed an idle keep-alive connection: one immediate, fresh try
                raise transport_error(self.server, exc, timeout) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise transport_error(self.server, exc, timeout) from None
            if resp.status >= 300:
                try:
                    raw = resp.read(_MAX_ERROR_BODY)
                except (OSError, http.client.HTTPException):
                    raw = b""
                conn.close()
                raise status_error(self.server, resp, raw, path)
            return conn, resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection_fresh(self, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            self._idle = None
        return self._connection(timeout)

    def _json_once(self, method: str, path: str, body: Any, cancel: CancelToken | None, timeout_s: float | None) -> Any:
        conn, resp = self._open(method, path, body, cancel, timeout_s)
        try:
            raw = resp.read(_MAX_BODY + 1)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise transport_error(self.server, exc, timeout_s or self.timeout_s, mid_answer=True) from None
        if len(raw) > _MAX_BODY:
            conn.close()
            raise not_llm_error(self.server, path, resp, raw)
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                if self._idle is None:
                    self._idle = conn  # keep-alive: tokenize calls on every keystroke skip the TCP/TLS handshake
                else:
                    conn.close()
        try:
            return json.loads(raw)
        except ValueError:
            raise not_llm_error(self.server, path, resp, raw) from None

    def _events(
        self, resp: http.client.HTTPResponse, framing: Framing, cancel: CancelToken
    ) -> Iterator[dict[str, Any]]:
        ctype = (resp.getheader("Content-Type") or "").lower()
        if "text/html" in ctype:
            raise not_llm_error(self.server, "(stream)", resp, resp.read(2048))
        if framing == "sse" and "application/json" in ctype:
            # A server that ignored "stream": true answers with one JSON object; treat it as a one-event stream.
            raw = self._read_line(resp, cancel, whole=True)
            if raw is None:
                return
            yield self._decode_event(raw.decode("utf-8", "replace"))
            return
        data: list[str] = []
        while True:
            raw = self._read_line(resp, cancel)
            if raw is None:  # cancelled, deadline or end of stream
                if data and not (cancel.cancelled or cancel.expired()):
                    yield self._decode_event("\n".join(data))
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if framing == "ndjson":
                if line.strip():
                    yield self._decode_event(line)
                continue
            if not line:
                if data:
                    payload = "\n".join(data)
                    data = []
                    if payload.strip() == "[DONE]":
                        return
                    yield self._decode_event(payload)
                continue
            if line.startswith(":"):
                continue  # SSE comment: keep-alive pings
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "error":  # older llama-server versions report stream errors on their own field
                yield {"error": self._decode_event(value) if value.strip().startswith("{") else value}

    def _read_line(self, resp: http.client.HTTPResponse, cancel: CancelToken, whole: bool = False) -> bytes | None:
        try:
            raw = resp.read(_MAX_BODY) if whole else resp.readline(_MAX_LINE)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if cancel.cancelled or cancel.expired():
                return None  # the watchdog closed the socket
            if isinstance(exc, TimeoutError | socket.timeout):
                raise RemoteError(
                    f"{self.label} stopped sending mid-answer for {self.timeout_s * 1000:.0f} ms. "
                    "Raise 'requestTimeoutMs' if the server is just slow, or check its load.",
                    "timeout",
                ) from None
            raise RemoteError(
                f"{self.label} broke the connection mid-answer ({reason(exc)}); the server may have crashed or "
                "restarted.",
                "stream",
            ) from None
        if not raw:
            return None
        return raw

    def _decode_event(self, payload: str) -> dict[str, Any]:
        try:
            event = json.loads(payload)
        except ValueError:
            snippet = payload.strip()[:80]
            raise RemoteError(
                f"{self.label} sent malformed JSON in its stream ({snippet!r}). Check that 'url' points at the "
                f"server itself, not a proxy or another service, and that 'backend' ({self.engine}) matches it.",
                "protocol",
            ) from None
        if not isinstance(event, dict):
            raise RemoteError(f"{self.label} sent an unexpected stream event: {payload[:80]!r}.", "protocol")
        error = event.get("error")
        if error:
            raise payload_error(self.server, event, None, "(stream)")
        return event

    def close(self) -> None:
        with self._lock:
            conn, self._idle = self._idle, None
        if conn is not None:
            conn.close()


def _watch(cancel: CancelToken, conn: http.client.HTTPConnection, done: threading.Event) -> None:
    """Shut the socket down when the request is cancelled or its deadline passes; the blocked read returns and the
    server sees the client go away. Polling keeps CancelToken's interface as it is (no callbacks)."""
    while not done.wait(_WATCH_INTERVAL_S):
        if cancel.cancelled or cancel.expired():
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return


def _sleep(seconds: float, cancel: CancelToken | None) -> bool:
    """Sleep, waking early on cancel; False when cancelled or past the deadline."""
    end = time.monotonic() + seconds
    while True:
        if cancel is not None and (cancel.cancelled or cancel.expired()):
            return False
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, _WATCH_INTERVAL_S))
