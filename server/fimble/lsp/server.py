"""The fimble language server: document sync, model lifecycle and the completion features.

Each handler translates protocol to a plain call (`fimble.completion.pipeline.complete`) and back.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.capabilities import ServerCapabilitiesBuilder
from pygls.lsp.server import LanguageServer

from fimble import __version__
from fimble.completion.cache import CompletionCache
from fimble.completion.filters import Suggestion
from fimble.completion.pipeline import Completion, CompletionRequest, build_prompt, complete, warm
from fimble.context.engine import ContextEngine
from fimble.documents import Document, DocumentStore
from fimble.errors import FimbleError, SettingsError
from fimble.lsp.agent_features import AgentFeatures
from fimble.lsp.agent_features import register as register_agent_features
from fimble.lsp.context_features import register as register_context_features
from fimble.lsp.convert import JsonRpcRequestFailed, field, offset_of, position_of, rpc_error, to_plain
from fimble.lsp.document_sync import DocumentSyncProtocol
from fimble.model.runtime import Cancelled, ModelRuntime, State
from fimble.settings import Settings

log = logging.getLogger(__name__)

STATUS = "fimble/status"
TOO_LARGE = "documentTooLarge"  # the `reason` of a fimble/status for a request on a document over the size limit
WARM_KEY = "__warm__"
INVOKED_CANDIDATES = 3
DEBUG_PROMPT = "fimble/debugPrompt"
CONFIG_SECTION = "fimble"
_REPEAT_MESSAGE_S = 30.0
# Closing a document this large asks the C allocator to return freed pages: its text, line index and syntax tree
# (several times its size) leave tens of megabytes in glibc's free lists otherwise (measured: +64 MB after a 5 MB
# and five 2 MB documents without a size limit, +47 MB with the trim; it takes 2-4 ms).
TRIM_AFTER_BYTES = 1_000_000


class FimbleServer(LanguageServer):
    def __init__(self, cli_overrides: dict[str, Any] | None = None, runtime: ModelRuntime | None = None) -> None:
        super().__init__(
            "fimble",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=DocumentSyncProtocol,
        )
        self.store = DocumentStore()
        self.runtime = runtime or ModelRuntime()
        self.cli_overrides = cli_overrides or {}
        self.init_options: dict[str, Any] = {}
        self.workspace_settings: dict[str, Any] = {}
        self.settings = self._compose_settings()
        self.store.max_bytes = self.settings.max_document_bytes
        self.root: Path | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._last_message: tuple[str, float] = ("", 0.0)
        # Set once the first load is queued: requests that race ahead of `initialized` wait for it, not fail.
        self._load_queued = asyncio.Event()
        self.cache = CompletionCache()
        self.context_engine: ContextEngine | None = None  # created by lsp/context_features once the root is known
        self.agent: AgentFeatures | None = None  # set by lsp/agent_features.register
        self._active_uri: str | None = None
        self._told_too_large: set[str] = set()  # documents whose user was told they are over maxDocumentBytes
        self.runtime.on_status(self._on_model_status)

    # -- settings ----------------------------------------------------------------------------------------
    def _compose_settings(self) -> Settings:
        settings = Settings.from_env()
        for layer in (self.init_options, self.workspace_settings, self.cli_overrides):
            settings = settings.merged(layer)
        return settings

    def update_settings(self) -> bool:
        """Recompute settings; returns True when the model must be loaded again."""
        try:
            self.settings = self._compose_settings()
        except SettingsError as exc:
            self.show_error(str(exc))
            return False
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
        self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=f"fimble: {message}"))

    def _on_model_status(self, state: State, message: str) -> None:
        # Called on the model worker thread; protocol writes belong to the event loop.
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
        self._load_queued.set()
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

    # -- documents ---------------------------------------------------------------------------------------
    def document(self, uri: str, within_limit: bool = False) -> Document:
        """The open document; with `within_limit`, a document over maxDocumentBytes is refused (RequestFailed)."""
        try:
            doc = self.store.get(uri)
        except FimbleError as exc:
            raise rpc_error(exc) from None
        if within_limit and self.store.oversized(doc):
            raise JsonRpcRequestFailed(self.too_large_message(doc))
        return doc

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
        if doc.uri not in self._told_too_large:
            self._told_too_large.add(doc.uri)
            message = f"fimble: {self.too_large_message(doc)}"
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=message))

    def drop_document_state(self, uri: str) -> None:
        """Everything fimble keeps for one document, dropped when it is closed or goes over the size limit. A new
        per-document cache belongs on this list."""
        self.cache.forget(uri)  # typed-through suggestions
        self.runtime.cancel(uri)  # its completion in flight and the cancel token kept for the next one
        if self._active_uri == uri:
            self._active_uri = None
        if self.context_engine is not None:
            self.context_engine.forget(uri)  # syntax tree, arrangements, sources' answers, jobs (see forget)
        if self.agent is not None:
            self.agent.forget(uri)  # diagnostics (cleared in the editor) and their timer, fix/explain tokens

    def close_document(self, uri: str) -> None:
        doc = self.store.close(uri)
        self.drop_document_state(uri)
        self._told_too_large.discard(uri)
        if doc is not None and doc.size_bytes >= TRIM_AFTER_BYTES:
            give_back_freed_memory()

    def relative_path(self, uri: str) -> str:
        parsed = urlparse(uri)
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(parsed.path or uri)
        if self.root is not None:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return path.name

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

    async def _await_load_queued(self) -> None:
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
        if self._too_large(self.document(uri)):
            return None
        await self._await_load_queued()
        doc = self.document(uri)
        if self._too_large(doc):
            return None
        try:
            offset = offset_of(doc, position)
        except FimbleError as exc:
            raise rpc_error(exc) from None
        started = time.monotonic()
        prefix, suffix = doc.text[:offset], doc.text[offset:]
        self.runtime.cancel(WARM_KEY)  # a real request beats warming
        cached = None if invoked else self.cache.lookup(uri, prefix, suffix)
        if cached is not None:
            self.notify_status("ready", "ready", latencyMs=round((time.monotonic() - started) * 1000, 1), cached=True)
            return doc, offset, cached
        request = self.completion_request(doc, offset)
        cancel = self.runtime.token_for(uri, self.settings.time_budget_ms)
        candidates = INVOKED_CANDIDATES if invoked else 1
        self.notify_status("generating", "generating")
        try:
            result = await self.runtime.run(
                lambda backend: complete(backend, request, cancel, candidates=candidates), cancel, self._log_abandoned
            )
        except Cancelled:
            return None
        except FimbleError as exc:
            self.show_error(str(exc))
            self.notify_status("error", str(exc))
            raise rpc_error(exc) from None
        self.cache.put(uri, prefix, suffix, result.suggestions)
        g = result.generation
        self.notify_status(
            "ready",
            "ready",
            latencyMs=round((time.monotonic() - started) * 1000, 1),
            tokensPerSecond=round(g.tokens_per_second, 1),
            promptTokens=g.prompt_tokens,
            reusedTokens=g.reused_tokens,
            generatedTokens=g.generated_tokens,
            serverMs=round(result.timings_ms["total"] - g.prompt_ms - g.generate_ms, 1),
            cached=False,
        )
        log.info("completion %s", result.stats())
        return doc, offset, result.suggestions

    def _too_large(self, doc: Document) -> bool:
        if not self.store.oversized(doc):
            return False
        self.notify_status("ready", self.too_large_message(doc), reason=TOO_LARGE)
        return True

    def schedule_warm(self, uri: str) -> None:
        """Warm the KV cache for a document the user opened or switched to, in the background on the worker; any
        real request cancels it, and keeps the part already evaluated."""
        doc = self.store.find(uri)
        if doc is None or self.store.oversized(doc) or not self._load_queued.is_set():
            return
        self._active_uri = uri
        request = self.completion_request(doc, len(doc.text))
        cancel = self.runtime.token_for(WARM_KEY)
        future = self.runtime.submit(lambda backend: warm(backend, request, cancel), cancel)
        future.add_done_callback(lambda f: None if f.cancelled() else f.exception())  # never an unhandled error

    def note_activity(self, uri: str) -> None:
        if uri != self._active_uri:
            self.schedule_warm(uri)

    def _log_abandoned(self, future: Future[Completion]) -> None:
        """Runs on the worker thread once a cancelled request's generation has stopped."""
        if future.cancelled() or future.exception() is not None:
            return
        g = future.result().generation
        message = f"request cancelled: generation stopped after {g.generated_tokens} tokens ({g.stop_reason})"
        log.info("%s", message)
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(
                self.window_log_message, types.LogMessageParams(type=types.MessageType.Log, message=message)
            )

    async def debug_prompt(self, uri: str, position: types.Position) -> dict[str, Any]:
        await self._await_load_queued()
        doc = self.document(uri, within_limit=True)
        try:
            offset = offset_of(doc, position)
        except FimbleError as exc:
            raise rpc_error(exc) from None
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
    server = FimbleServer(cli_overrides, runtime)

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
        await ls.load_model()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_configuration(ls: FimbleServer, params: types.DidChangeConfigurationParams) -> None:
        pushed = to_plain(params.settings)
        if isinstance(pushed, dict) and isinstance(pushed.get(CONFIG_SECTION), dict):
            ls.workspace_settings = pushed[CONFIG_SECTION]
        else:
            await ls.pull_configuration()
        if ls.update_settings():
            await ls.load_model()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def on_open(ls: FimbleServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        if ls.store.find(item.uri) is not None:  # opened again without a close: start afresh
            ls.drop_document_state(item.uri)
        doc = ls.store.open(item.uri, item.text, item.version, item.language_id)
        if ls.store.oversized(doc):
            ls.set_aside(doc)
        else:
            ls.schedule_warm(item.uri)

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
            doc = ls.store.change(uri, params.text_document.version, changes)
            if not ls.store.oversized(doc):
                ls.note_activity(uri)  # back under the limit too: the store announced it to its listeners
            elif not was_oversized:
                ls.set_aside(doc)
        except FimbleError as exc:
            # A change we cannot apply means our copy is out of sync; say so instead of completing on wrong text.
            ls.show_error(f"{exc} Close and reopen the file to resynchronise.")

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def on_close(ls: FimbleServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.close_document(params.text_document.uri)

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
        result = suggestions[0]
        word_start = cursor
        while word_start > 0 and (doc.text[word_start - 1].isalnum() or doc.text[word_start - 1] == "_"):
            word_start -= 1
        typed = doc.text[word_start:cursor]
        new_text = typed + result.text
        end = min(len(doc.text), cursor + result.replace_suffix)
        first_line = result.text.split("\n", 1)[0]
        item = types.CompletionItem(
            label=(typed + first_line).strip()[:80] or result.text.strip()[:80],
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
        return types.CompletionList(is_incomplete=True, items=[item])

    @server.feature(DEBUG_PROMPT)
    async def on_debug_prompt(ls: FimbleServer, params: Any) -> dict[str, Any]:
        uri = field(params, "textDocument", "uri")
        line = field(params, "position", "line")
        character = field(params, "position", "character")
        if not isinstance(uri, str) or not isinstance(line, int) or not isinstance(character, int):
            from pygls.exceptions import JsonRpcInvalidParams

            raise JsonRpcInvalidParams("fimble/debugPrompt needs {textDocument: {uri}, position: {line, character}}.")
        return await ls.debug_prompt(uri, types.Position(line=line, character=character))

    # Capabilities built in their own modules (context engine, agent) register themselves here, one line each.
    register_agent_features(server)
    register_context_features(server)

    @server.feature(types.SHUTDOWN)
    def on_shutdown(ls: FimbleServer, params: Any) -> None:
        ls.runtime.shutdown()

    return server
