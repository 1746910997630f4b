"""Bounded memory: what a closed document leaves behind, documents over maxDocumentBytes, and the server's RSS as
large documents are opened and closed (measured on a real `fimble serve` in a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient

from fimble.completion.filters import Suggestion
from fimble.context.engine import ContextEngine
from fimble.context.source_types import ContextQuery
from fimble.lsp.server import TOO_LARGE, FimbleServer, create_server
from fimble.prompt.budget import TokenEstimator
from tests.conftest import open_doc, start_client
from tests.scripts.helpers import run_script

HELPERS = '''import os


def read_settings(path, defaults):
    """Read the settings file and merge the defaults in."""
    values = dict(defaults)
    with open(path) as handle:
        for line in handle:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values
'''
EDITED = '''import os


def load_config(path, defaults):
    """Load the config file and merge the defaults in."""
    values = dict(defaults)
    with open(path) as handle:
        for line in handle:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def broken(:
'''


class Wire:
    """Stands in for stdout: pygls writes each message it sends here (without headers)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.sent.append(json.loads(data))

    def close(self) -> None:
        pass

    def notifications(self, method: str) -> list[dict[str, Any]]:
        return [m["params"] for m in self.sent if m.get("method") == method]


_CONVERTER = default_converter()


def notify(server: FimbleServer, method: str, params: Any) -> None:
    """As if the notification came over the wire: through pygls' protocol and its built-in handlers."""
    data = {"jsonrpc": "2.0", "method": method, "params": _CONVERTER.unstructure(params)}
    server.protocol.handle_message(server.protocol.structure_message(data))


def did_open(server: FimbleServer, uri: str, text: str) -> None:
    item = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
    notify(server, types.TEXT_DOCUMENT_DID_OPEN, types.DidOpenTextDocumentParams(text_document=item))


def did_close(server: FimbleServer, uri: str) -> None:
    params = types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    notify(server, types.TEXT_DOCUMENT_DID_CLOSE, params)


async def test_close_drops_everything_kept_for_the_document(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text(HELPERS)
    (tmp_path / "config.py").write_text(EDITED)
    server = create_server()
    wire = Wire()
    server.protocol.set_writer(wire, include_headers=False)
    initialize = {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {}}
    data = {"jsonrpc": "2.0", "id": 1, "method": types.INITIALIZE, "params": initialize}
    server.protocol.handle_message(server.protocol.structure_message(data))
    engine = ContextEngine(tmp_path, cache_file=False)
    engine.attach(server.store)
    server.context_engine = engine
    engine.index_now()
    uri = (tmp_path / "config.py").as_uri()
    other = (tmp_path / "helpers.py").as_uri()
    try:
        did_open(server, other, HELPERS)
        did_open(server, uri, EDITED)
        # What typing leaves behind: a tree, the engine's state after two requests (the first has the worker read
        # the nearby files, the second finds them), a typed-through suggestion, cancel tokens for the document's
        # completion, fix and explanation, and its syntax diagnostics.
        offset = EDITED.index("        for line in handle:")
        query = ContextQuery(EDITED, offset, "python", "config.py", uri, (offset - 200, offset))
        for _ in range(2):
            engine.gather(query, ("scope", "similar", "ring"), 1000, TokenEstimator(), time.monotonic() + 5)
            engine.wait_idle()
        server.cache.put(uri, EDITED[:offset], EDITED[offset:], [Suggestion(text="x")])
        for key in (uri, f"fix:{uri}", f"explain:{uri}"):
            server.runtime.token_for(key)
        assert server.agent is not None
        await wait_for(lambda: bool(server.agent and server.agent.published.get(uri)))
        edit = types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(0, 0), end=types.Position(0, 0)), text="#"
        )
        params = types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2), content_changes=[edit]
        )
        notify(server, types.TEXT_DOCUMENT_DID_CHANGE, params)
        held = set(engine.state_of(uri))
        assert {"tree", "pending", "seen", "arrangements", "last_found", "similar", "rel_cache", "jobs"} <= held
        assert uri in server.agent._timers and set(server.runtime.tracked_keys()) >= {
            uri,
            f"fix:{uri}",
            f"explain:{uri}",
        }

        did_close(server, uri)

        assert engine.state_of(uri) == [] and not engine.trees.tracked(uri)
        assert server.store.find(uri) is None
        assert server.cache.lookup(uri, EDITED[:offset], EDITED[offset:]) is None
        assert [k for k in server.runtime.tracked_keys() if uri in k] == []
        assert uri not in server.agent._timers and uri not in server.agent.published
        cleared = wire.notifications(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)[-1]
        assert cleared["uri"] == uri and cleared["diagnostics"] == []
        # the other document keeps its own
        assert engine.trees.tracked(other) and "seen" in engine.state_of(other)
        # pygls keeps no copy of the documents, nor a Future for each notification it handled
        assert len(server.workspace.text_documents) == 0
        assert server.protocol._request_futures == {}
    finally:
        engine.close()
        server.runtime.shutdown()


async def wait_for(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def inline(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
    )


def change(
    client: LanguageClient, uri: str, version: int, start: tuple[int, int], end: tuple[int, int], text: str
) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(*start), end=types.Position(*end)), text=text
                )
            ],
        )
    )


