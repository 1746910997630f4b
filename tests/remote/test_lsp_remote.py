"""The LSP server with a remote engine, end to end over stdio: editors' settings pick the backend, completions come
from the shared server, and an unreachable server is an error message (or the fallback model), never a hang or a
crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.conftest import open_doc, start_client
from tests.remote.conftest import Served, free_port
from tests.test_lsp_server import inline_params, wait_until

URI = "file:///work/example.py"
TEXT = "import os\n\n\ndef greet(name):\n    message = \n    return message\n"


async def test_inline_completion_from_a_shared_server(llama_cpp_python_server: Served, tiny_model: Path) -> None:
    local_client, _ = await start_client(model=tiny_model)
    try:
        open_doc(local_client, URI, TEXT)
        local = await local_client.text_document_inline_completion_async(inline_params(URI, 4, 14))
    finally:
        await local_client.shutdown_session()
        await local_client.stop()
    client, recorder = await start_client(
        model=None, init_options={"backend": "openai", "url": llama_cpp_python_server.url + "/v1"}
    )
    try:
        await wait_until(lambda: any(s["state"] == "ready" for s in recorder.status))
        ready = next(s for s in recorder.status if s["state"] == "ready")
        assert "tiny-plain" in ready["message"] and "openai at http://127.0.0.1" in ready["message"]
        open_doc(client, URI, TEXT)
        result = await client.text_document_inline_completion_async(inline_params(URI, 4, 14))
        assert isinstance(result, types.InlineCompletionList) and len(result.items) == 1
        assert result.items[0].insert_text == local.items[0].insert_text
        await wait_until(lambda: any(s.get("latencyMs") is not None for s in recorder.status))
        assert recorder.status[-1]["model"] == "tiny-plain"
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_unreachable_server_is_an_error_and_the_server_stays_up() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client, recorder = await start_client(
        model=None, init_options={"backend": "llama-server", "url": url, "requestTimeoutMs": 1000}
    )
    try:
        open_doc(client, URI, TEXT)
        for _ in range(2):  # the second one fails fast (backoff window) and the server is still answering
            with pytest.raises(JsonRpcException, match="connection refused"):
                await client.text_document_inline_completion_async(inline_params(URI, 4, 14))
        await wait_until(lambda: any(m.type == types.MessageType.Error for m in client.messages))
        assert any("'url'" in m.message for m in client.messages)
        assert any(s["state"] == "error" for s in recorder.status)
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_fallback_model_completes_while_the_server_is_unreachable(tiny_model: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client, recorder = await start_client(
        model=None,
        init_options={"backend": "openai", "url": url, "fallbackModel": str(tiny_model), "requestTimeoutMs": 1000},
    )
    try:
        open_doc(client, URI, TEXT)
        result = await client.text_document_inline_completion_async(inline_params(URI, 4, 14))
        assert isinstance(result, types.InlineCompletionList) and len(result.items) == 1
        assert result.items[0].insert_text
        assert any("fallback" in s["message"] for s in recorder.status if s["state"] == "error")
    finally:
        await client.shutdown_session()
        await client.stop()
