"""LSP side of the context engine: created in `initialized` (the workspace root and the trust setting are known
by then), indexing in the background with $/progress, kept current by didSave and workspace/didChangeWatchedFiles
(the handlers in lsp/server.py call it).

Once attached, the engine hears of every open and edit of a document within the size limit from the document
store (its syntax trees and its recent-edit bookkeeping): `create_server` registers no handler for that.
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


def create_engine(server: FimbleServer) -> ContextEngine:
    """The engine for the workspace root, attached to the documents already open (an untrusted workspace: no
    git); nothing is read until `start_indexing`."""
    engine = ContextEngine(server.root, trusted=server.settings.workspace_trusted)
    engine.attach(server.store)
    atexit.register(engine.close)
    return engine


async def start_indexing(server: FimbleServer, engine: ContextEngine) -> None:
    """Ask the client to watch the workspace's source files, then index on the engine's thread with progress."""
    await _watch_files(server)
    engine.start_indexing(await _progress_reporter(server))


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
