"""Model work done while no request needs the model, so the next request finds its prompt evaluated.

One warm-up at a time runs on the model worker, under the runtime key `WARM_KEY`: a newer warm-up replaces it, and
every completion request that goes to the model cancels it first. The backend checks the cancel between two prompt
batches (at most 128 tokens) or two generated tokens and keeps what it evaluated, so a request waits at most that
long. A warm-up that is still queued when a request reaches the model is skipped when its turn comes: the request
knows better where the user is.

Four kinds:
- "open": a document was opened, or a model loaded: its prompt at the user's last known position (the last request
  there, or the end of the last edit the client reported), not at the end of the file;
- "edit": the client reported an edit: the prompt at its end, where the cursor is, built and evaluated in the
  pause before the editor's debounced request, which then finds both ready (unless the typed-through cache will
  answer it: then the warm-up under way goes on);
- "continue": a request stopped by its time budget (or cancelled by the client) before its answer was whole is
  finished: its very prompt evaluated, its answer generated and put in the typed-through cache. A big file's first
  prompt then costs one evaluation in total, however many requests the budget cuts it into, and a model slower than
  the budget still gets its suggestion shown at the next request there;
- "accept": a suggestion was shown: the prompt the request after accepting it will send (llama.vim's speculative
  FIM), so an accept does not wait for the text after the cursor, or a moved window, to be evaluated again.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from fimble.completion.filters import Suggestion
from fimble.completion.pipeline import (
    Completion,
    CompletionRequest,
    Layout,
    complete,
    evaluate,
    plan_prompt,
    warm_accepted,
)
from fimble.model.backend import CancelToken, ModelBackend
from fimble.model.runtime import Cancelled, ModelRuntime
from fimble.prompt.assemble import Prompt

log = logging.getLogger(__name__)

WARM_KEY = "__warm__"
RECENT = 8  # warm-ups fimble/stats lists
PutInCache = Callable[[str, str, str, list[Suggestion]], None]  # (uri, prefix, suffix, suggestions)
Work = Callable[[ModelBackend, CancelToken], int]


@dataclass
class WarmUp:
    """One warm-up and what became of it (fimble/stats lists the latest)."""

    kind: str  # "open", "edit", "continue" or "accept"
    uri: str
    offset: int  # the cursor whose prompt it evaluates
    serial: int  # requests that had reached the model when it was asked for
    state: str = "queued"  # queued, running, done, stopped (a request came first), skipped (stale), failed
    tokens: int = 0  # tokens evaluated (prompt and, for "continue", generated)

    @property
    def pending(self) -> bool:
        return self.state in ("queued", "running")

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "uri": self.uri, "offset": self.offset, "state": self.state, "tokens": self.tokens}


@dataclass(frozen=True)
class Answer:
    """A document's latest model answer: its request and completion, and the requests before it (its serial)."""

    request: CompletionRequest
    completion: Completion
    serial: int


