"""The server's wiring (lsp/server.py): what `initialized` starts, and how every request that points into a
document is refused alike (`FimbleServer.resolve`). In process, through pygls' protocol, on the tiny model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from fimble.lsp.server import TOO_LARGE, FimbleServer, create_server
from fimble.model.backend import ModelBackend
from fimble.model.runtime import ModelRuntime, load_backend
from fimble.settings import Settings
from tests.test_resources import Wire, did_open, notify, wait_for

INVALID_PARAMS = -32602
REQUEST_FAILED = -32803
SMALL = "def add(a, b):\n    return a + b\n"
BIG = "".join(f"# filler line {i:03d} of a file that is too large\n" for i in range(12))  # 528 bytes


class Gate:
    """A backend factory that loads the real model only once opened: the server can be looked at mid-load."""

    def __init__(self) -> None:
        self.opened = threading.Event()

    def factory(self, resolved: Any, settings: Settings) -> ModelBackend:
        assert self.opened.wait(30), "the test never let the model load"
        return load_backend(resolved, settings)


class Session:
    def __init__(self, server: FimbleServer, wire: Wire) -> None:
        self.server, self.wire = server, wire
        self._ids = iter(range(100, 10_000))

    def send(self, method: str, params: Any, msg_id: int | None = None) -> None:
        data: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if msg_id is not None:
            data["id"] = msg_id
        self.server.protocol.handle_message(self.server.protocol.structure_message(data))

    async def request(self, method: str, params: Any) -> dict[str, Any]:
        """The response message (with `result` or `error`)."""
        msg_id = next(self._ids)
        self.send(method, params, msg_id)

        def answer() -> dict[str, Any] | None:
            return next((m for m in self.wire.sent if m.get("id") == msg_id and "method" not in m), None)

        await wait_for(lambda: answer() is not None)
        found = answer()
        assert found is not None
        return found


@pytest.fixture
def start(tmp_path: Path, tiny_model: Path) -> Iterator[Callable[..., Session]]:
    servers: list[FimbleServer] = []

    def make(gate: Gate, **options: Any) -> Session:
        server = create_server(runtime=ModelRuntime(factory=gate.factory))
        servers.append(server)
        wire = Wire()
        server.protocol.set_writer(wire, include_headers=False)
        session = Session(server, wire)
        params = {
            "processId": None,
            "rootUri": tmp_path.as_uri(),
            "capabilities": {},
            "initializationOptions": {"model": str(tiny_model), **options},
        }
        session.send(types.INITIALIZE, params, msg_id=1)
        return session

    yield make
    for server in servers:  # not server.close(): it stops the fix checkers of the whole process, for good
        if server.context_engine is not None:
            server.context_engine.close()
        server.runtime.shutdown()


def position(uri: str, line: int, character: int) -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}


async def test_initialized_creates_the_context_engine_before_the_model_has_loaded(
    tmp_path: Path, start: Callable[..., Session]
) -> None:
    (tmp_path / "helpers.py").write_text(SMALL)
    gate = Gate()
    session = start(gate, workspaceTrusted=False)
    server = session.server
    uri = (tmp_path / "main.py").as_uri()
    did_open(server, uri, "from helpers import add\n")  # before `initialized`: the engine finds it open
    assert server.context_engine is None

    notify(server, types.INITIALIZED, types.InitializedParams())
    await wait_for(lambda: server.context_engine is not None)
    engine = server.context_engine
    assert engine is not None and server.runtime.state == "loading"
    assert engine.root == tmp_path.resolve() and engine.trusted is False  # the trust setting of the workspace: no git
    assert "seen" in engine.state_of(uri)
    doc = server.store.get(uri)
    assert server.completion_request(doc, 0).context is engine
    await wait_for(lambda: engine.index is not None and engine.index.ready)  # indexed meanwhile

    gate.opened.set()
    await wait_for(lambda: server.runtime.state == "ready")
    assert server.context_engine is engine


async def test_requests_on_a_document_not_served_are_refused_alike(
    tmp_path: Path, start: Callable[..., Session]
) -> None:
    gate = Gate()
    gate.opened.set()
    session = start(gate, maxDocumentBytes=400)
    server = session.server
    notify(server, types.INITIALIZED, types.InitializedParams())
    big, small, never = ((tmp_path / n).as_uri() for n in ("big.py", "small.py", "never.py"))
    did_open(server, big, BIG + "x = \n")
    did_open(server, small, SMALL)
    explain_range = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}

    def explain(uri: str) -> Any:
        command = {"command": "fimble.explain", "arguments": [{"uri": uri, "range": explain_range}]}
        return session.request(types.WORKSPACE_EXECUTE_COMMAND, command)

    for answer in (await session.request("fimble/debugPrompt", position(big, 12, 4)), await explain(big)):
        assert answer["error"]["code"] == REQUEST_FAILED and "maxDocumentBytes" in answer["error"]["message"]
    for answer in (
        await session.request("fimble/debugPrompt", position(never, 0, 0)),
        await session.request("fimble/debugPrompt", position(small, 9, 0)),
        await explain(never),
    ):
        assert answer["error"]["code"] == INVALID_PARAMS
    # Completion answers a document over the limit with nothing, said in fimble/status; code actions list none.
    inline = {**position(big, 12, 4), "context": {"triggerKind": 2}}
    assert (await session.request(types.TEXT_DOCUMENT_INLINE_COMPLETION, inline))["result"]["items"] == []
    assert any(s.get("reason") == TOO_LARGE for s in session.wire.notifications("fimble/status"))
    actions = {"textDocument": {"uri": big}, "range": explain_range, "context": {"diagnostics": []}}
    assert (await session.request(types.TEXT_DOCUMENT_CODE_ACTION, actions))["result"] == []
    # Within the limit, the same requests are answered.
    prompt = await session.request("fimble/debugPrompt", position(small, 1, 4))
    assert prompt["result"]["prompt"].endswith("def add(a, b):\n    ")
