"""What every remote engine shares: lazy discovery of the served model, the token interface, and one streaming
generation loop that mirrors the in-process backend (stop strings, cancel, deadline, counts and timings)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace

from fimble.errors import ContextOverflowError, ModelError
from fimble.model.backend import (
    CancelToken,
    GenerationParams,
    GenerationResult,
    ModelInfo,
    OnText,
    StopReason,
    take_piece,
)
from fimble.model.remote.failures import RemoteError
from fimble.model.remote.format_choice import configured_format
from fimble.model.remote.http import HttpClient
from fimble.prompt.formats import FimFormat, Piece, Special, format_by_name
from fimble.settings import Settings


@dataclass
class Final:
    """What the server says when an answer ends; None fields are filled in from client-side measurements."""

    stop_reason: StopReason | None = None
    prompt_tokens: int | None = None
    reused_tokens: int | None = None
    generated_tokens: int | None = None
    prompt_ms: float | None = None
    generate_ms: float | None = None


Chunk = tuple[str, Final | None]


class RemoteBackend(ABC):
    """Base of the HTTP engines. Subclasses implement `_discover`, `_tokenize`, `_detokenize`, `_probe_special` and
    `_stream`. Not thread-safe, like the in-process backend: the runtime calls it from its one worker thread."""

    engine = "remote"

    def __init__(self, settings: Settings, client: HttpClient) -> None:
        self.settings = settings
        self.client = client
        self.ready = False
        self.format_source = ""
        fmt = configured_format(settings) or format_by_name("prefix-only")
        # Provisional until the server answers: lets the status line and `info` readers work while it is down.
        self.info = ModelInfo(
            path=client.endpoint.display,
            name=f"{self.engine} model",
            architecture="remote",
            format=fmt,
            n_ctx=settings.n_ctx or 4096,
            n_ctx_train=0,
            chat_template=None,
            file_size=0,
        )
        self._specials: dict[str, int | None] = {}
        self._add_bos = False
        self._bos: int | None = None

    @property
    def label(self) -> str:
        return self.client.label

    # -- discovery -------------------------------------------------------------------------------------------
    def ensure_ready(self) -> None:
        """Learn the served model (name, context size, vocabulary, format) on first use, and again after a failed
        attempt once the server's backoff window has passed. Raises RemoteError while the server is unavailable."""
        if self.ready:
            return
        started = time.monotonic()
        info = self._discover()
        self.info = replace(info, load_ms=(time.monotonic() - started) * 1000)
        self.ready = True

    @abstractmethod
    def _discover(self) -> ModelInfo: ...

    # -- tokens ----------------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        self.ensure_ready()
        return self._tokenize(text) if text else []

    def detokenize(self, tokens: Sequence[int]) -> str:
        self.ensure_ready()
        return self._detokenize(list(tokens)) if tokens else ""

    def token_id(self, piece: str) -> int | None:
        self.ensure_ready()
        if piece not in self._specials:
            self._specials[piece] = self._probe_special(piece)
        return self._specials[piece]

    def encode(self, pieces: Sequence[Piece], add_bos: bool | None = None) -> list[int]:
        self.ensure_ready()
        ids: list[int] = []
        if (self._add_bos if add_bos is None else add_bos) and self._bos is not None:
            ids.append(self._bos)
        for piece in pieces:
            if isinstance(piece, Special):
                tid = self.token_id(piece.text)
                if tid is None:
                    raise ModelError(
                        f"The served model's vocabulary has no special token {piece.text!r}; its 'promptFormat' "
                        f"({self.info.format.name}) does not fit the model. Set 'promptFormat' to 'auto' or the "
                        "model's family."
                    )
                ids.append(tid)
            elif piece:
                ids.extend(self._tokenize(piece))
        self._remember(ids, pieces)
        return ids

    @abstractmethod
    def _tokenize(self, text: str) -> list[int]: ...

    @abstractmethod
    def _detokenize(self, tokens: list[int]) -> str: ...

    @abstractmethod
    def _probe_special(self, piece: str) -> int | None: ...

    def _remember(self, ids: list[int], pieces: Sequence[Piece]) -> None:  # noqa: B027 - an optional hook
        """Hook for engines that send text: keep the pieces behind recent prompts so ids map back exactly."""

    # -- generation ------------------------------------------------------------------------------------------
    def _stop_texts(self) -> tuple[str, ...]:
        return self.info.format.stop

    @abstractmethod
    def _stream(
        self, prompt: list[int], params: GenerationParams, cancel: CancelToken, stops: tuple[str, ...]
    ) -> Generator[Chunk, None, None]: ...

    def _observe(self, prompt: list[int], final: Final) -> None:  # noqa: B027 - an optional hook
        """Hook: learn from the server's counts (the estimate tokenizer calibrates here)."""

    def generate(
        self,
        prompt: Sequence[int],
        params: GenerationParams,
        cancel: CancelToken,
        on_text: OnText | None = None,
    ) -> GenerationResult:
        self.ensure_ready()
        prompt = list(prompt)
        n_ctx = self.info.n_ctx
        if not prompt:
            raise ContextOverflowError("The prompt is empty.")
        if len(prompt) >= n_ctx:
            raise ContextOverflowError(
                f"The prompt has {len(prompt)} tokens but the server's context window holds {n_ctx}; send less."
            )
        stops = tuple(dict.fromkeys(self._stop_texts() + tuple(params.stop)))
        t0 = time.monotonic()
        first: float | None = None
        text = ""
        chunks = 0
        reason: StopReason | None = None
        final: Final | None = None
        stream = self._stream(prompt, params, cancel, stops)
        try:
            while True:
                # Checked between chunks too, not only by the connection watchdog: chunks already buffered
                # locally must not keep flowing after a cancel.
                if cancel.cancelled:
                    reason = "cancelled"
                    break
                if cancel.expired():
                    reason = "deadline"
                    break
                try:
                    delta, fin = next(stream)
                except StopIteration:
                    break
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise RemoteError(
                        f"{self.label} sent an answer fimble does not understand ({exc!r}).", "protocol"
                    ) from None
                if delta:
                    if first is None:
                        first = time.monotonic()
                    chunks += 1
                    # Stop strings are also sent to the server; this catches servers that ignore them (and
                    # special tokens a server renders as text). Closing the stream stops the server.
                    text, stop = take_piece(text, delta, stops, params, on_text)
                    if stop:
                        reason = "stop"
                        break
                if fin is not None:
                    final = fin
                    break
        finally:
            stream.close()
        t2 = time.monotonic()
        if reason is None:
            if cancel.cancelled:
                reason = "cancelled"
            elif final is None and cancel.expired():
                reason = "deadline"
            elif final is None:
                raise RemoteError(
                    f"{self.label} stopped its answer mid-stream (after {chunks} pieces, without saying it was done); "
                    "the server may have crashed or restarted.",
                    "stream",
                )
            else:
                reason = final.stop_reason or "eos"
        final = final or Final()
        t1 = first or t2
        if reason != "cancelled":
            self._observe(prompt, final)
        return GenerationResult(
            text=text,
            stop_reason=reason,
            prompt_tokens=final.prompt_tokens if final.prompt_tokens is not None else len(prompt),
            reused_tokens=final.reused_tokens or 0,
            generated_tokens=final.generated_tokens if final.generated_tokens is not None else chunks,
            prompt_ms=final.prompt_ms if final.prompt_ms is not None else (t1 - t0) * 1000,
            generate_ms=final.generate_ms if final.generate_ms is not None else (t2 - t1) * 1000,
        )

    def close(self) -> None:
        self.client.close()


def format_info(fmt: FimFormat, source: str) -> str:
    return f"{fmt.name} format ({source})"
