"""JSON-RPC at the edge: framing limits, decoding, the lifecycle and exit codes, every request answered once.

Decoding is checked on the protocol object itself; everything else against the real `fimble serve` over raw stdio
bytes (scripts/fuzz_lsp.py's `Wire`), since an LSP library client would refuse to send most of these messages.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fimble.lsp.protocol import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, FimbleProtocol
from fimble.lsp.server import create_server
from fimble.lsp.transport import read_frame
from tests.conftest import TEST_ENV

REPO = Path(__file__).resolve().parents[1]


def _load_fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_lsp", REPO / "scripts" / "fuzz_lsp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_lsp"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()


# -- framing ------------------------------------------------------------------------------------------------
def frames(data: bytes, max_bytes: int = 1 << 20) -> list[Any]:
    stream = io.BytesIO(data)
    out = []
    while (got := read_frame(stream, max_bytes)) is not None:
        out.append(got)
    return out


def test_header_names_are_case_insensitive_and_content_type_is_ignored() -> None:
    got = frames(b"content-length: 2\r\ncontent-type: application/json\r\n\r\n{}")
    assert [f.body for f in got] == [b"{}"]


def test_a_body_over_the_limit_is_skipped_and_the_next_message_read() -> None:
    data = b"Content-Length: 50\r\n\r\n" + b"x" * 50 + b"Content-Length: 2\r\n\r\n{}"
    got = frames(data, max_bytes=10)
    assert got[0].body is None and "over the 10-byte limit" in got[0].problem
    assert got[1].body == b"{}"


def test_an_announced_length_larger_than_the_stream_ends_it_without_allocating() -> None:
    assert frames(b"Content-Length: 1000000000000\r\n\r\n{}") == []


def test_bad_headers_skip_one_frame_only() -> None:
    long_line = b"X-Junk: " + b"j" * 20_000 + b"\r\n"
    data = (
        b"Content-Length: abc\r\n\r\n"
        + b"Content-Type: x\r\n\r\n"
        + long_line
        + b"Content-Length: 2\r\n\r\n{}"
        + b"Content-Length: 4\r\n\r\nnull"
    )
    got = frames(data)
    assert [f.body for f in got] == [None, None, None, b"null"]
    assert "Content-Length" in got[0].problem and "without a Content-Length" in got[1].problem
    assert "longer than" in got[2].problem


# -- decoding -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def protocol() -> FimbleProtocol:
    server = create_server()
    assert isinstance(server.protocol, FimbleProtocol)
    return server.protocol


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_bodies_that_are_not_messages_get_the_error_the_specification_names(protocol: FimbleProtocol) -> None:
    assert protocol.decode(b"{").error.code == PARSE_ERROR  # type: ignore[union-attr]
    assert protocol.decode(b"\xff\xfe{}").error.code == PARSE_ERROR  # type: ignore[union-attr]
    assert protocol.decode(b"[" * 100_000 + b"]" * 100_000).error.code == PARSE_ERROR  # type: ignore[union-attr]
    batch = protocol.decode(body([{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}]))
    assert batch.error.code == INVALID_REQUEST and batch.reply_id is None  # type: ignore[union-attr]
    wrong_version = protocol.decode(body({"jsonrpc": "1.0", "id": 7, "method": "shutdown"}))
    assert wrong_version.error.code == INVALID_REQUEST and wrong_version.reply_id == 7  # type: ignore[union-attr]
    bad_id = protocol.decode(body({"jsonrpc": "2.0", "id": 1.5, "method": "shutdown"}))
    assert bad_id.error.code == INVALID_REQUEST and bad_id.reply_id is None  # type: ignore[union-attr]


def test_a_request_whose_params_do_not_fit_is_answered_invalid_params(protocol: FimbleProtocol) -> None:
    for position in ({"line": -1, "character": 0}, {"line": 0, "character": 2**31}, {"line": "0"}, None):
        params = {"textDocument": {"uri": "file:///a.py"}, "position": position, "context": {"triggerKind": 1}}
        got = protocol.decode(body({"jsonrpc": "2.0", "id": 3, "method": "textDocument/inlineCompletion", "params": params}))  # fmt: skip
        assert got.error is not None and got.error.code == INVALID_PARAMS and got.reply_id == 3
        assert "inlineCompletion" in got.error.message
    missing = protocol.decode(body({"jsonrpc": "2.0", "id": 4, "method": "textDocument/completion"}))
    assert missing.error is not None and missing.error.code == INVALID_PARAMS


def test_a_wrong_typed_value_fails_fast(protocol: FimbleProtocol) -> None:
    """A 50 KB string where an array belongs used to cost seconds (one exception per character)."""
    note = {"jsonrpc": "2.0", "method": "workspace/didChangeWatchedFiles", "params": {"changes": "x" * 50_000}}
    started = time.monotonic()
    got = protocol.decode(body(note))
    assert time.monotonic() - started < 1.0
    assert got.message is None and got.error is None and "didChangeWatchedFiles" in got.note


def test_unknown_methods(protocol: FimbleProtocol) -> None:
    got = protocol.decode(body({"jsonrpc": "2.0", "id": "x", "method": "fimble/nope", "params": {}}))
    assert got.error is not None and got.error.code == METHOD_NOT_FOUND and got.reply_id == "x"
    quiet = protocol.decode(body({"jsonrpc": "2.0", "method": "$/somethingNew", "params": {}}))
    assert quiet.message is None and quiet.note == ""


def test_unpaired_surrogates_refuse_a_request_and_are_replaced_in_synced_text(protocol: FimbleProtocol) -> None:
    request = {"jsonrpc": "2.0", "id": 9, "method": "fimble/debugPrompt",
               "params": {"textDocument": {"uri": "file:///a\ud800.py"}, "position": {"line": 0, "character": 0}}}  # fmt: skip
    got = protocol.decode(json.dumps(request).encode())
    assert got.error is not None and got.error.code == INVALID_PARAMS and "surrogate" in got.error.message
    item = {"uri": "file:///a.py", "languageId": "python", "version": 1, "text": "a\ud800b\U0001f600c"}
    opened = protocol.decode(json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": item}}).encode())  # fmt: skip
    assert opened.message is not None and opened.repaired_uri == "file:///a.py"
    # U+FFFD is one UTF-16 code unit, as the surrogate was: later positions land where the editor means them.
    assert opened.message.params.text_document.text == "a\ufffdb\U0001f600c"
    paired = protocol.decode(json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {**item, "text": "\U0001f600"}}}).encode())  # fmt: skip
    assert paired.repaired_uri == "" and paired.message.params.text_document.text == "\U0001f600"


# -- the real server over raw stdio ---------------------------------------------------------------------------
@pytest.fixture
def setup(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)
    return fuzz.make_setup(tiny_model, tmp_path)


@pytest.fixture
def wire(setup: Any) -> Iterator[Any]:
    w = fuzz.start(setup)
    yield w
    if w.alive():
        w.proc.kill()
    w.close()


def test_requests_before_initialize_are_refused_at_once_and_exit_without_shutdown_is_1(setup: Any) -> None:
    w = fuzz.start(setup, initialize=False)
    started = time.monotonic()
    answer = w.call("textDocument/completion", {"textDocument": {"uri": "file:///x"}, "position": {"line": 0, "character": 0}})  # fmt: skip
    assert answer is not None and answer["error"]["code"] == -32002
    assert time.monotonic() - started < 10  # the old behaviour waited 60 s for a model load
    w.notify("exit")
    assert w.close() == 1


def test_after_shutdown_requests_get_invalid_request_and_exit_is_0(wire: Any) -> None:
    done = wire.call("shutdown")
    assert done is not None and "result" in done and done["result"] is None
    answer = wire.call("fimble/stats", {})
    assert answer is not None and answer["error"]["code"] == INVALID_REQUEST
    wire.notify("exit")
    assert wire.close() == 0


def test_a_second_initialize_is_refused(wire: Any) -> None:
    answer = wire.call("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    assert answer is not None and answer["error"]["code"] == INVALID_REQUEST


def test_every_request_is_answered_once_through_malformed_traffic(setup: Any) -> None:
    """A sample of the fuzzer's categories against the real server: no crash, no request left unanswered or
    answered twice, no traceback on stderr, and the lifecycle checks hold."""
    results = fuzz.run_categories(setup, count=400, seed=7)
    for name, result in results.items():
        assert result.crashes == 0, name
        assert result.unanswered == 0 and result.answered_twice == 0, name
        assert result.tracebacks == 0, (name, setup.stderr.read_text(errors="replace")[-3000:])
        assert not result.checks, result.checks


def test_a_document_with_unpaired_surrogates_stays_in_step(wire: Any, setup: Any) -> None:
    uri = (setup.workspace / "s.py").as_uri()
    raw = json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": uri, "languageId": "python", "version": 1, "text": "x = '\ud800'\ny = 1\n"}}}).encode()  # fmt: skip
    wire.send_raw(fuzz.frame(raw))
    # the editor counts the surrogate as one UTF-16 unit: an edit after it must land after it
    change = {"range": {"start": {"line": 0, "character": 7}, "end": {"line": 0, "character": 7}}, "text": "  # ok"}
    wire.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]})
    answer = wire.call("fimble/debugPrompt", {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 5}})
    assert answer is not None and "result" in answer, answer
    assert "x = '\ufffd'  # ok\ny = 1" in answer["result"]["prompt"]
    warnings = [n for n in wire.notifications if n.get("method") == "window/showMessage"]
    assert any("surrogate" in n["params"]["message"] for n in warnings)


def test_tcp_serves_one_client_with_the_same_protocol(setup: Any) -> None:
    import socket
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([*setup.cmd, "--tcp", f"127.0.0.1:{port}"], env=setup.env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        with conn:
            reader = conn.makefile("rb")
            early = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "shutdown"}).encode()
            conn.sendall(fuzz.frame(early))
            answer = json.loads(read_frame(reader).body)  # type: ignore[union-attr,arg-type]
            assert answer["id"] == 1 and answer["error"]["code"] == -32002
            init = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "initialize",
                "params": {"processId": None, "capabilities": {}},
            }
            conn.sendall(fuzz.frame(json.dumps(init).encode()))
            assert "result" in json.loads(read_frame(reader).body)  # type: ignore[union-attr,arg-type]
            conn.sendall(fuzz.frame(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}).encode()))
            assert json.loads(read_frame(reader).body)["id"] == 3  # type: ignore[union-attr,arg-type]
            conn.sendall(fuzz.frame(json.dumps({"jsonrpc": "2.0", "method": "exit"}).encode()))
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