async def test_a_document_over_the_limit_is_kept_in_step_without_completions(tmp_path: Path, tiny_model: Path) -> None:
    client, recorder = await start_client(model=tiny_model, init_options={"maxDocumentBytes": 400})
    try:
        uri = (tmp_path / "big.py").as_uri()
        padding = "".join(f"# filler line {i:03d} of a file that is too large\n" for i in range(12))  # 528 bytes
        open_doc(client, uri, padding + "def broken(:\n    value = \n")
        result = await client.text_document_inline_completion_async(inline(uri, 13, 12))
        assert result is not None and not result.items
        assert any(s.get("reason") == TOO_LARGE and "maxDocumentBytes" in s["message"] for s in recorder.status)
        # still over the limit after more typing: edits are applied, the user is not told again
        change(client, uri, 2, (13, 12), (13, 12), "comp")
        result = await client.text_document_inline_completion_async(inline(uri, 13, 16))
        assert result is not None and not result.items
        await asyncio.sleep(0.6)  # diagnostics would be published 0.4 s after the last edit
        assert uri not in client.diagnostics, "the broken line gets no diagnostics while the file is too large"
        # the filler goes: under the limit, suggestions and diagnostics come back, on the text the editor has
        change(client, uri, 3, (0, 0), (12, 0), "")
        result = await client.text_document_inline_completion_async(inline(uri, 1, 16))
        assert result is not None and len(result.items) == 1
        prompt = await client.protocol.send_request_async(
            "fimble/debugPrompt", {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 16}}
        )
        assert prompt.prompt.endswith("def broken(:\n    value = comp")
        await wait_for(lambda: bool(client.diagnostics.get(uri)))
        told = [m for m in client.messages if "maxDocumentBytes" in m.message]
        assert len(told) == 1 and told[0].type == types.MessageType.Info
    finally:
        await client.shutdown_session()
        await client.stop()


# -- memory, measured ------------------------------------------------------------------------------------------------

_FUNCTION = '''

def handler_{i}(values, limit={i}):
    """Sum the values above the limit."""
    total = 0
    for value in values:
        if value > limit:
            total += value * {i}
    return total
'''


def python_text(size: int) -> str:
    parts, length, i = [], 0, 0
    while length < size:
        parts.append(_FUNCTION.format(i=i))
        length += len(parts[-1])
        i += 1
    return "".join(parts)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def quiet(pid: int) -> float:
    """RSS once the server has stopped using CPU for half a second (background parses and diagnostics done)."""
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    deadline = time.monotonic() + 30
    last, since = cpu(), time.monotonic()
    await asyncio.sleep(0.5)  # diagnostics wait 0.4 s for a pause in typing
    while time.monotonic() < deadline and time.monotonic() - since < 0.5:
        await asyncio.sleep(0.1)
        now = cpu()
        if now - last > 0.01:
            since = time.monotonic()
        last = now
    return rss_mb(pid)


async def open_and_answer(client: LanguageClient, uri: str, text: str) -> None:
    open_doc(client, uri, text)
    lines = text.count("\n")
    await client.text_document_inline_completion_async(inline(uri, lines, 0))


async def test_memory_is_bounded_while_open_and_given_back_on_close(tmp_path: Path, tiny_model: Path) -> None:
    """The limit keeps a 5 MB document cheap; 2 MB documents under a raised limit get trees, context and
    diagnostics, and all of it goes when they are closed. (Before: +200 MB for the 5 MB one, +61 MB kept for each
    2 MB one.)"""
    client, _ = await start_client(model=tiny_model, init_options={"maxDocumentBytes": 3_000_000}, root=tmp_path)
    try:
        assert client._server is not None
        pid = client._server.pid
        probe = (tmp_path / "probe.py").as_uri()
        await open_and_answer(client, probe, "import os\n\n\ndef main():\n    path = os.getcwd()\n")
        start = await quiet(pid)
        big = (tmp_path / "big.py").as_uri()
        await open_and_answer(client, big, python_text(5_000_000))
        opened = await quiet(pid)
        client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=big)))
        medium = python_text(2_000_000)
        for i in range(5):
            uri = (tmp_path / f"medium_{i}.py").as_uri()
            await open_and_answer(client, uri, medium.replace("handler_", f"handler{i}_"))
            await quiet(pid)  # parsed, indexed, diagnosed
            client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=uri)))
        await client.text_document_inline_completion_async(inline(probe, 4, 0))
        end = await quiet(pid)
        print(f"RSS: start {start:.0f} MB, 5 MB open {opened:.0f} MB, after closing all {end:.0f} MB")
        assert opened - start < 150, "a document over the size limit costs little more than its text"
        assert end - start < 100, "closed documents leave their trees and caches behind"
    finally:
        await client.shutdown_session()
        await client.stop()


def test_soak_script_runs_end_to_end(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "soak.json"
    result = run_script(
        "soak.py", "--keystrokes", "120", "--window", "60", "--model", str(tiny_model), "--switch-every", "10",
        "--cancel-rate", "0.3", "--accept-rate", "0.5", "--debounce-ms", "5", "--out", str(out), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [w["keystrokes"] for w in report["windows"]] == [60, 120]
    for window in report["windows"]:
        assert window["rss_mb"] > 0 and window["threads"] > 0 and window["fds"] > 0
        assert window["errors"] == 0 and window["answered"] + window["cancelled"] == 60
    assert {"switch", "accept-wrong", "undo", "type"} <= set(report["actions"])
    assert set(report["targets"]) == {"rss_growth_mb_per_2000", "p99_last_to_first"}
    assert "keystrokes  RSS (MB)" in result.stdout and "target rss_growth_mb_per_2000" in result.stdout
