"""`fimble/nextEdit` and `textDocument/copilotInlineEdit` through a real LSP client (pytest-lsp) against the real
server over stdio: with the scripted next-edit model (tests/next_edit_server.py), and with a tiny real GGUF."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient, client_capabilities, make_test_lsp_client

from fimble.lsp.next_edit_features import fits_in_memory
from fimble_dev.tiny_gguf import FAMILY_SPECIAL_TOKENS, TinyModelSpec, write_tiny_gguf
from tests.conftest import inline_params, open_doc, server_env, start_client

SERVER = Path(__file__).resolve().parents[1] / "next_edit_server.py"
URI = "file:///work/demo.py"
DEMO = 'import math\n\n\ndef area(radius):\n    """Area of a circle."""\n    return math.pi * radius * radius\n'

Start = Callable[..., Awaitable[LanguageClient]]


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[Start]:
    started: list[LanguageClient] = []

    async def start(old: str = "radius", new: str = "r", delay_s: float = 0.0, **options: Any) -> LanguageClient:
        client = make_test_lsp_client()
        client.set_configuration({}, section="fimble")
        env = server_env(FIMBLE_SCRIPTED_DELAY_S=str(delay_s))
        await client.start_io(sys.executable, str(SERVER), old, new, env=env)
        await client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities("visual-studio-code"),
                initialization_options={"model": "scripted", **options},
            )
        )
        started.append(client)
        return client

    yield start
    for client in started:
        await client.shutdown_session()
        await client.stop()


def rename_param(client: LanguageClient, version: int = 2) -> None:
    """The user renames `radius` to `r` on the def line, letter by letter deleted then typed."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(
                        start=types.Position(line=3, character=9), end=types.Position(line=3, character=15)
                    ),
                    text="r",
                )
            ],
        )
    )


async def ask(client: LanguageClient, method: str = "fimble/nextEdit", version: int = 2, line: int = 3) -> Any:
    params = {"textDocument": {"uri": URI, "version": version}, "position": {"line": line, "character": 10}}
    return await asyncio.wait_for(client.protocol.send_request_async(method, params), 60)


