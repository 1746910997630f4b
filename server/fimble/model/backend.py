"""The one interface every model engine implements: load, tokenize, stream a completion with cancel, metadata.

The in-process llama.cpp engine is the first implementation; remote engines implement the same protocol so the
completion pipeline, prompts, filters and the agent never know which one they talk to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar, runtime_checkable

from fimble.errors import ModelError
from fimble.prompt.formats import FimFormat, Piece, Special

T = TypeVar("T")

# Prompt tokens per batch for work nobody waits on (warm-ups, next edits): a keystroke's request that cancels it
# waits for at most one such batch.
BACKGROUND_BATCH = 128

StopReason = Literal["eos", "stop", "length", "cancelled", "deadline", "context"]


@dataclass(frozen=True)
class ModelInfo:
    path: str
    name: str
    architecture: str
    format: FimFormat
    n_ctx: int
    n_ctx_train: int
    chat_template: str | None
    file_size: int
    load_ms: float = 0.0
    gpu_layers: int = 0
    gpu_offload_supported: bool = False


@dataclass
class CancelToken:
    """Set from any thread; the generating thread checks it between tokens and between prompt batches."""

    _event: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() value
    # A time budget that starts when the request reaches the model (`start`), not while it waits for a model load
    # or a previous request to drain: the wait is not the request's to lose.
    budget_s: float | None = None

    def start(self) -> None:
        if self.budget_s is not None and self.deadline is None:
            self.deadline = time.monotonic() + self.budget_s

    def cancel(self) -> None:
        self._event.set()

    def without_deadline(self) -> CancelToken:
        """The same cancel (a newer request, the client's cancel), without a time budget."""
        return CancelToken(self._event)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 64
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    # Called with the text so far after each piece; True ends generation (reason "stop"). Lets the pipeline stop
    # as soon as the suggestion is complete (its line ended, its block closed) instead of paying for tokens the
    # filters would cut. Every engine applies it through `take_piece`.
    stop_check: Callable[[str], bool] | None = None
    top_k: int = 40
    top_p: float = 0.95
    seed: int = 0
    # Token offsets where the prompt's parts begin (`Prompt.boundaries`): where the next prompts are likely to part
    # from this one. An engine whose KV cache cannot go back to any prefix (sliding-window layers) keeps a state
    # there; the others ignore it.
    boundaries: tuple[int, ...] = ()
    # Prompt tokens evaluated between two looks at the cancel token (None: the engine's batch). Background work (a
    # next edit) takes small batches, so a keystroke's completion that cancels it waits for at most one.
    batch: int | None = None


@dataclass
class GenerationResult:
    text: str
    stop_reason: StopReason
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    prompt_ms: float = 0.0
    generate_ms: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Generation speed; 0.0 when unknown: a single token comes with the prompt's evaluation, so its "rate"
        (thousands a second) would say nothing about the model."""
        if self.generated_tokens < 2 or self.generate_ms <= 0:
            return 0.0
        return self.generated_tokens / (self.generate_ms / 1000)


OnText = Callable[[str], None]


class ModelBackend(Protocol):
    info: ModelInfo

    def tokenize(self, text: str) -> list[int]:
        """Tokens of plain text: no BOS, special-token strings are NOT parsed (they stay text)."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def token_id(self, piece: str) -> int | None:
        """The id of a single vocabulary entry (a special token), or None."""
        ...

    def encode(self, pieces: Sequence[Piece], add_bos: bool | None = None) -> list[int]:
        """Token ids of a rendered prompt: text tokenized, specials looked up, BOS as the model wants."""
        ...

    def generate(
        self,
        prompt: Sequence[int],
        params: GenerationParams,
        cancel: CancelToken,
        on_text: OnText | None = None,
    ) -> GenerationResult: ...

    def close(self) -> None: ...


# Optional capabilities: an engine has one when it implements the method; callers ask with isinstance, so what an
# engine may offer is written here, once, and checked by mypy where it is implemented.


@runtime_checkable
class Warms(Protocol):
    """Evaluates a prompt into its cache ahead of the request that will need it (in-process llama.cpp, and
    llama-server's slot). `boundaries`: token offsets where a checkpoint lets a later prompt that differs from there
    on keep what comes before."""

    def warm(self, prompt: Sequence[int], cancel: CancelToken, boundaries: Sequence[int] = ()) -> int: ...


@runtime_checkable
class Scores(Protocol):
    """Teacher-forced log-probability of `continuation` after `prompt` (the evaluation's low-noise signal)."""

    def log_likelihood(self, prompt: Sequence[int], continuation: Sequence[int]) -> float: ...


@runtime_checkable
class RoutesCalls(Protocol):
    """Chooses the engine for a whole request itself (a remote session: the server, or its fallback model)."""

    def call(self, fn: Callable[[ModelBackend], T]) -> T: ...


@runtime_checkable
class ReportsStatus(Protocol):
    """Reports its own state (a remote session: the server reachable or not), now and whenever it changes."""

    def bind_status(self, sink: Callable[..., None]) -> None: ...


def take_piece(
    text: str, piece: str, stops: Sequence[str], params: GenerationParams, on_text: OnText | None
) -> tuple[str, bool]:
    """Append one generated piece, the same way in every engine: cut at a stop string, stream the piece, ask the
    pipeline's stop check. Returns the text so far and whether generation must end (reason "stop")."""
    text += piece
    cut = find_stop(text, stops)
    if cut != -1:
        return text[:cut], True
    if on_text is not None:
        on_text(piece)
    return text, params.stop_check is not None and params.stop_check(text)


def find_stop(text: str, stops: Sequence[str]) -> int:
    """Index of the earliest stop string in `text`, or -1."""
    best = -1
    for stop in stops:
        if stop:
            i = text.find(stop)
            if i != -1 and (best == -1 or i < best):
                best = i
    return best


def encode_pieces(backend: ModelBackend, pieces: Sequence[Piece], bos: int | None, missing_hint: str = "") -> list[int]:
    """Token ids of rendered prompt pieces, the way every engine builds them: an optional BOS, then text tokenized
    as plain text and special tokens looked up by name (never parsed out of text)."""
    ids: list[int] = [] if bos is None else [bos]
    for piece in pieces:
        if isinstance(piece, Special):
            tid = backend.token_id(piece.text)
            if tid is None:
                raise ModelError(f"The model's vocabulary has no special token {piece.text!r}.{missing_hint}")
            ids.append(tid)
        else:
            ids.extend(backend.tokenize(piece))
    return ids


def special_ids(backend: ModelBackend, names: Sequence[str]) -> tuple[set[int], tuple[str, ...]]:
    """Split stop strings into those that are one vocabulary token (stop by id) and plain text stops."""
    ids: set[int] = set()
    texts: list[str] = []
    for name in names:
        tid = backend.token_id(name)
        if tid is not None:
            ids.add(tid)
        else:
            texts.append(name)
    return ids, tuple(texts)


__all__ = [
    "CancelToken",
    "GenerationParams",
    "GenerationResult",
    "ModelBackend",
    "ModelInfo",
    "Special",
    "encode_pieces",
    "find_stop",
    "special_ids",
    "take_piece",
]
