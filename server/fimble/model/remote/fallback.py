"""A remote engine with its reachability reported to the client, and an optional local fallback model.

The runtime runs each request as `fn(backend)` (prompt building *and* generation). `RemoteSession.call` runs the
whole `fn` on the remote engine, or, when the server cannot serve and 'fallbackModel' is set, the whole `fn` again
on the local model: prompts are built with the tokenizer and FIM template of the engine that generates, never
mixed. While the server stays down its client fails fast (backoff window), so keystrokes go straight to the local
model and the server is tried again after the window.

Status changes (server down, fallback active, server back) go to the runtime's status listener once per change,
which the LSP server turns into `fimble/status` and a message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from fimble.errors import FimbleError, ModelError
from fimble.model.backend import CancelToken, GenerationParams, GenerationResult, ModelBackend, ModelInfo, OnText
from fimble.model.remote.failures import RemoteError
from fimble.model.remote.remote_backend import RemoteBackend
from fimble.prompt.formats import Piece

log = logging.getLogger(__name__)
T = TypeVar("T")
StatusSink = Callable[..., None]  # the runtime's _set_state(state, message)
FallbackLoader = Callable[[], ModelBackend]


class RemoteSession:
    """A `ModelBackend` that delegates to the remote engine, or to the fallback model while the server is down."""

    def __init__(self, remote: RemoteBackend, fallback: FallbackLoader | None = None, fallback_name: str = "") -> None:
        self.remote = remote
        self._fallback_loader = fallback
        self.fallback_name = fallback_name
        self._fallback: ModelBackend | None = None
        self._fallback_error: FimbleError | None = None
        self._status: StatusSink | None = None
        self._lock = threading.Lock()
        self.using_fallback = False
        self._reported: tuple[str, str] | None = None
        self._last_error: RemoteError | None = None
        self._up: bool | None = None  # what the client was last told: reports happen on changes only

    # -- status ----------------------------------------------------------------------------------------------
    def bind_status(self, sink: StatusSink) -> None:
        """Called by the runtime after loading; reports the state reached while loading."""
        self._status = sink
        if self.remote.ready:
            self._went_up()
        else:
            self._went_down(self._last_error)

    def ready_message(self) -> str:
        info = self.remote.info
        return (
            f"{info.name} ({info.format.name} format, from {self.remote.format_source}) on {self.remote.label}, "
            f"context {info.n_ctx} tokens"
        )

    def _down_message(self, error: FimbleError | None) -> str:
        reason = str(error) if error is not None else f"{self.remote.label} has not answered yet."
        if self._fallback_loader is None:
            return reason
        if self._fallback_error is not None:
            return f"{reason} The local fallback model failed too: {self._fallback_error}"
        return f"{reason} Using the local fallback model ({self.fallback_name}) meanwhile."

    def _went_up(self) -> None:
        if self._up is not True:
            self._up = True
            self._report("ready", self.ready_message())

    def _went_down(self, error: FimbleError | None) -> None:
        if self._up is not False:
            self._up = False
            self._report("error", self._down_message(error))

    def _report(self, state: str, message: str) -> None:
        if self._reported == (state, message) or self._status is None:
            return
        self._reported = (state, message)
        try:
            self._status(state, message)
        except Exception:  # a listener must never break a request
            log.exception("status listener failed")

    # -- running ---------------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Try the server now (used while loading); failures are kept for the status, never raised."""
        try:
            self.remote.ensure_ready()
        except RemoteError as exc:
            self._last_error = exc
            log.info("%s", exc)  # reported through the status listener once the runtime binds it

    def call(self, fn: Callable[[ModelBackend], T]) -> T:
        """Run one whole request on the remote engine, or on the fallback model when the server cannot serve."""
        try:
            self.remote.ensure_ready()
            result = fn(self.remote)
        except RemoteError as exc:
            if not exc.use_fallback:
                raise
            self._last_error = exc
            if exc.kind in ("connect", "loading", "stream"):
                self.remote.ready = False  # it may come back with another model: learn it again then
            fallback = self._load_fallback()
            self.using_fallback = fallback is not None
            self._went_down(exc)
            if fallback is None:
                raise
            return fn(fallback)
        self.using_fallback = False
        self._went_up()
        return result

    def _load_fallback(self) -> ModelBackend | None:
        if self._fallback_loader is None or self._fallback_error is not None:
            return None
        with self._lock:
            if self._fallback is None:
                try:
                    self._fallback = self._fallback_loader()
                except FimbleError as exc:
                    self._fallback_error = exc
                    return None
                except Exception as exc:  # llama.cpp failing must not take the server down
                    log.exception("fallback model failed to load")
                    self._fallback_error = ModelError(f"Loading the fallback model failed: {exc}")
                    return None
            return self._fallback

    # -- ModelBackend, for callers that use the backend directly ---------------------------------------------
    @property
    def active(self) -> ModelBackend:
        if self.using_fallback and self._fallback is not None:
            return self._fallback
        return self.remote

    @property
    def info(self) -> ModelInfo:
        return self.active.info

    @info.setter
    def info(self, value: ModelInfo) -> None:  # the protocol declares a plain attribute
        self.active.info = value

    def tokenize(self, text: str) -> list[int]:
        return self.active.tokenize(text)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.active.detokenize(tokens)

    def token_id(self, piece: str) -> int | None:
        return self.active.token_id(piece)

    def encode(self, pieces: Sequence[Piece], add_bos: bool | None = None) -> list[int]:
        return self.active.encode(pieces, add_bos)

    def generate(
        self, prompt: Sequence[int], params: GenerationParams, cancel: CancelToken, on_text: OnText | None = None
    ) -> GenerationResult:
        return self.active.generate(prompt, params, cancel, on_text)

    def warm(self, prompt: Sequence[int], cancel: CancelToken, boundaries: Sequence[int] = ()) -> int:
        """Pre-evaluate a prompt where the active engine can (llama-server, the local fallback); best effort."""
        warm = getattr(self.active, "warm", None)
        if warm is None:
            return 0
        try:
            return int(warm(list(prompt), cancel, boundaries))
        except FimbleError:
            return 0

    def close(self) -> None:
        self.remote.close()
        if self._fallback is not None:
            self._fallback.close()
