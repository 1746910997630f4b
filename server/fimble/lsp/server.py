"""The fimble language server: its state (`FimbleServer`) and its wiring (`create_server`).

`create_server` registers every handler in one place, in the order things happen; each handler translates the
protocol to plain calls, made in order, and back. Three paths to follow from there:

Start-up. `initialize`: the position encoding, initializationOptions, the workspace root, the settings.
`initialized`: workspace/configuration, the settings again, the context engine created and attached to the
documents (`context_features.create_engine`); then the model load (`load_model`, queued first: it is the long
wait) and the workspace index (`context_features.start_indexing`) run at the same time, each with $/progress.

A keystroke. `didChange` -> `DocumentStore.change` applies the edits and tells the store's edit listeners: the
context engine's (syntax tree re-parsed in the pause, recent-edit bookkeeping) and the agent's
(`AgentFeatures.on_edit`: syntax diagnostics after a pause) -> `note_activity`: the prompt at the cursor is
prepared in idle time (lsp/warmup.py). Then the editor's `textDocument/inlineCompletion` -> `complete_at`:
`resolve` (the document, the offset, the size limit) -> the typed-through cache (`CompletionCache.lookup`), else
`completion.pipeline.complete` on the model worker (`ModelRuntime.run`: the newest request per document wins,
`$/cancelRequest` stops generation within one token) -> `prompt.assemble` -> the backend's `generate` -> filters
-> `on_inline_completion` turns the suggestions into `InlineCompletionItem`s with ranges in the client's encoding.

A save or a close. `didSave` and workspace/didChangeWatchedFiles re-index the files (`ContextEngine.on_saved`,
`on_files_changed`). `didClose` -> `close_document`: the store forgets the text, `drop_document_state` drops what
each part keeps for it (named there), and a large document's memory is given back. The connection's end:
`close` (generations cancelled, fix checkers and their worktrees removed, the index saved).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.capabilities import ServerCapabilitiesBuilder
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from fimble import __version__
from fimble.agent.actions import EXPLAIN_COMMAND, FIX_COMMAND
from fimble.agent.checkers import close_all_sandboxes
from fimble.completion.cache import CompletionCache
from fimble.completion.filters import Suggestion
from fimble.completion.pipeline import Completion, CompletionRequest, build_prompt, complete
from fimble.context.engine import ContextEngine
from fimble.documents import Document, DocumentStore
from fimble.errors import FimbleError
from fimble.lsp.agent_features import AgentFeatures
from fimble.lsp.connection import LoopMonitor, run_connection
from fimble.lsp.context_features import create_engine, start_indexing
from fimble.lsp.convert import (
    JsonRpcRequestFailed,
    field,
    offset_of,
    position_of,
    rpc_error,
    structure,
    to_plain,
)
from fimble.lsp.next_edit_features import COPILOT_INLINE_EDIT, NEXT_EDIT, NextEditFeatures
from fimble.lsp.protocol import FimbleProtocol, fail_fast_converter
from fimble.lsp.warmup import WarmUps
from fimble.model.backend import ModelBackend
from fimble.model.runtime import Cancelled, ModelRuntime, State
from fimble.settings import CONFIGURATION, ENV, FLAG, INIT_OPTIONS, Composed, compose, env_layer
from fimble.trust.paths import NO_FOLDERS, WorkspaceFolders

log = logging.getLogger(__name__)

STATUS = "fimble/status"
TOO_LARGE = "documentTooLarge"  # the `reason` of a fimble/status for a request on a document over the size limit
INVOKED_CANDIDATES = 3
DEBUG_PROMPT = "fimble/debugPrompt"
STATS = "fimble/stats"
CONFIG_SECTION = "fimble"
_REPEAT_MESSAGE_S = 30.0
# At most this many pop-ups per minute, whatever they say: a client that sends the same mistake for 2,000 URIs
# gets 2,000 log lines and a few pop-ups, not 2,000 pop-ups.
_MESSAGES_PER_MINUTE = 4
_TOLD_ONCE_MAX = 1024
# Closing a document this large asks the C allocator to return freed pages: its text, line index and syntax tree
# (several times its size) leave tens of megabytes in glibc's free lists otherwise (measured: +64 MB after a 5 MB
# and five 2 MB documents without a size limit, +47 MB with the trim; it takes 2-4 ms).
TRIM_AFTER_BYTES = 1_000_000


class DocumentTooLarge(JsonRpcRequestFailed):
    """A request on a document over maxDocumentBytes; the message says so, for the user."""


class FimbleServer(LanguageServer):
    def __init__(self, cli_overrides: dict[str, Any] | None = None, runtime: ModelRuntime | None = None) -> None:
        super().__init__(
            "fimble",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=FimbleProtocol,
            converter_factory=fail_fast_converter,
        )
        self.store = DocumentStore()
        self.runtime = runtime or ModelRuntime()
        self.cli_overrides = cli_overrides or {}
        self.init_options: dict[str, Any] = {}
        self.workspace_settings: dict[str, Any] = {}
        self.composed: Composed | None = None
        self.composed = self._compose_settings()  # problems in it are told once the client is there (initialize)
        self.settings = self.composed.settings
        self.store.max_bytes = self.settings.max_document_bytes
        self.root: Path | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._last_message: tuple[str, float] = ("", 0.0)
        self._shown_at: list[float] = []  # when the last pop-ups went out (rate limit)
        self._told: set[str] = set()
        self.loop_monitor: LoopMonitor | None = None  # set when FIMBLE_MONITOR_LOOP asks for stall figures
        # Set once the first load is queued: requests that race ahead of `initialized` wait for it, not fail.
        self._load_queued = asyncio.Event()
        self.cache = CompletionCache()
        self.context_engine: ContextEngine | None = None  # created in `initialized`, once the root is known
        self.agent = AgentFeatures(self)  # diagnostics, code actions, fixes and explanations
        self.next_edit = NextEditFeatures(self)  # the edit history, next-edit requests and their model
        self._active_uri: str | None = None
        # Idle-time work: warming where the user is, finishing cut requests, preparing accepts (lsp/warmup.py).
        self.warmups = WarmUps(self.runtime, self.cache.put)

    # -- settings ----------------------------------------------------------------------------------------
    def _compose_settings(self) -> Composed:
        layers = (
            (ENV, env_layer(os.environ)),
            (INIT_OPTIONS, self.init_options),
            (CONFIGURATION, self.workspace_settings),
            (FLAG, self.cli_overrides),
        )
        return compose(layers, self.composed)

    def update_settings(self) -> bool:
        """Recompute settings; returns True when the model must be loaded again. A bad value is told to the user
        once and that setting keeps its previous value; the other settings of the update apply."""
        self.composed = self._compose_settings()
        self.settings = self.composed.settings
        for problem in self.composed.problems:
            log.warning("%s", problem)
            self.tell_once(f"setting: {problem}", f"{problem} Keeping the previous value.", types.MessageType.Error)
        for doc in self.store.set_limit(self.settings.max_document_bytes):
            self.set_aside(doc)
        return self.runtime.needs_reload(self.settings)

    async def pull_configuration(self) -> None:
        caps = self.client_capabilities.workspace
        if not (caps and caps.configuration):
            return
        try:
            result = await asyncio.wait_for(
                self.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(section=CONFIG_SECTION)])
                ),
                timeout=5,
            )
        except Exception as exc:  # a client that fails this request still gets defaults
            log.warning("workspace/configuration failed: %s", exc)
            return
        if result and isinstance(result[0], dict):
            self.workspace_settings = result[0]

    # -- messages ----------------------------------------------------------------------------------------
    def notify_status(self, state: str, message: str, **extra: Any) -> None:
        payload = {"state": state, "message": message, **extra}
        if self.runtime.model_name is not None:
            payload.setdefault("model", self.runtime.model_name)
        self.protocol.notify(STATUS, payload)

    def show_error(self, message: str) -> None:
        """window/showMessage, but the same message at most once per 30 s (it may fire on every keystroke)."""
        now = time.monotonic()
        last, when = self._last_message
        if message == last and now - when < _REPEAT_MESSAGE_S:
            return
        self._last_message = (message, now)
        self._pop_up(types.MessageType.Error, message)

    def tell_once(self, key: str, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        """A pop-up the user sees once per `key` (a document, a setting) for the life of the server."""
        if key in self._told:
            return
        if len(self._told) >= _TOLD_ONCE_MAX:
            self._told.clear()
        self._told.add(key)
        self._pop_up(kind, message)

    def _pop_up(self, kind: types.MessageType, message: str) -> None:
        now = time.monotonic()
        self._shown_at = [t for t in self._shown_at if now - t < 60.0]
        if len(self._shown_at) >= _MESSAGES_PER_MINUTE:
            log.warning("not shown (too many messages this minute): %s", message)
            return
        self._shown_at.append(now)
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"fimble: {message}"))

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls' hook for errors outside a request (a notification handler that raised): one log line and a
        rate-limited pop-up, instead of one pop-up per failing message."""
        log.warning("%s: %s", getattr(source, "__name__", source), error)
        self.show_error(f"internal error: {error}")

    # -- connection ----------------------------------------------------------------------------------------
    def serve(self, inp: Any, out: Any) -> int:
        """Serve one client over a pair of byte streams; returns the exit code (0 after shutdown, else 1)."""
        return run_connection(self, inp, out, self.close)

    def start_io(self, stdin: Any = None, stdout: Any = None) -> None:
        """pygls' entry point, on fimble's connection loop; ends the process with the exit code."""
        raise SystemExit(self.serve(stdin or sys.stdin.buffer, stdout or sys.stdout.buffer))

    def close(self) -> None:
        """What must not outlive the connection: running generations are told to stop, fix checkers and their
        temporary worktrees go, and the index is saved. Nothing here waits for the model: the process exits next."""
        self.runtime.cancel_all()
        self.next_edit.close()
        close_all_sandboxes()
        engine = self.context_engine
        if engine is not None:
            try:
                engine.close()
            except Exception:
                log.exception("closing the context engine failed")

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Figures for benchmarks (`fimble/stats`); `reset` starts the stall measurement afresh."""
        monitor = self.loop_monitor
        out = {
            "documents": sum(1 for _ in self.store),
            "maxLoopStallMs": round(monitor.max_stall_ms, 1) if monitor else None,
            "loopSamples": monitor.samples if monitor else 0,
            "threads": threading.active_count(),
            "warmUps": self.warmups.as_json(),
        }
        if reset and monitor is not None:
            monitor.max_stall_ms = 0.0
            monitor.samples = 0
        return out

    def on_model_status(self, state: State, message: str) -> None:
        """A runtime status listener: fimble/status (and a pop-up for an error). Called on the model worker
        thread; protocol writes belong to the event loop."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        def send() -> None:
            if state == "ready":
                log.info("%s", message)
                self.window_log_message(types.LogMessageParams(type=types.MessageType.Info, message=message))
            if state == "error":
                self.show_error(message)
            self.notify_status(state, message)

        loop.call_soon_threadsafe(send)

    # -- model -------------------------------------------------------------------------------------------
    async def load_model(self) -> None:
        """(Re)load the model, reporting $/progress when the client supports it."""
        self.loop = asyncio.get_running_loop()
        future = self.runtime.load(self.settings)
        self.next_edit.load(self.settings)  # its own model, when nextEditModel names one that fits
        self._load_queued.set()
        if self._active_uri is not None:  # a new model starts with an empty KV cache: warm where the user is
            self.schedule_warm(self._active_uri)
        token: str | None = None
        window = self.client_capabilities.window
        if window and window.work_done_progress:
            token = f"fimble-load-{uuid.uuid4()}"
            try:
                await asyncio.wait_for(self.work_done_progress.create_async(token), timeout=5)
                self.work_done_progress.begin(
                    token,
                    types.WorkDoneProgressBegin(title="fimble: loading model", message=self.settings.model or ""),
                )
            except Exception as exc:
                log.warning("progress not available: %s", exc)
                token = None
        outcome = await asyncio.wrap_future(future)
        if token is not None:
            message = f"{outcome.backend.info.name} ready" if outcome.backend else f"failed: {outcome.error}"
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        # Everything alive now (modules, protocol types, the model's Python side) lives as long as the server: out
        # of the cyclic collector's reach, a full collection no longer walks it (50-100 ms event-loop stalls).
        gc.freeze()

    # -- documents ---------------------------------------------------------------------------------------
    def resolve(self, uri: str, position: types.Position) -> tuple[Document, int]:
        """Where a request points: the open document and the offset of `position` in it. A document that is not
        open, or a position outside it, is InvalidParams; a document over maxDocumentBytes is DocumentTooLarge (a
        RequestFailed, which completion answers with an empty list instead)."""
        doc = self.document(uri, within_limit=True)
        return doc, self.offset(doc, position)

    def document(self, uri: str, within_limit: bool = False) -> Document:
        """The open document; with `within_limit`, a document over maxDocumentBytes is refused (DocumentTooLarge)."""
        try:
            doc = self.store.get(uri)
        except FimbleError as exc:
            raise rpc_error(exc) from None
        if within_limit and self.store.oversized(doc):
            raise DocumentTooLarge(self.too_large_message(doc))
        return doc

    def offset(self, doc: Document, position: types.Position) -> int:
        """`position` as an offset in `doc`'s text; InvalidParams when it is not in the document."""
        try:
            return offset_of(doc, position)
        except FimbleError as exc:
            raise rpc_error(exc) from None

    def served(self, uri: str) -> Document | None:
        """The document when it is open and within the size limit: for work that is skipped, not refused, on any
        other (warm-ups, diagnostics, code actions)."""
        doc = self.store.find(uri)
        return None if doc is None or self.store.oversized(doc) else doc

    def too_large_message(self, doc: Document) -> str:
        name = Path(unquote(urlparse(doc.uri).path)).name or doc.uri
        return (
            f"{name} is {doc.size_bytes / 1e6:.1f} MB, over maxDocumentBytes ({self.store.max_bytes / 1e6:.1f} MB): "
            "fimble gives it no suggestions, diagnostics or context until it is smaller."
        )

    def set_aside(self, doc: Document) -> None:
        """A document went over the size limit: it stays in the store (its edits keep it in step), everything else
        kept for it goes, and the user is told once while it is open."""
        self.drop_document_state(doc.uri)
        self.tell_once(f"{TOO_LARGE}:{doc.uri}", self.too_large_message(doc), types.MessageType.Info)

    def drop_document_state(self, uri: str) -> None:
        """Everything fimble keeps for one document, dropped when it is closed or goes over the size limit. A new
        per-document cache belongs on this list."""
        self.cache.forget(uri)  # typed-through suggestions
        self.runtime.cancel(uri)  # its completion in flight and the cancel token kept for the next one
        self.warmups.forget(uri)  # the user's position, its latest answer, a warm-up for it
        if self._active_uri == uri:
            self._active_uri = None
        if self.context_engine is not None:
            self.context_engine.forget(uri)  # syntax tree, arrangements, sources' answers, jobs (see forget)
        self.agent.forget(uri)  # diagnostics (cleared in the editor) and their timer, fix/explain tokens
        self.next_edit.forget(uri)  # its recent edits in the history

    def close_document(self, uri: str) -> None:
        doc = self.store.close(uri)
        self.drop_document_state(uri)
        self._told.discard(f"{TOO_LARGE}:{uri}")  # told again if it is opened again
        if doc is not None and doc.size_bytes >= TRIM_AFTER_BYTES:
            give_back_freed_memory()

    # Resolved once per set of folders (trust/paths.py); replaced, never mutated.
    _folders: WorkspaceFolders | None = None

    def workspace_folders(self) -> WorkspaceFolders:
        """The workspace folders, resolved: initialize's workspaceFolders, else its rootUri/rootPath (pygls keeps
        both), then as workspace/didChangeWorkspaceFolders changes them; none before initialize."""
        if self._folders is None:
            try:
                workspace = self.workspace
            except RuntimeError:  # not initialized yet
                return NO_FOLDERS
            uris = [folder.uri for folder in workspace.folders.values()]
            if not uris and workspace.root_uri:
                uris = [workspace.root_uri]
            self._folders = WorkspaceFolders.from_uris(uris)
        return self._folders

    def change_workspace_folders(self, added: list[str], removed: list[str]) -> None:
        self._folders = self.workspace_folders().changed(added, removed)
        log.info("workspace folders: %s", ", ".join(str(f) for f in self._folders.folders) or "none")

    def relative_path(self, uri: str) -> str:
        """How prompts and fixes name a document: its path below its workspace folder (after `..` and symlinks are
        resolved), never a `..` path; a document outside the folders, or without any, by its file name alone."""
        return self.workspace_folders().prompt_path(uri)

    # -- completion --------------------------------------------------------------------------------------
    def completion_request(self, doc: Document, offset: int) -> CompletionRequest:
        return CompletionRequest(
            text=doc.text,
            offset=offset,
            language_id=doc.language_id,
            path=self.relative_path(doc.uri),
            settings=self.settings,
            repo=self.root.name if self.root else "",
            uri=doc.uri,
            context=self.context_engine,
        )

    async def await_load_queued(self) -> None:
        try:
            await asyncio.wait_for(self._load_queued.wait(), timeout=60)
        except TimeoutError:
            raise JsonRpcRequestFailed("The model was never loaded (did the client send 'initialized'?).") from None

    async def complete_at(
        self, uri: str, position: types.Position, invoked: bool = False
    ) -> tuple[Document, int, list[Suggestion]] | None:
        """Suggestions at a position: from the typed-through cache when the user typed what was shown, else from
        the model. None when a newer request for the document superseded this one, or when the document is over
        the size limit (said in fimble/status, at once: it is never given to the model or the syntax layer)."""
        # The position is checked against the text it was sent for: an edit handled while this request waits for
        # the model to load makes the request stale (answered empty), not invalid.
        try:
            doc, offset = self.resolve(uri, position)
        except DocumentTooLarge as exc:
            self.notify_status("ready", exc.message, reason=TOO_LARGE, emptyReason=exc.message)
            return None
        if not self._load_queued.is_set():
            sent_for = doc.text
            await self.await_load_queued()
            doc = self.document(uri)
            if doc.text is not sent_for:  # edits replace the text
                return None
        started = time.monotonic()
        prefix, suffix = doc.text[:offset], doc.text[offset:]
        self._active_uri = uri
        cached = None if invoked else self.cache.lookup(uri, prefix, suffix)
        if cached is not None:
            self.notify_status("ready", "ready", latencyMs=round((time.monotonic() - started) * 1000, 1), cached=True)
            self.warmups.moved(uri, offset)
            # A warm-up under way goes on (the cache needs no model); the accept of what is shown is prepared.
            self._after_reply(lambda: self.warmups.typed_through(uri, prefix, suffix, cached[0]))
            return doc, offset, cached
        request = self.completion_request(doc, offset)
        serial = self.warmups.request_started(uri, offset)  # a real request beats warming
        self.next_edit.yield_to_completion()  # ... and a next edit: ghost text never waits behind one
        cancel = self.runtime.token_for(uri, self.settings.time_budget_ms)
        candidates = INVOKED_CANDIDATES if invoked else 1
        self.notify_status("generating", "generating")

        def job(backend: ModelBackend) -> Completion:
            waited_ms = (time.monotonic() - submitted) * 1000  # behind a warm-up's batch or an earlier request
            planned = self.warmups.prompt_for(request)  # built in idle time, or by an unfinished request here
            # An answer an earlier request here left unfinished is finished now, whatever the budget: that request
            # spent it, its user still waits, and what it evaluated is kept. A model slower than the budget thus
            # shows its whole suggestion at the second request in one place, never a cut one.
            token = cancel.without_deadline() if self.warmups.unfinished_here(request) else cancel
            result = complete(backend, request, token, candidates=candidates, planned=planned)
            self.warmups.note_answer(request, result, serial)
            result.timings_ms["queue"] = waited_ms
            return result

        submitted = time.monotonic()
        try:
            result = await self.runtime.run(job, cancel, lambda f: self._abandoned(f, request, serial))
        except Cancelled:
            return None
        except FimbleError as exc:
            self.show_error(str(exc))
            self.notify_status("error", str(exc))
            raise rpc_error(exc) from None
        if not result.cut_by_clock:  # a suggestion the clock cut is not the model's whole answer
            self.cache.put(uri, prefix, suffix, result.suggestions)
        g = result.generation
        self.notify_status(
            "ready",
            "ready",
            latencyMs=round((time.monotonic() - started) * 1000, 1),
            promptTokens=g.prompt_tokens,
            reusedTokens=g.reused_tokens,
            generatedTokens=g.generated_tokens,
            serverMs=round(result.timings_ms["total"] - g.prompt_ms - g.generate_ms, 1),
            queueMs=round(result.timings_ms.get("queue", 0.0), 1),
            stopReason=g.stop_reason,
            # by phase (prompt_build, prompt_eval, generate, filters, alternatives, total, queue): for benchmarks
            timingsMs={phase: round(ms, 1) for phase, ms in result.timings_ms.items()},
            cached=False,
            **({"tokensPerSecond": round(g.tokens_per_second, 1)} if g.tokens_per_second else {}),
            **({"emptyReason": result.empty_reason} if result.empty_reason else {}),
        )
        log.info("completion %s", result.stats())
        self._after_reply(lambda: self._answered(request, result, serial))
        if self.store.find(uri) is not doc or doc.text is not request.text:
            return None  # edited while the model ran: the offsets belong to text the editor no longer has
        return doc, offset, result.suggestions

    def schedule_warm(self, uri: str) -> None:
        """Warm the KV cache for a document the user opened or switched to, in the background on the worker, at
        the user's last known position there; any real request cancels it, and keeps the part already evaluated.

        Where nothing is known yet (a document just opened), the top of the file: where an editor shows a newly
        opened file, and a short prompt there (mostly the context part, which a position elsewhere may share), so a
        wrong guess costs little. The end of the file, warmed before, is where the user rarely is, and its prompt is
        the longest there is."""
        doc = self.served(uri)
        if doc is None:
            return
        self._active_uri = uri
        if not self._load_queued.is_set():
            return  # warmed once the load is queued (load_model)
        offset = self.warmups.cursor(uri, len(doc.text))
        self.warmups.open(self.completion_request(doc, 0 if offset is None else offset))

    def note_activity(self, uri: str, cursor: int | None = None) -> None:
        """A document changed; `cursor`: where its last change ended (None for a change of the whole text). The
        prompt there is prepared in the pause before the editor's request, unless the typed-through cache will
        answer it (the user typed what the suggestion shows: preparing its accept goes on)."""
        doc = self.store.find(uri)
        if cursor is not None:
            self.warmups.moved(uri, cursor)
        if cursor is None or doc is None or not self._load_queued.is_set():
            if uri != self._active_uri:
                self.schedule_warm(uri)
            return
        self._active_uri = uri
        if self.cache.lookup(uri, doc.text[:cursor], doc.text[cursor:]) is None:
            self.warmups.open(self.completion_request(doc, cursor), kind="edit")

    def edit_end(self, doc: Document, change: types.TextDocumentContentChangePartial) -> int | None:
        """Where the client's cursor is after its last change in a didChange: at the change's end (typing,
        pasting, accepting a suggestion)."""
        try:
            start = offset_of(doc, change.range.start)  # the text before the change's start is the same after it
        except FimbleError:
            return None
        return start + len(change.text)

    def _abandoned(self, future: Future[Completion], request: CompletionRequest, serial: int) -> None:
        """Runs on the worker thread once a request the client cancelled has stopped: said in the log, and finished
        in idle time if no newer request has come (the client may ask there again)."""
        if future.cancelled() or future.exception() is not None:
            return
        result = future.result()
        g = result.generation
        message = f"request cancelled: generation stopped after {g.generated_tokens} tokens ({g.stop_reason})"
        log.info("%s", message)
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(
                self.window_log_message, types.LogMessageParams(type=types.MessageType.Log, message=message)
            )
            self.loop.call_soon_threadsafe(self._answered, request, result, serial)

    def _after_reply(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the event loop once the answer being prepared has been sent: work it starts on the model
        worker (a warm-up's Python parts) would otherwise contend for the GIL with sending it. The handler's reply
        goes out from a callback scheduled when its task ends; one more turn of the loop comes after it."""
        loop = self.loop
        if loop is None or loop.is_closed():
            fn()
            return
        loop.call_soon(loop.call_soon, fn)

    def _answered(self, request: CompletionRequest, result: Completion, serial: int) -> None:
        doc = self.served(request.uri)
        if doc is None:
            self.warmups.forget(request.uri)  # closed or set aside while the model ran: what its job noted goes too
            return
        if doc.text is not request.text:
            return  # edited since: the edit's own warm-up prepares the text as it is now, and must not be displaced
        self.warmups.answered(request, result, serial)

    async def debug_prompt(self, uri: str, position: types.Position) -> dict[str, Any]:
        await self.await_load_queued()
        doc, offset = self.resolve(uri, position)
        request = self.completion_request(doc, offset)
        cancel = self.runtime.token_for(None)
        try:
            prompt = await self.runtime.run(lambda backend: build_prompt(backend, request), cancel)
        except FimbleError as exc:
            raise rpc_error(exc) from None
        return {
            "format": prompt.format,
            "prompt": prompt.text(),
            "tokens": len(prompt.ids),
            "parts": [{"source": p.source, "tokens": p.tokens, "ms": round(p.ms, 2)} for p in prompt.parts],
        }


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to ask
        return None
    return trim


def give_back_freed_memory() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def create_server(cli_overrides: dict[str, Any] | None = None, runtime: ModelRuntime | None = None) -> FimbleServer:
    """The server with every handler registered, in the order things happen: start-up; what runs on an open, a
    keystroke, a save, a close, a change of files, settings or folders; the requests; shutdown."""
    server = FimbleServer(cli_overrides, runtime)

    # -- start-up ----------------------------------------------------------------------------------------
    @server.feature(types.INITIALIZE)
    def on_initialize(ls: FimbleServer, params: types.InitializeParams) -> None:
        # pygls picks the client's preferred encoding (Neovim: UTF-8); positions must be read in that one.
        encoding = ServerCapabilitiesBuilder.choose_position_encoding(params.capabilities)
        ls.store.encoding = str(getattr(encoding, "value", encoding))
        options = to_plain(params.initialization_options)
        if isinstance(options, dict):
            ls.init_options = options.get(CONFIG_SECTION, options) if CONFIG_SECTION in options else options
        folders = params.workspace_folders or []
        root_uri = folders[0].uri if folders else params.root_uri
        if root_uri and root_uri.startswith("file:"):
            ls.root = Path(unquote(urlparse(root_uri).path))
        ls.update_settings()

    @server.feature(types.INITIALIZED)
    async def on_initialized(ls: FimbleServer, params: types.InitializedParams) -> None:
        ls.loop = asyncio.get_running_loop()
        await ls.pull_configuration()
        ls.update_settings()
        if ls.context_engine is not None:  # a second `initialized` keeps the engine and its index
            await ls.load_model()
            return
        ls.context_engine = create_engine(ls)
        # The model load is queued first (it is the long wait); the workspace is indexed meanwhile.
        await asyncio.gather(ls.load_model(), start_indexing(ls, ls.context_engine))

    # -- listeners: an open, a keystroke, a save, a close; files, settings and folders changed -----------
    # Two outside the protocol. The model's status goes to the client. The document store tells its edit
    # listeners of every open and change of a document within the size limit (and of one coming back under it),
    # after applying it: the agent's and the next-edit history's, here, and the context engine's two (its syntax
    # trees, its recent-edit bookkeeping), which `create_engine` attaches.
    server.runtime.on_status(server.on_model_status)
    server.store.on_edit(server.agent.on_edit)  # syntax diagnostics, published after a pause in typing
    server.store.on_edit(server.next_edit.history.on_edit)  # the recent edits a next edit follows

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def on_open(ls: FimbleServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        if ls.store.find(item.uri) is not None:  # opened again without a close: start afresh
            ls.drop_document_state(item.uri)
        # lsprotocol's LanguageKind | str lets any JSON value through; a language the server cannot name is none
        language = item.language_id if isinstance(item.language_id, str) else "plaintext"
        doc = ls.store.open(item.uri, item.text, item.version, language)  # edit listeners: a whole-text edit
        if ls.store.oversized(doc):
            ls.set_aside(doc)
        else:
            ls.schedule_warm(item.uri)  # the prompt where the user is, evaluated in idle time

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def on_change(ls: FimbleServer, params: types.DidChangeTextDocumentParams) -> None:
        changes: list[tuple[str, tuple[int, int] | None, tuple[int, int] | None]] = []
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                r = change.range
                changes.append((change.text, (r.start.line, r.start.character), (r.end.line, r.end.character)))
            else:
                changes.append((change.text, None, None))
        uri = params.text_document.uri
        try:
            before = ls.store.get(uri)
            was_oversized = ls.store.oversized(before)
            doc = ls.store.change(uri, params.text_document.version, changes)  # edit listeners: the edits
            last = params.content_changes[-1] if params.content_changes else None
            cursor = ls.edit_end(doc, last) if isinstance(last, types.TextDocumentContentChangePartial) else None
            if not ls.store.oversized(doc):
                # The prompt at the cursor, prepared before the editor asks; back under the limit too (the
                # store gave its edit listeners the whole text then).
                ls.note_activity(uri, cursor)
            elif not was_oversized:
                ls.set_aside(doc)
        except FimbleError as exc:
            # A change we cannot apply means our copy is out of sync; say so instead of completing on wrong text.
            ls.show_error(f"{exc} Close and reopen the file to resynchronise.")

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def on_save(ls: FimbleServer, params: types.DidSaveTextDocumentParams) -> None:
        if ls.context_engine is not None:
            ls.context_engine.on_saved(params.text_document.uri)  # the file re-indexed from disk

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def on_close(ls: FimbleServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.close_document(params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def on_watched(ls: FimbleServer, params: types.DidChangeWatchedFilesParams) -> None:
        if ls.context_engine is not None:
            ls.context_engine.on_files_changed([change.uri for change in params.changes])

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_configuration(ls: FimbleServer, params: types.DidChangeConfigurationParams) -> None:
        pushed = to_plain(params.settings)
        if isinstance(pushed, dict) and isinstance(pushed.get(CONFIG_SECTION), dict):
            ls.workspace_settings = pushed[CONFIG_SECTION]
        else:
            await ls.pull_configuration()
        if ls.update_settings():
            await ls.load_model()

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def on_workspace_folders(ls: FimbleServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        event = params.event
        ls.change_workspace_folders([f.uri for f in event.added or []], [f.uri for f in event.removed or []])

    # -- requests: completion ----------------------------------------------------------------------------
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def on_inline_completion(
        ls: FimbleServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        found = await ls.complete_at(params.text_document.uri, params.position, invoked)
        if found is None:
            return types.InlineCompletionList(items=[])
        doc, start, suggestions = found
        items = []
        for suggestion in suggestions:
            end = min(len(doc.text), start + suggestion.replace_suffix)
            items.append(
                types.InlineCompletionItem(
                    insert_text=suggestion.text,
                    range=types.Range(start=params.position, end=position_of(doc, end)),
                )
            )
        return types.InlineCompletionList(items=items)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", "(", " "], resolve_provider=False),
    )
    async def on_completion(ls: FimbleServer, params: types.CompletionParams) -> types.CompletionList:
        found = await ls.complete_at(params.text_document.uri, params.position)
        if found is None or not found[2]:
            return types.CompletionList(is_incomplete=True, items=[])
        doc, cursor, suggestions = found
        return types.CompletionList(is_incomplete=True, items=[completion_item(doc, cursor, suggestions[0])])

    @server.feature(DEBUG_PROMPT)
    async def on_debug_prompt(ls: FimbleServer, params: Any) -> dict[str, Any]:
        try:
            where = structure(params, types.TextDocumentPositionParams)
        except ValueError:
            raise JsonRpcInvalidParams(
                "fimble/debugPrompt needs {textDocument: {uri}, position: {line, character}}."
            ) from None
        return await ls.debug_prompt(where.text_document.uri, where.position)

    @server.feature(STATS)
    def on_stats(ls: FimbleServer, params: Any) -> dict[str, Any]:
        return ls.stats(reset=field(params, "reset") is True)

    # -- requests: next edits (lsp/next_edit_features.py) ------------------------------------------------
    @server.feature(NEXT_EDIT)
    async def on_next_edit(ls: FimbleServer, params: Any) -> dict[str, Any]:
        return await ls.next_edit.suggest(params)

    @server.feature(COPILOT_INLINE_EDIT)
    async def on_copilot_inline_edit(ls: FimbleServer, params: Any) -> dict[str, Any]:
        return await ls.next_edit.suggest(params)

    # -- requests: the agent (lsp/agent_features.py) -----------------------------------------------------
    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.QuickFix, types.CodeActionKind.RefactorRewrite],
            resolve_provider=True,
        ),
    )
    def on_code_action(ls: FimbleServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        return ls.agent.code_actions(params)  # listed without running the model

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def on_code_action_resolve(ls: FimbleServer, action: types.CodeAction) -> types.CodeAction:
        return await ls.agent.resolve(action)  # the fix loop runs here

    @server.command(EXPLAIN_COMMAND)
    async def on_explain(ls: FimbleServer, *args: Any) -> dict[str, Any]:
        if len(args) != 1:
            raise JsonRpcInvalidParams("fimble.explain needs one argument {uri, range, token?}.")
        return await ls.agent.explain(args[0])

    @server.command(FIX_COMMAND)
    async def on_fix(ls: FimbleServer, *args: Any) -> dict[str, Any]:
        if len(args) != 1:
            raise JsonRpcInvalidParams("fimble.fix needs the fix action's data as its one argument.")
        return await ls.agent.fix_command(args[0])

    # -- shutdown (the connection's end runs `close`) ----------------------------------------------------
    @server.feature(types.SHUTDOWN)
    def on_shutdown(ls: FimbleServer, params: Any) -> None:
        ls.runtime.cancel_all()

    return server


def completion_item(doc: Document, cursor: int, suggestion: Suggestion) -> types.CompletionItem:
    """A suggestion as a textDocument/completion item that replaces the word typed before the cursor."""
    word_start = cursor
    while word_start > 0 and (doc.text[word_start - 1].isalnum() or doc.text[word_start - 1] == "_"):
        word_start -= 1
    typed = doc.text[word_start:cursor]
    new_text = typed + suggestion.text
    end = min(len(doc.text), cursor + suggestion.replace_suffix)
    first_line = suggestion.text.split("\n", 1)[0]
    return types.CompletionItem(
        label=(typed + first_line).strip()[:80] or suggestion.text.strip()[:80],
        kind=types.CompletionItemKind.Text,
        detail="fimble",
        # The filter text starts with what is already typed, so clients keep the item visible while typing.
        filter_text=new_text,
        sort_text="0",
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(
            range=types.Range(start=position_of(doc, word_start), end=position_of(doc, end)),
            new_text=new_text,
        ),
    )
