"""The fix and explain agent behind the LSP handlers (registered in lsp/server.py): thin translations to
`fimble.agent`.

- fimble's own syntax diagnostics, published (debounced) after edits: `on_edit` is one of the document store's edit
  listeners, registered in `create_server`;
- textDocument/codeAction lists "Fix with fimble: ..." and "Explain with fimble" without running the model;
  codeAction/resolve runs the fix loop and returns a versioned edit (or says why there is none);
- workspace/executeCommand `fimble.explain` streams `fimble/explanation` notifications and returns the Markdown;
  `fimble.fix` serves clients that cannot resolve an action's edit (it applies it with workspace/applyEdit).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcException, JsonRpcInvalidParams

from fimble.agent.actions import (
    code_actions,
    diagnostics_at,
    parse_fix_data,
    parse_range,
    problem_of,
    to_diagnostic,
)
from fimble.agent.context import CodeContext, EngineContext, NoContext
from fimble.agent.diagnostics import syntax_problems
from fimble.agent.edits import workspace_edit
from fimble.agent.explain import ExplainRequest, explain
from fimble.agent.fix_loop import FixOutcome, FixRequest, run_fix
from fimble.documents.document import Document, TextEdit
from fimble.errors import DocumentError, FimbleError
from fimble.lsp.convert import rpc_error, to_plain
from fimble.model.runtime import Cancelled
from fimble.trust.paths import uri_to_path

if TYPE_CHECKING:
    # Only for types: the server module creates AgentFeatures, so importing it here would be a cycle.
    from fimble.lsp.server import FimbleServer

log = logging.getLogger(__name__)

EXPLANATION = "fimble/explanation"
DEBOUNCE_S = 0.4  # syntax diagnostics wait for a pause in typing: a half-typed line is not an error worth showing


class AgentFeatures:
    def __init__(self, server: FimbleServer, context: CodeContext | None = None) -> None:
        self.server = server
        self._context = context
        self._engine_context: EngineContext | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.published: dict[str, list[types.Diagnostic]] = {}

    def forget(self, uri: str) -> None:
        """Drop what is kept for a document closed or grown past the size limit: its pending diagnostics timer, its
        published diagnostics (cleared in the editor too), and the cancel tokens of its fix and explanation (a fix
        for a closed document can no longer be applied, so it is cancelled; an explanation is left to finish)."""
        timer = self._timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        if self.published.pop(uri, None):
            self._send(uri, None, [])
        self.server.runtime.cancel(f"fix:{uri}")
        self.server.runtime.forget(f"explain:{uri}")

    @property
    def context(self) -> CodeContext:
        """The server's context engine (created in `initialized`), else nothing."""
        if self._context is not None:
            return self._context
        engine = self.server.context_engine
        if engine is None:
            return NoContext()
        if self._engine_context is None or self._engine_context.engine is not engine:
            self._engine_context = EngineContext(engine)
        return self._engine_context

    # -- where the document is --------------------------------------------------------------------------
    def file_path(self, uri: str) -> Path | None:
        """The document's file on disk when it is inside a workspace folder (after `..` and symlinks are resolved):
        only then do git, the fix worktree and history look at it. None outside the folders, or without any: the
        document is then served from the editor's text alone."""
        found = self.server.workspace_folders().locate(uri)
        return found.path if found is not None and found.rel else None

    def text_only_note(self, uri: str) -> str:
        """Why a document gets no git history or worktree ('' when it does)."""
        if self.file_path(uri) is not None:
            return ""
        if uri_to_path(uri) is None:
            why = "not a file on disk"
        elif not self.server.workspace_folders():
            why = "no workspace folder is open"
        else:
            why = "the file is outside the workspace folders"
        return f"{why}: served from the editor's text alone, without git history or a worktree"

    # -- syntax diagnostics ------------------------------------------------------------------------------
    def on_edit(self, doc: Document, edits: list[TextEdit]) -> None:
        """A document store edit listener: (re)starts the document's diagnostics timer."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # edits applied outside the server loop (tests, CLI): nothing to publish to
            return
        old = self._timers.pop(doc.uri, None)
        if old is not None:
            old.cancel()
        self._timers[doc.uri] = loop.call_later(DEBOUNCE_S, self._spawn_publish, doc.uri)

    def _spawn_publish(self, uri: str) -> None:
        self._timers.pop(uri, None)
        task = asyncio.get_running_loop().create_task(self.publish(uri))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish(self, uri: str) -> None:
        doc = self.server.served(uri)
        if doc is None:
            return
        text, version, language = doc.text, doc.version, doc.language_id
        try:
            problems = await asyncio.to_thread(syntax_problems, text, language, self.server.relative_path(uri))
        except Exception:
            log.exception("syntax diagnostics failed for %s", uri)
            return
        doc = self.server.served(uri)
        if doc is None or doc.version != version or doc.text != text:
            return  # closed, set aside or edited meanwhile (that edit's own timer publishes)
        diagnostics = [to_diagnostic(doc, p) for p in problems]
        if diagnostics == self.published.get(uri, []):
            return
        self.published[uri] = diagnostics
        self._send(uri, version, diagnostics)

    def _send(self, uri: str, version: int | None, diagnostics: list[types.Diagnostic]) -> None:
        self.server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, version=version, diagnostics=diagnostics)
        )

    # -- code actions ------------------------------------------------------------------------------------
    def resolves_edits(self) -> bool:
        text_caps = self.server.client_capabilities.text_document
        caps = text_caps.code_action if text_caps else None
        support = caps.resolve_support if caps else None
        return bool(support and "edit" in support.properties)

    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        doc = self.server.served(params.text_document.uri)
        if doc is None:
            return []
        own = diagnostics_at(self.published.get(doc.uri, []), params.range)
        return code_actions(doc, params, own, resolve_edits=self.resolves_edits())

    async def fix(self, data: Any) -> tuple[Document, FixOutcome]:
        """Run the fix loop for an action's data; refuses (ContentModified) when the document changed since the
        action was listed or while the fix ran."""
        try:
            uri, version, diag = parse_fix_data(to_plain(data))
        except (ValueError, TypeError) as exc:
            raise JsonRpcInvalidParams(f"fimble: {exc}") from None
        ls = self.server
        doc = ls.document(uri, within_limit=True)
        if doc.version != version:
            raise JsonRpcContentModified(
                f"fimble: {Path(uri).name} changed since this fix was offered (version {version}, now {doc.version}); "
                "ask for the fix again."
            )
        try:
            problem = problem_of(doc, diag)
        except DocumentError as exc:
            raise JsonRpcContentModified(f"fimble: the diagnostic no longer fits the document: {exc}") from None
        snapshot = Document(
            uri=doc.uri, text=doc.text, version=doc.version, language_id=doc.language_id, encoding=doc.encoding
        )
        request = FixRequest(
            uri=uri,
            text=snapshot.text,
            language_id=snapshot.language_id,
            path=ls.relative_path(uri),
            problem=problem,
            settings=ls.settings,
            file_path=self.file_path(uri),
            context=self.context,
        )
        note = self.text_only_note(uri)
        cancel = ls.runtime.token_for(f"fix:{uri}")

        def progress(message: str) -> None:
            ls.notify_status("generating", message)

        try:
            outcome = await run_fix(ls.runtime, request, cancel, progress)
        except Cancelled:
            raise JsonRpcException("fimble: the fix was superseded by a newer one", code=-32800) from None
        except FimbleError as exc:
            ls.notify_status("error", str(exc))
            raise rpc_error(exc) from None
        if note:
            outcome.message = f"{outcome.message} ({note})"
        ls.notify_status("ready", f"fix: {outcome.status}")
        if outcome.status == "cancelled":
            raise JsonRpcException("fimble: the fix was cancelled", code=-32800)
        current = ls.store.find(uri)
        if current is None or current.version != snapshot.version or current.text != snapshot.text:
            raise JsonRpcContentModified(
                f"fimble: {Path(uri).name} changed while the fix was being checked; the edit was not applied."
            )
        return snapshot, outcome

    def _tell(self, outcome: FixOutcome) -> None:
        kind = types.MessageType.Info if outcome.status == "verified" else types.MessageType.Warning
        self.server.window_show_message(types.ShowMessageParams(type=kind, message=f"fimble fix: {outcome.message}"))

    async def resolve(self, action: types.CodeAction) -> types.CodeAction:
        data = to_plain(action.data)
        if not isinstance(data, dict) or data.get("fimble") != "fimble.fix" or action.edit is not None:
            return action  # explain actions carry their command already; foreign actions are not ours
        doc, outcome = await self.fix(data)
        action.data = {**data, "outcome": outcome.to_dict()}
        if outcome.new_text is not None:
            action.edit = workspace_edit(doc, outcome.new_text)
            label = "verified" if outcome.status == "verified" else "UNVERIFIED"
            action.title = f"{action.title} ({label}: {', '.join(outcome.verified_by) or 'no check passed'})"
        else:
            action.title = f"No verified fix: {outcome.message}"
        self._tell(outcome)
        return action

    async def fix_command(self, data: Any) -> dict[str, Any]:
        doc, outcome = await self.fix(data)
        result = outcome.to_dict()
        if outcome.new_text is not None:
            edit = workspace_edit(doc, outcome.new_text)
            applied = await self.server.workspace_apply_edit_async(
                types.ApplyWorkspaceEditParams(edit=edit, label=f"fimble fix ({outcome.status})")
            )
            result["applied"] = bool(applied.applied)
        self._tell(outcome)
        return result

    # -- explain -----------------------------------------------------------------------------------------
    async def explain(self, arg: Any) -> dict[str, Any]:
        ls = self.server
        arg = to_plain(arg)
        if not isinstance(arg, dict) or not isinstance(arg.get("uri"), str) or not isinstance(arg.get("range"), dict):
            raise JsonRpcInvalidParams("fimble.explain needs one argument {uri, range, token?}.")
        try:
            r = parse_range(arg["range"])
        except Exception:
            raise JsonRpcInvalidParams("fimble.explain: 'range' is not an LSP Range.") from None
        uri = arg["uri"]
        doc, start = ls.resolve(uri, r.start)
        end = ls.offset(doc, r.end)
        token = arg.get("token") if isinstance(arg.get("token"), str) else f"fimble-explain-{uuid.uuid4().hex[:12]}"
        request = ExplainRequest(
            uri=uri,
            text=doc.text,
            language_id=doc.language_id,
            path=ls.relative_path(uri),
            start=start,
            end=end,
            settings=ls.settings,
            file_path=self.file_path(uri),
            context=self.context,
            note=self.text_only_note(uri),
        )
        loop = asyncio.get_running_loop()

        def send(delta: str, done: bool) -> None:
            ls.protocol.notify(EXPLANATION, {"token": token, "delta": delta, "done": done})

        def on_delta(delta: str) -> None:
            # Called on the model worker; every send goes through the loop's queue, which keeps them in order.
            loop.call_soon_threadsafe(send, delta, False)

        cancel = ls.runtime.token_for(f"explain:{uri}")
        ls.notify_status("generating", "explaining")
        try:
            result = await explain(ls.runtime, request, cancel, on_delta)
        except Cancelled:
            raise JsonRpcException("fimble: the explanation was superseded by a newer one", code=-32800) from None
        except FimbleError as exc:
            ls.notify_status("error", str(exc))
            raise rpc_error(exc) from None
        finally:
            loop.call_soon_threadsafe(send, "", True)
        ls.notify_status("ready", "explained")
        await asyncio.sleep(0)  # let the queued notifications go out before the response
        return {"markdown": result.markdown, "token": token}
