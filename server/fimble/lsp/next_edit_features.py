"""Next-edit suggestions over LSP: `fimble/nextEdit` (and Copilot's `textDocument/copilotInlineEdit`, the same
shape), the edit history fed by the document store, and the model they run on.

A next edit is the least urgent model work: one runs at a time for the whole workspace (a newer request cancels the
older one), and a completion request cancels it, so ghost text never waits behind one. It may run on its own model
(`nextEditModel`, e.g. Sweep Next-Edit) when that fits in memory beside the completion model.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcException, JsonRpcInvalidParams

from fimble.errors import FimbleError
from fimble.lsp.convert import field, position_of, rpc_error, structure, unstructure
from fimble.model.runtime import Cancelled, ModelRuntime
from fimble.next_edit.predictor import NextEditAnswer, NextEditRequest, predict
from fimble.next_edit.recent_edits import EditHistory
from fimble.settings import Settings

if TYPE_CHECKING:
    from fimble.lsp.server import FimbleServer

log = logging.getLogger(__name__)

NEXT_EDIT = "fimble/nextEdit"
COPILOT_INLINE_EDIT = "textDocument/copilotInlineEdit"
RUN_KEY = "fimble/nextEdit"  # one key for the workspace: the newest next-edit request wins
REQUEST_CANCELLED = -32800
# What a loaded model takes besides its file: KV cache, compute buffers (measured ~150-300 MB for small models).
MODEL_OVERHEAD_BYTES = 512 << 20


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable, else free pages); None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fits_in_memory(path: str, available: int | None) -> bool:
    try:
        size = os.path.getsize(os.path.expanduser(path))
    except OSError:
        return True  # let the load say what is wrong with the file
    return available is None or size + MODEL_OVERHEAD_BYTES <= available


class NextEditFeatures:
    def __init__(self, server: FimbleServer) -> None:
        self.server = server
        self.history = EditHistory(server.relative_path)
        self._own: ModelRuntime | None = None  # the nextEditModel's, when one is set and fits
        self._own_model: str | None = None

    # -- listeners ---------------------------------------------------------------------------------------------
    def forget(self, uri: str) -> None:
        self.history.forget(uri)

    def yield_to_completion(self) -> None:
        """A completion is about to use the model: the next edit in progress (if any) stops."""
        self.runtime.cancel(RUN_KEY)

    # -- the model ---------------------------------------------------------------------------------------------
    @property
    def runtime(self) -> ModelRuntime:
        return self._own if self._own is not None else self.server.runtime

    def load(self, settings: Settings) -> None:
        """Load `nextEditModel` on a runtime of its own when it is set, in-process, and fits in memory; else next
        edits share the completion model."""
        wanted = settings.next_edit_model if settings.backend == "llama.cpp" else None
        if wanted == self._own_model and (wanted is None or self._own is not None):
            if self._own is not None and self._own.needs_reload(self._settings_for(settings)):
                self._own.load(self._settings_for(settings))
            return
        old, self._own, self._own_model = self._own, None, wanted
        if old is not None:
            old.shutdown()
        if wanted is None:
            return
        if not fits_in_memory(wanted, available_memory()):
            message = (
                f"nextEditModel {os.path.basename(wanted)} does not fit in memory beside the completion model: "
                "the completion model serves next edits too."
            )
            log.warning("%s", message)
            self.server.tell_once(f"nextEditModel:{wanted}", message, types.MessageType.Info)
            return
        runtime = ModelRuntime()
        runtime.on_status(self._on_status)
        runtime.load(self._settings_for(settings))
        self._own = runtime

    @staticmethod
    def _settings_for(settings: Settings) -> Settings:
        return dataclasses.replace(settings, model=settings.next_edit_model)

    def _on_status(self, state: str, message: str) -> None:
        if state == "error":
            log.warning("next-edit model: %s", message)
            loop = self.server.loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self.server.show_error, f"next-edit model: {message}")
        else:
            log.info("next-edit model: %s", message)

    def close(self) -> None:
        if self._own is not None:
            self._own.shutdown()
            self._own = None

    # -- the request -------------------------------------------------------------------------------------------
    async def suggest(self, params: Any) -> dict[str, Any]:
        try:
            pos = structure(params, types.TextDocumentPositionParams)
        except ValueError as exc:
            raise JsonRpcInvalidParams(
                f"{NEXT_EDIT} needs {{textDocument: {{uri, version}}, position: {{line, character}}}}: {exc}"
            ) from None
        version = field(params, "textDocument", "version")
        if not isinstance(version, int) or isinstance(version, bool):
            version = None
        server = self.server
        settings = server.settings
        if not settings.next_edit:
            return _empty("next edits are turned off (setting nextEdit)")
        uri = pos.text_document.uri
        doc = server.document(uri)
        if version is not None and doc.version is not None and version != doc.version:
            raise JsonRpcContentModified(
                f"fimble: version {version} of the document is not the current one ({doc.version})"
            )
        if server.store.oversized(doc):
            return _empty(server.too_large_message(doc))
        offset = server.offset(doc, pos.position)
        await server.await_load_queued()
        doc = server.document(uri)
        if version is not None and doc.version is not None and version != doc.version:
            raise JsonRpcContentModified("fimble: the document changed while the model was loading")
        request = NextEditRequest(
            text=doc.text,
            offset=offset,
            language_id=doc.language_id,
            path=server.relative_path(uri),
            hunks=self.history.hunks(),
            settings=settings,
            context=server.context_engine,
            uri=uri,
        )
        runtime = self.runtime
        cancel = runtime.token_for(RUN_KEY)
        try:
            answer = await runtime.run(lambda backend: predict(backend, request, cancel), cancel)
        except Cancelled:
            raise JsonRpcException("fimble: the next edit was superseded", code=REQUEST_CANCELLED) from None
        except FimbleError as exc:
            raise rpc_error(exc) from None
        if answer.reason == "cancelled":
            raise JsonRpcException("fimble: the next edit was superseded", code=REQUEST_CANCELLED)
        now = server.store.find(uri)
        if now is None or now.text is not request.text:
            raise JsonRpcContentModified("fimble: the document changed while the next edit was computed")
        _log_answer(uri, answer)
        if not answer.replacements:
            return _empty(answer.reason)
        text_document = {"uri": uri, "version": now.version}
        edits = [
            {
                "range": unstructure(types.Range(start=position_of(now, rep.start), end=position_of(now, rep.end))),
                "text": rep.text,
                "textDocument": text_document,
            }
            for rep in answer.replacements
        ]
        return {"edits": edits}


def _empty(reason: str) -> dict[str, Any]:
    return {"edits": [], "reason": reason}


def _log_answer(uri: str, answer: NextEditAnswer) -> None:
    g = answer.generation
    model = f", {g.prompt_tokens} prompt tokens, {g.generated_tokens} generated ({g.stop_reason})" if g else ""
    shown = f"{len(answer.replacements)} edit(s)" if answer.replacements else f"nothing: {answer.reason}"
    log.info(
        "next edit in %s (%s format, lines %d-%d): %s%s, %.0f ms",
        uri,
        answer.format or "-",
        answer.region.first_line + 1,
        answer.region.last_line + 1,
        shown,
        model,
        answer.timings_ms.get("total", 0.0),
    )