def as_dict(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return {k: as_dict(v) for k, v in value._asdict().items()}
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    return value


def apply(text: str, edits: list[dict[str, Any]]) -> str:
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(pos: dict[str, int]) -> int:
        return starts[pos["line"]] + pos["character"]

    for edit in sorted(edits, key=lambda e: offset(e["range"]["start"]), reverse=True):
        text = text[: offset(edit["range"]["start"])] + edit["text"] + text[offset(edit["range"]["end"]) :]
    return text


@pytest.mark.timeout(120)
async def test_a_rename_is_followed_on_the_other_line(scripted: Start) -> None:
    client = await scripted()
    open_doc(client, URI, DEMO)
    rename_param(client)
    for method in ("fimble/nextEdit", "textDocument/copilotInlineEdit"):
        result = as_dict(await ask(client, method))
        edits = result["edits"]
        assert [e["text"] for e in edits] == ["r", "r"], result
        assert all(e["textDocument"] == {"uri": URI, "version": 2} for e in edits)
        assert edits[0]["range"]["start"] == {"line": 5, "character": 21}  # where Tab jumps
        after = apply(DEMO.replace("area(radius)", "area(r)"), edits)
        assert after.splitlines()[5] == "    return math.pi * r * r"


@pytest.mark.timeout(120)
async def test_stale_versions_are_refused_and_bad_params_are_invalid(scripted: Start) -> None:
    client = await scripted()
    open_doc(client, URI, DEMO)
    rename_param(client)
    with pytest.raises(JsonRpcException) as stale:
        await ask(client, version=1)
    assert stale.value.code == -32801  # ContentModified
    with pytest.raises(JsonRpcException) as invalid:
        await asyncio.wait_for(client.protocol.send_request_async("fimble/nextEdit", {"position": 3}), 30)
    assert invalid.value.code == -32602
    with pytest.raises(JsonRpcException) as not_open:
        params = {
            "textDocument": {"uri": "file:///work/other.py", "version": 1},
            "position": {"line": 0, "character": 0},
        }
        await asyncio.wait_for(client.protocol.send_request_async("fimble/nextEdit", params), 30)
    assert not_open.value.code == -32602
    # still serving
    assert as_dict(await ask(client))["edits"]


@pytest.mark.timeout(120)
async def test_nothing_is_offered_when_turned_off_or_without_a_grammar_or_a_change(scripted: Start) -> None:
    off = await scripted(nextEdit=False)
    open_doc(off, URI, DEMO)
    rename_param(off)
    result = as_dict(await ask(off))
    assert result["edits"] == [] and "turned off" in result["reason"]

    unchanged = await scripted("nowhere", "x")  # the model writes the region as it is
    open_doc(unchanged, URI, DEMO)
    rename_param(unchanged)
    result = as_dict(await ask(unchanged))
    assert result["edits"] == [] and "unchanged" in result["reason"]

    client = await scripted()
    text_uri = "file:///work/notes.txt"
    open_doc(client, text_uri, "radius\n", language_id="plaintext")
    params = {"textDocument": {"uri": text_uri, "version": 1}, "position": {"line": 0, "character": 0}}
    result = as_dict(await asyncio.wait_for(client.protocol.send_request_async("fimble/nextEdit", params), 60))
    assert result["edits"] == [] and "no grammar" in result["reason"]


@pytest.mark.timeout(120)
async def test_an_edit_that_breaks_the_syntax_is_not_offered(scripted: Start) -> None:
    client = await scripted("radius", "r r(")  # turns the line into a syntax error
    open_doc(client, URI, DEMO)
    rename_param(client)
    result = as_dict(await ask(client))
    assert result["edits"] == [] and "syntax error" in result["reason"]


@pytest.mark.timeout(180)
async def test_a_real_model_answers_without_error(tiny_model: Path) -> None:
    """The tiny random-weight GGUF writes noise: the request goes through llama.cpp and ends with no edit and a
    reason, never an error."""
    client, _ = await start_client(model=tiny_model)
    try:
        open_doc(client, URI, DEMO)
        rename_param(client)
        result = as_dict(await ask(client))
        assert isinstance(result["edits"], list)
        if not result["edits"]:
            assert result["reason"]
    finally:
        await client.shutdown_session()
        await client.stop()


@pytest.mark.timeout(180)
async def test_next_edits_run_on_their_own_model_and_a_broken_one_is_told(tiny_model: Path, tmp_path: Path) -> None:
    """nextEditModel loads beside the completion model (it fits here) and answers next edits in its own format (a
    Qwen-vocabulary model named like Sweep's gets the Sweep format); completions stay on the completion model. A
    nextEditModel that cannot be loaded is a readable error for next edits only."""
    sweep = write_tiny_gguf(
        tmp_path / "sweep-next-edit-tiny.gguf",
        TinyModelSpec(name="sweep-next-edit-tiny", special_tokens=FAMILY_SPECIAL_TOKENS["qwen2.5-coder"]),
    )
    client, _ = await start_client(model=tiny_model, init_options={"nextEditModel": str(sweep)})
    try:
        open_doc(client, URI, DEMO)
        rename_param(client)
        result = as_dict(await ask(client))
        assert (result["model"], result["format"]) == ("sweep-next-edit-tiny", "sweep"), result
        completion = await client.text_document_inline_completion_async(inline_params(URI, 3, 10))
        assert completion is not None  # answered by the completion model, next to the other
    finally:
        await client.shutdown_session()
        await client.stop()

    client, _ = await start_client(model=tiny_model, init_options={"nextEditModel": str(tmp_path / "missing.gguf")})
    try:
        open_doc(client, URI, DEMO)
        rename_param(client)
        with pytest.raises(JsonRpcException) as failed:
            await ask(client)
        assert "missing.gguf" in failed.value.message
        completion = await client.text_document_inline_completion_async(inline_params(URI, 3, 10))
        assert completion is not None
    finally:
        await client.shutdown_session()
        await client.stop()


def test_a_model_that_does_not_fit_is_not_loaded_twice(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"\0" * 1000)
    assert fits_in_memory(str(model), None)  # unknown: try
    assert fits_in_memory(str(model), 1 << 40)
    assert not fits_in_memory(str(model), 1000)
    assert fits_in_memory(str(tmp_path / "missing.gguf"), 0)  # the load says what is wrong with it


@pytest.mark.timeout(120)
async def test_a_newer_request_or_a_completion_cancels_a_next_edit(scripted: Start) -> None:
    """The model writes slowly (about 4 s for the region): a second next-edit request supersedes the first, a
    completion request cancels the one in progress, and $/cancelRequest stops one; each gets RequestCancelled."""
    client = await scripted(delay_s=0.1)
    open_doc(client, URI, DEMO)
    rename_param(client)
    first = asyncio.ensure_future(ask(client))
    await asyncio.sleep(0.5)
    second = asyncio.ensure_future(ask(client))
    with pytest.raises(JsonRpcException) as superseded:
        await first
    assert superseded.value.code == -32800
    assert [e["text"] for e in as_dict(await second)["edits"]] == ["r", "r"]

    pending = asyncio.ensure_future(ask(client))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    await client.text_document_inline_completion_async(inline_params(URI, 3, 10))
    with pytest.raises(JsonRpcException) as by_completion:
        await pending
    assert by_completion.value.code == -32800
    assert time.monotonic() - started < 3.0  # the completion did not wait for the next edit to finish

    params = {"textDocument": {"uri": URI, "version": 2}, "position": {"line": 3, "character": 10}}
    cancelled = asyncio.ensure_future(client.protocol.send_request_async("fimble/nextEdit", params, "to-cancel"))
    await asyncio.sleep(0.5)
    client.protocol.notify("$/cancelRequest", types.CancelParams(id="to-cancel"))
    with pytest.raises(JsonRpcException) as by_client:
        await asyncio.wait_for(cancelled, 30)
    assert by_client.value.code == -32800
    assert as_dict(await ask(client))["edits"]  # still serving