class WarmUps:
    """Per-document cursors and answers, and the one warm-up in flight. Called on the event loop, except
    `note_answer` and `prompt_for`, which run in the request's job on the model worker."""

    def __init__(self, runtime: ModelRuntime, put_in_cache: PutInCache) -> None:
        self.runtime = runtime
        self.put_in_cache = put_in_cache  # thread-safe: "continue" stores its answer from the worker
        self.requests = 0  # completion requests that went to the model so far
        self.current: WarmUp | None = None
        self.recent: deque[WarmUp] = deque(maxlen=RECENT)  # for fimble/stats, oldest first
        self._cursors: dict[str, int] = {}
        self._answers: dict[str, Answer] = {}
        self._lock = threading.Lock()  # _answers is written on the worker and read on the event loop
        # The prompt a warm-up built last, for the request that comes for the same text and cursor (worker only).
        self._prepared: tuple[CompletionRequest, Prompt, Layout] | None = None

    # -- what the server tells it ---------------------------------------------------------------------
    def request_started(self, uri: str, offset: int) -> int:
        """A request is about to go to the model: the warm-up stops (keeping its work); returns the request's
        serial number."""
        self.requests += 1
        self.runtime.cancel(WARM_KEY)
        self._cursors[uri] = offset
        return self.requests

    def moved(self, uri: str, offset: int) -> None:
        """The user is at `offset` of `uri` (a request answered from the cache, the end of an edit)."""
        self._cursors[uri] = offset

    def cursor(self, uri: str, length: int) -> int | None:
        """The user's last known position in a document of `length` characters; None when unknown."""
        offset = self._cursors.get(uri)
        return None if offset is None else max(0, min(offset, length))

    def forget(self, uri: str) -> None:
        """Drop what is kept for a closed document: its cursor, its latest answer and a prompt prepared for it (each
        holds its text, and a layout holds a syntax tree), and stop a warm-up for it."""
        self._cursors.pop(uri, None)
        with self._lock:
            self._answers.pop(uri, None)
        prepared = self._prepared
        if prepared is not None and prepared[0].uri == uri:
            self._prepared = None
        current = self.current
        if current is not None and current.uri == uri and current.pending:
            self.runtime.cancel(WARM_KEY)

    # -- on the model worker, inside a request's job ---------------------------------------------------
    def prompt_for(self, request: CompletionRequest) -> tuple[Prompt, Layout | None] | None:
        """The prompt already built for this very request (same text, cursor and settings), if any: by a warm-up,
        or by the document's latest answer when that was left unfinished here (cut by the clock, or cancelled by a
        request for the same place). Continuing it keeps every token evaluated so far, where a prompt built again
        could differ (the context sources learn as the workspace is indexed)."""
        with self._lock:
            answer = self._answers.get(request.uri)
        if answer is not None and not answer.completion.finished and _same_place(answer.request, request):
            return answer.completion.prompt, answer.completion.layout
        prepared = self._prepared
        if prepared is not None and _same_place(prepared[0], request):
            return prepared[1], prepared[2]
        return None

    def unfinished_here(self, request: CompletionRequest) -> bool:
        """Whether the document's latest answer was left unfinished (cut by the clock, or cancelled) at this very
        place: the user has been waiting for it since, through that request's budget."""
        with self._lock:
            answer = self._answers.get(request.uri)
        return answer is not None and not answer.completion.finished and _same_place(answer.request, request)

    def note_answer(self, request: CompletionRequest, completion: Completion, serial: int) -> None:
        with self._lock:
            self._answers[request.uri] = Answer(request, completion, serial)

    # -- scheduling ------------------------------------------------------------------------------------
    def open(self, request: CompletionRequest, kind: str = "open") -> None:
        """Build and evaluate the prompt at `request`'s cursor (a document opened, a model loaded, an edit made)."""
        self._schedule(kind, request.uri, request.offset, self.requests, lambda b, c: self._prepare(b, request, c))

    def _prepare(self, backend: ModelBackend, request: CompletionRequest, cancel: CancelToken) -> int:
        prompt, layout = plan_prompt(backend, request)
        self._prepared = (request, prompt, layout)
        return evaluate(backend, prompt, cancel)

    def answered(self, request: CompletionRequest, completion: Completion, serial: int) -> None:
        """A request's answer is back: an unfinished one is finished in idle time, a shown one is speculated on."""
        if not completion.finished:
            self._schedule("continue", request.uri, request.offset, serial, self._finish(request, completion))
        elif completion.text and completion.layout is not None:
            self._speculate(request, completion, Suggestion(completion.text, completion.replace_suffix), serial)

    def typed_through(self, uri: str, prefix: str, suffix: str, shown: Suggestion) -> None:
        """The cache answered with `shown` at (prefix, suffix): prepare its accept, from the document's latest
        answer when that is where it came from (the user typed the start of that suggestion)."""
        with self._lock:
            answer = self._answers.get(uri)
        if answer is None or answer.completion.layout is None:
            return
        old = answer.request
        if len(prefix) < old.offset or old.suffix != suffix or prefix[: old.offset] != old.prefix:
            return
        whole = Suggestion(prefix[old.offset :] + shown.text, shown.replace_suffix)
        self._speculate(old, answer.completion, whole, answer.serial)

    def _speculate(self, request: CompletionRequest, completion: Completion, shown: Suggestion, serial: int) -> None:
        layout = completion.layout
        if layout is None:
            return
        self._schedule(
            "accept",
            request.uri,
            request.offset + len(shown.text),  # the cursor after the accept
            serial,
            lambda b, c: warm_accepted(b, request, shown, layout, c),
        )

    def _finish(self, request: CompletionRequest, unfinished: Completion) -> Work:
        def work(backend: ModelBackend, cancel: CancelToken) -> int:
            # Its prompt first, on its own: the tokens evaluated are counted exactly even if a request cuts it.
            evaluated = evaluate(backend, unfinished.prompt, cancel)
            if cancel.cancelled:
                return evaluated
            result = complete(backend, request, cancel, planned=(unfinished.prompt, unfinished.layout))
            if result.finished:
                self.put_in_cache(request.uri, request.prefix, request.suffix, result.suggestions)
            return evaluated + result.generation.generated_tokens

        return work

    def _schedule(self, kind: str, uri: str, offset: int, serial: int, work: Work) -> None:
        if serial != self.requests:
            return  # a newer request reached the model: it evaluates what matters now
        current = self.current
        if (
            current is not None
            # An "open" or "edit" warm-up is for a text the key does not name; these two are for what the serial's
            # answer holds, and what a finished one evaluated is still in the KV cache (nothing ran after it).
            and kind in ("continue", "accept")
            and (current.kind, current.uri, current.offset, current.serial) == (kind, uri, offset, serial)
            and current.state in ("queued", "running", "done")
        ):
            return  # already done, or on its way
        cancel = self.runtime.token_for(WARM_KEY)
        record = WarmUp(kind, uri, offset, serial)
        self.current = record
        self.recent.append(record)

        def job(backend: ModelBackend) -> int:
            if self.requests != serial:
                record.state = "skipped"
                return 0
            record.state = "running"
            try:
                record.tokens = work(backend, cancel)
            finally:
                record.state = "stopped" if cancel.cancelled else "done"
            return record.tokens

        future = self.runtime.submit(job, cancel)
        future.add_done_callback(lambda f: _settle(record, f))

    def as_json(self) -> list[dict[str, Any]]:
        """The latest warm-ups, oldest first, with how each ended."""
        return [record.as_json() for record in list(self.recent)]


def _same_place(a: CompletionRequest, b: CompletionRequest) -> bool:
    """Whether two requests would build the same prompt: same document text, cursor and settings."""
    return (
        a.uri == b.uri
        and a.offset == b.offset
        and a.settings is b.settings
        and a.context is b.context
        and (a.text is b.text or a.text == b.text)
    )


def _settle(record: WarmUp, future: Future[int]) -> None:
    """A warm-up's future is done: never an unhandled error, and its record says how it ended."""
    if future.cancelled():
        record.state = "stopped"
        return
    error = future.exception()
    if isinstance(error, Cancelled):
        record.state = "stopped"  # cancelled while queued
    elif error is not None:
        record.state = "failed"
        log.warning("warm-up (%s) failed: %s", record.kind, error)
