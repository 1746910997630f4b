"""End to end over stdio: a real LSP client (pytest-lsp) against `fimble serve` running a tiny real GGUF."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from fimble_dev.tiny_gguf import write_not_gguf
from tests.conftest import Recorder, inline_params, open_doc, start_client, wait_until

URI = "file:///work/example.py"
TEXT = "import os\n\n\ndef greet(name):\n    message = \n    return message\n"


async def test_capabilities_announce_inline_and_fallback_completion(lsp: tuple[LanguageClient, Recorder]) -> None:
    _, recorder = lsp
    assert recorder.initialize_result is not None
    result = recorder.initialize_result.capabilities
    assert result.inline_completion_provider is not None
    assert result.completion_provider is not None
    sync = result.text_document_sync
    assert isinstance(sync, types.TextDocumentSyncOptions) and sync.change == types.TextDocumentSyncKind.Incremental


async def test_inline_completion_returns_an_item_at_the_cursor(lsp: tuple[LanguageClient, Recorder]) -> None:
    client, recorder = lsp
    open_doc(client, URI, TEXT)
    result = await client.text_document_inline_completion_async(inline_params(URI, 4, 14))
    assert isinstance(result, types.InlineCompletionList) and len(result.items) == 1
    item = result.items[0]
    assert isinstance(item.insert_text, str) and item.insert_text.strip()
    # Mid-line completions finish the line only.
    assert "\n" not in item.insert_text
    assert item.range == types.Range(start=types.Position(4, 14), end=types.Position(4, 14))
    await wait_until(lambda: any(s.get("latencyMs") is not None for s in recorder.status))
    ready = [s for s in recorder.status if s["state"] == "ready"]
    assert ready and ready[-1]["model"] == "tiny-plain"


async def test_model_load_reports_progress_and_log(lsp: tuple[LanguageClient, Recorder]) -> None:
    client, recorder = lsp
    await wait_until(lambda: any(s["state"] == "ready" for s in recorder.status))
    kinds = [type(v).__name__ for reports in client.progress_reports.values() for v in reports]
    assert "WorkDoneProgressBegin" in kinds and "WorkDoneProgressEnd" in kinds
    assert any("tiny-plain" in m.message and "loaded in" in m.message for m in client.log_messages)


async def test_incremental_changes_with_utf16_positions(lsp: tuple[LanguageClient, Recorder]) -> None:
    client, _ = lsp
    open_doc(client, URI, "s = '😀'\nx = \n")
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(0, 7), end=types.Position(0, 7)), text="!"
                )
            ],
        )
    )
    prompt = await client.protocol.send_request_async(
        "fimble/debugPrompt", {"textDocument": {"uri": URI}, "position": {"line": 1, "character": 4}}
    )
    assert prompt.prompt.endswith("s = '😀!'\nx = ")
    assert prompt.format == "prefix-only"
    assert prompt.parts[-1].source == "cursor window"


async def test_fallback_completion_item_keeps_typed_word(lsp: tuple[LanguageClient, Recorder]) -> None:
    client, _ = lsp
    open_doc(client, URI, "def f():\n    retu\n")
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=1, character=8)
        )
    )
    assert isinstance(result, types.CompletionList) and len(result.items) == 1
    item = result.items[0]
    assert item.text_edit is not None and isinstance(item.text_edit, types.TextEdit)
    assert item.text_edit.range.start == types.Position(1, 4)
    assert item.text_edit.new_text.startswith("retu") and len(item.text_edit.new_text) > 4
    assert item.filter_text == item.text_edit.new_text


async def test_bad_positions_and_unknown_documents_are_errors_and_server_stays_up(
    lsp: tuple[LanguageClient, Recorder],
) -> None:
    client, _ = lsp
    open_doc(client, URI, "x = 1\n")
    for line, character in ((0, 99), (10, 0)):
        with pytest.raises(JsonRpcException) as info:
            await client.text_document_inline_completion_async(inline_params(URI, line, character))
        assert info.value.code == -32602
    with pytest.raises(JsonRpcException, match="not open"):
        await client.text_document_inline_completion_async(inline_params("file:///never-opened.py", 0, 0))
    result = await client.text_document_inline_completion_async(inline_params(URI, 1, 0))
    assert isinstance(result, types.InlineCompletionList)


async def test_cancel_request_stops_generation(tiny_random_model: Path) -> None:
    model = tiny_random_model
    client, _ = await start_client(model=model, init_options={"nCtx": 8192, "maxTokens": 3000, "timeBudgetMs": 120000})
    try:
        open_doc(client, URI, "x = ")
        await client.text_document_inline_completion_async(inline_params(URI, 0, 4))  # warm up
        other = "file:///work/other.py"  # a fresh document: the typed-through cache cannot answer for it
        open_doc(client, other, "y = ")
        msg_id = "cancel-me"
        future = client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(other, 0, 4), msg_id=msg_id
        )
        await asyncio.sleep(0.3)
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        with pytest.raises(JsonRpcException):
            await asyncio.wait_for(asyncio.wrap_future(future), 10)
        await wait_until(lambda: any("request cancelled" in m.message for m in client.log_messages), 20)
        message = next(m.message for m in client.log_messages if "request cancelled" in m.message)
        stopped_after = int(message.split("after ")[1].split(" ")[0])
        assert stopped_after < 3000 and "(cancelled)" in message
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_configuration_change_switches_model_without_restart(tiny_model: Path, tiny_fim_model: Path) -> None:
    client, recorder = await start_client(model=None, config={"model": str(tiny_model)})
    try:
        await wait_until(lambda: any(s.get("model") == "tiny-plain" for s in recorder.status))
        client.set_configuration({"model": str(tiny_fim_model)}, section="fimble")
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        await wait_until(lambda: any(s.get("model") == "tiny-qwen-fim" for s in recorder.status))
        open_doc(client, URI, "def f():\n    return 1\n")
        prompt = await client.protocol.send_request_async(
            "fimble/debugPrompt", {"textDocument": {"uri": URI}, "position": {"line": 1, "character": 4}}
        )
        assert prompt.format == "qwen2.5-coder"
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_broken_model_shows_a_message_errors_requests_and_stays_up(tmp_path: Path, tiny_model: Path) -> None:
    bad = write_not_gguf(tmp_path / "broken.gguf")
    client, recorder = await start_client(model=bad)
    try:
        open_doc(client, URI, "x = 1\n")
        with pytest.raises(JsonRpcException, match="not a GGUF") as info:
            await client.text_document_inline_completion_async(inline_params(URI, 1, 0))
        assert info.value.code == -32803
        await wait_until(lambda: any(m.type == types.MessageType.Error for m in client.messages))
        assert any("not a GGUF" in m.message for m in client.messages)
        assert any(s["state"] == "error" for s in recorder.status)
        # Fixing the setting brings the server back without a restart.
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"fimble": {"model": str(tiny_model)}})
        )
        await wait_until(lambda: any(s.get("model") == "tiny-plain" for s in recorder.status))
        result = await client.text_document_inline_completion_async(inline_params(URI, 1, 0))
        assert isinstance(result, types.InlineCompletionList)
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_context_overflow_is_reported(tiny_model: Path) -> None:
    client, _ = await start_client(model=tiny_model, init_options={"nCtx": 64, "maxTokens": 5000})
    try:
        open_doc(client, URI, "x = 1\n")
        with pytest.raises(JsonRpcException, match="no room"):
            await client.text_document_inline_completion_async(inline_params(URI, 1, 0))
        await wait_until(lambda: any("no room" in m.message for m in client.messages))
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_newer_request_supersedes_older_one(tiny_random_model: Path) -> None:
    model = tiny_random_model
    client, _ = await start_client(model=model, init_options={"nCtx": 8192, "maxTokens": 3000, "timeBudgetMs": 60000})
    try:
        open_doc(client, URI, "x = ")
        older = asyncio.ensure_future(client.text_document_inline_completion_async(inline_params(URI, 0, 4)))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await client.text_document_inline_completion_async(inline_params(URI, 0, 4))
        first = await asyncio.wait_for(older, 30)
        # The older one was superseded: answered empty instead of running its 3000 tokens first.
        assert not first.items
        assert time.monotonic() - started < 30
        superseded = [m.message for m in client.log_messages if "request cancelled" in m.message]
        assert not superseded or "(cancelled)" in superseded[0]
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_utf8_position_encoding_negotiated_with_the_client(tiny_model: Path) -> None:
    """Neovim offers UTF-8 first; positions must then be read as bytes, not UTF-16 units."""
    import sys

    from pytest_lsp import client_capabilities, make_test_lsp_client

    from tests.conftest import server_env

    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "fimble", "serve", env=server_env())
    capabilities = client_capabilities("neovim")
    capabilities.general = types.GeneralClientCapabilities(
        position_encodings=[types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16]
    )
    result = await client.initialize_session(
        types.InitializeParams(capabilities=capabilities, initialization_options={"model": str(tiny_model)})
    )
    try:
        assert result.capabilities.position_encoding == types.PositionEncodingKind.Utf8
        open_doc(client, URI, "name = 'é'\nx = ")
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
                content_changes=[
                    types.TextDocumentContentChangePartial(  # after 'é' is byte 10 (é is two bytes)
                        range=types.Range(start=types.Position(0, 10), end=types.Position(0, 10)), text="è"
                    )
                ],
            )
        )
        prompt = await client.protocol.send_request_async(
            "fimble/debugPrompt", {"textDocument": {"uri": URI}, "position": {"line": 1, "character": 4}}
        )
        assert prompt.prompt.endswith("name = 'éè'\nx = ")
    finally:
        await client.shutdown_session()
        await client.stop()
