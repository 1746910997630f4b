"""LSP wiring of the context engine: created when the model load starts (the workspace root is known by then),
indexing in the background with $/progress, kept current by didSave and workspace/didChangeWatchedFiles.

Document opens and edits reach the engine through the document store's edit listener, so the server's own didOpen
and didChange handlers need no changes.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import uuid
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from fimble.context.engine import ContextEngine
from fimble.languages import watch_glob

if TYPE_CHECKING:
    from fimble.lsp.server import FimbleServer

log = logging.getLogger(__name__)

# Source files the index cares about, plus .gitignore (a change there changes what may be indexed).
WATCH_GLOBS = (watch_glob(), "**/.gitignore")


def register(server: FimbleServer) -> None:
    """Hook the context engine into `server`; call once from create_server."""

    def on_status(state: str, _message: str) -> None:
        if state != "loading" or server.context_engine is not None:
            return
        loop = server.loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(start(server)))

    server.runtime.on_status(on_status)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def on_save(ls: FimbleServer, params: types.DidSaveTextDocumentParams) -> None:
        if ls.context_engine is not None:
            ls.context_engine.on_saved(params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def on_watched(ls: FimbleServer, params: types.DidChangeWatchedFilesParams) -> None:
        if ls.context_engine is not None:
            ls.context_engine.on_files_changed([change.uri for change in params.changes])


async def start(server: FimbleServer) -> ContextEngine:
    """Create the engine (once), attach it to the documents, index with progress, and watch files."""
    if server.context_engine is not None:
        return server.context_engine
    engine = ContextEngine(server.root, trusted=server.settings.workspace_trusted)  # untrusted: no git
    engine.attach(server.store)
    server.context_engine = engine
    atexit.register(engine.close)
    await _watch_files(server)
    engine.start_indexing(await _progress_reporter(server))
    return engine


async def _progress_reporter(server: FimbleServer) -> Any:
    window = server.client_capabilities.window
    if not (window and window.work_done_progress):
        return None
    token = f"fimble-index-{uuid.uuid4()}"
    try:
        await asyncio.wait_for(server.work_done_progress.create_async(token), timeout=5)
        server.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title="fimble: indexing workspace", percentage=0, cancellable=False)
        )
    except Exception as exc:  # a client that refuses progress still gets an index
        log.info("indexing progress not available: %s", exc)
        return None
    loop = asyncio.get_running_loop()
    ended = False

    def send(message: str, percentage: int) -> None:
        nonlocal ended
        if ended:
            return
        if percentage >= 100:
            ended = True
            server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        else:
            server.work_done_progress.report(
                token, types.WorkDoneProgressReport(message=message, percentage=percentage)
            )

    def report(message: str, percentage: int) -> None:  # called on the indexing thread
        if not loop.is_closed():
            loop.call_soon_threadsafe(send, message, percentage)

    return report


async def _watch_files(server: FimbleServer) -> None:
    workspace = server.client_capabilities.workspace
    watched = workspace.did_change_watched_files if workspace else None
    if not (watched and watched.dynamic_registration):
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern=glob) for glob in WATCH_GLOBS]
    )
    registration = types.Registration(
        id=f"fimble-watch-{uuid.uuid4()}",
        method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        register_options=options,
    )
    try:
        await asyncio.wait_for(
            server.client_register_capability_async(types.RegistrationParams(registrations=[registration])),
            timeout=5,
        )
    except Exception as exc:
        log.info("file watching not available: %s", exc)
