"""Failures a shared server produces: every one becomes one readable error naming the setting to fix, within the
timeout, and a configured fallback model keeps completions working. Scripted misbehaviour comes from a tiny HTTP
server on 127.0.0.1 (tests/remote/conftest.py); the happy paths are tested against real servers elsewhere."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fimble.completion.pipeline import CompletionRequest, complete
from fimble.errors import ContextOverflowError, SettingsError
from fimble.model.backend import CancelToken, GenerationParams
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.model.remote.failures import RemoteError
from fimble.model.remote.fallback import RemoteSession
from fimble.model.remote.llama_server import LlamaServerBackend
from fimble.model.remote.openai_compat import OpenAICompatBackend
from fimble.model.runtime import ModelRuntime, load_backend, resolve_for
from fimble.settings import Settings
from tests.remote.conftest import FakeHandler, FakeHTTPServer, completion_chunk, free_port, remote_settings

TEXT = "import os\n\n\ndef greet(name):\n    message = \n    return message\n"
OFFSET = TEXT.index("message = ") + len("message = ")


def openai(url: str, **kw: object) -> OpenAICompatBackend:
    return OpenAICompatBackend(remote_settings(backend="openai", url=url, **kw))


def stream_route(*events: object, finish: bool = True) -> object:
    def route(h: FakeHandler) -> None:
        h.body()
        h.start_sse()
        for event in events:
            h.sse(event)
        if finish:
            h.sse(completion_chunk("", "stop"))
            h.sse("[DONE]")

    return route


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A socket that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(sock.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    sock.close()


# -- bad input: one readable message naming the setting -----------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, "set 'url'"),
        ("", "set 'url'"),
        ("gpu-box:8080", "must start with http:// or https://"),
        ("ftp://gpu-box", "must use http:// or https://"),
        ("http://", "no host name"),
        ("http://gpu-box:99999", "invalid port"),
    ],
)
def test_bad_url_setting_is_named(url: str | None, expected: str) -> None:
    with pytest.raises(RemoteError, match=expected) as info:
        LlamaServerBackend(remote_settings(backend="llama-server", url=url))
    assert "'url'" in str(info.value)


def test_connection_refused_is_fast_and_names_url() -> None:
    backend = openai(f"http://127.0.0.1:{free_port()}", request_timeout_ms=3000)
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="connection refused") as info:
        backend.ensure_ready()
    assert "'url'" in str(info.value)
    assert time.monotonic() - t0 < 3.5  # retried with backoff, but never past requestTimeoutMs


def test_unknown_host_names_url() -> None:
    backend = openai("http://fimble-no-such-host.invalid:8080", request_timeout_ms=2000)
    with pytest.raises(RemoteError, match=r"Cannot resolve the host 'fimble-no-such-host.invalid'.*'url'"):
        backend.ensure_ready()


def test_silent_server_never_hangs_past_the_timeout(silent_port: int) -> None:
    backend = openai(f"http://127.0.0.1:{silent_port}", request_timeout_ms=400)
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match=r"did not answer within 400 ms.*requestTimeoutMs"):
        backend.ensure_ready()
    assert time.monotonic() - t0 < 1.5


def test_a_web_page_is_not_an_llm_server(fake_server: FakeHTTPServer) -> None:
    def page(h: FakeHandler) -> None:
        data = b"<html><body>Welcome to nginx!</body></html>"
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    fake_server.routes[("GET", "/v1/models")] = page
    fake_server.routes[("GET", "/props")] = page
    with pytest.raises(RemoteError, match=r"not the JSON an LLM server sends.*'url'"):
        openai(fake_server.url).ensure_ready()
    with pytest.raises(RemoteError, match=r"not the JSON an LLM server sends.*'url'"):
        LlamaServerBackend(remote_settings(backend="llama-server", url=fake_server.url)).ensure_ready()


def test_openai_server_behind_llama_server_backend_gets_a_hint(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()
    with pytest.raises(RemoteError, match=r"no /props endpoint \(404.*'backend' to 'openai'"):
        LlamaServerBackend(remote_settings(backend="llama-server", url=fake_server.url)).ensure_ready()


def test_tls_error_suggests_http(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()
    https = fake_server.url.replace("http://", "https://")
    with pytest.raises(RemoteError, match=r"TLS error talking to .*use http:// in 'url'"):
        openai(https, request_timeout_ms=2000).ensure_ready()


def test_unknown_remote_model_lists_what_the_server_has(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model("qwen2.5-coder-7b")
    with pytest.raises(RemoteError, match=r"'remoteModel'.*qwen2.5-coder-7b"):
        openai(fake_server.url, remote_model="llama-70b").ensure_ready()


def test_unknown_backend_names_the_setting() -> None:
    settings = Settings(backend="tgi", url="http://127.0.0.1:1")
    with pytest.raises(SettingsError, match=r"Unknown 'backend' 'tgi'"):
        load_backend(resolve_for(settings), settings)


# -- the stream: malformed JSON, stops mid-way, 5xx, still loading ------------------------------------------------
def test_discovers_a_server_without_tokenizer_by_name(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model("Qwen2.5-Coder-1.5B")
    backend = openai(fake_server.url)
    backend.ensure_ready()
    assert backend.info.format.name == "qwen2.5-coder" and backend.format_source == "model name"
    assert backend.tokenizer_style is None


def test_streamed_text_and_usage_are_reported(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()
    seen: list[dict[str, object]] = []

    def route(h: FakeHandler) -> None:
        seen.append(h.body())
        h.start_sse()
        h.sse(completion_chunk("x = "))
        h.sse(completion_chunk("1"))
        h.sse(completion_chunk("", "length"))
        h.sse({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 2}})
        h.sse("[DONE]")

    fake_server.routes[("POST", "/v1/completions")] = route
    backend = openai(fake_server.url)
    backend.ensure_ready()
    ids = backend.encode(["def f():\n    return 1\n" * 4])
    result = backend.generate(ids, GenerationParams(max_tokens=2), CancelToken())
    assert result.text == "x = 1" and result.stop_reason == "length"
    assert result.prompt_tokens == 40 and result.generated_tokens == 2
    body = seen[0]
    assert body["stream"] is True and body["model"] == "fake-coder" and body["max_tokens"] == 2
    assert body["prompt"] == "def f():\n    return 1\n" * 4
    # The server's count calibrated the estimate.
    assert backend.estimate.observations == 1


def test_malformed_json_in_the_stream(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()
    fake_server.routes[("POST", "/v1/completions")] = stream_route(completion_chunk("ok"), "{not json", finish=False)
    backend = openai(fake_server.url)
    backend.ensure_ready()
    with pytest.raises(RemoteError, match=r"malformed JSON in its stream.*'url'"):
        backend.generate(backend.encode(["x = "]), GenerationParams(max_tokens=8), CancelToken())


def test_stream_that_stops_mid_way(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()
    fake_server.routes[("POST", "/v1/completions")] = stream_route(
        completion_chunk("re"), completion_chunk("turn"), finish=False
    )
    backend = openai(fake_server.url)
    backend.ensure_ready()
    with pytest.raises(RemoteError, match="stopped its answer mid-stream"):
        backend.generate(backend.encode(["x = "]), GenerationParams(max_tokens=8), CancelToken())


def test_error_event_in_the_stream_is_reported(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()
    fake_server.routes[("POST", "/v1/completions")] = stream_route(
        completion_chunk("a"), {"error": {"code": 500, "message": "CUDA out of memory", "type": "server_error"}}
    )
    backend = openai(fake_server.url)
    backend.ensure_ready()
    with pytest.raises(RemoteError, match="CUDA out of memory"):
        backend.generate(backend.encode(["x = "]), GenerationParams(max_tokens=8), CancelToken())


def test_5xx_is_retried_with_backoff(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()
    calls = {"n": 0}
    ok = stream_route(completion_chunk("done"))

    def flaky(h: FakeHandler) -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            h.body()
            h.send_json(503, {"error": {"message": "upstream busy"}})
        else:
            ok(h)  # type: ignore[operator]

    fake_server.routes[("POST", "/v1/completions")] = flaky
    backend = openai(fake_server.url)
    backend.ensure_ready()
    result = backend.generate(backend.encode(["x = "]), GenerationParams(max_tokens=8), CancelToken())
    assert result.text == "done" and calls["n"] == 3


def test_500_is_reported_once_not_retried(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()
    fake_server.routes[("POST", "/v1/completions")] = lambda h: (h.body(), h.send_json(500, {"detail": "boom"}))
    backend = openai(fake_server.url)
    backend.ensure_ready()
    with pytest.raises(RemoteError, match=r"failed \(500: boom\)"):
        backend.generate(backend.encode(["x = "]), GenerationParams(max_tokens=8), CancelToken())
    assert fake_server.count("POST", "/v1/completions") == 1


def test_context_overflow_from_the_server_is_a_context_error(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()
    fake_server.routes[("POST", "/v1/completions")] = lambda h: (
        h.body(),
        h.send_json(
            400, {"error": {"message": "request (5000 tokens) exceeds the available context size (4096 tokens)"}}
        ),
    )
    backend = openai(fake_server.url)
    backend.ensure_ready()
    with pytest.raises(ContextOverflowError, match="'nCtx'"):
        backend.generate(backend.encode(["x = "]), GenerationParams(max_tokens=8), CancelToken())


LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}


def test_still_loading_server_is_waited_for(fake_server: FakeHTTPServer) -> None:
    calls = {"n": 0}

    def models(h: FakeHandler) -> None:
        calls["n"] += 1
        if calls["n"] <= 3:
            h.send_json(503, LOADING)
        else:
            h.send_json(200, {"data": [{"id": "late-coder"}]})

    fake_server.routes[("GET", "/v1/models")] = models
    backend = openai(fake_server.url, request_timeout_ms=5000)
    backend.ensure_ready()
    assert backend.info.name == "late-coder" and calls["n"] == 4


def test_still_loading_past_the_timeout_says_so_then_fails_fast(fake_server: FakeHTTPServer) -> None:
    fake_server.routes[("GET", "/v1/models")] = lambda h: h.send_json(503, LOADING)
    backend = openai(fake_server.url, request_timeout_ms=300)
    with pytest.raises(RemoteError, match="still loading its model") as info:
        backend.ensure_ready()
    assert info.value.kind == "loading"
    hits = len(fake_server.hits)
    # Inside the backoff window the server is not asked again: keystrokes fail fast (or go to the fallback).
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="still loading its model") as again:
        backend.ensure_ready()
    assert str(again.value) == str(info.value)  # the same message: clients show it once, not per keystroke
    assert time.monotonic() - t0 < 0.1 and len(fake_server.hits) == hits


def test_llama_server_loading_state(fake_server: FakeHTTPServer) -> None:
    fake_server.routes[("GET", "/props")] = lambda h: h.send_json(503, LOADING)
    backend = LlamaServerBackend(remote_settings(backend="llama-server", url=fake_server.url, request_timeout_ms=300))
    with pytest.raises(RemoteError, match=r"llama-server at .* is still loading its model"):
        backend.ensure_ready()


def test_cancel_closes_a_slow_stream(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()
    finished = threading.Event()

    def slow(h: FakeHandler) -> None:
        h.body()
        h.start_sse()
        try:
            for _ in range(200):
                h.sse(completion_chunk("a"))
                time.sleep(0.05)
        finally:
            finished.set()

    fake_server.routes[("POST", "/v1/completions")] = slow
    backend = openai(fake_server.url)
    backend.ensure_ready()
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel).start()
    t0 = time.monotonic()
    result = backend.generate(backend.encode(["x = "]), GenerationParams(max_tokens=500), cancel)
    assert result.stop_reason == "cancelled" and time.monotonic() - t0 < 1.0
    # The server notices the closed connection at its next write and stops.
    assert finished.wait(2.0) and fake_server.disconnects == 1


def test_deadline_returns_partial_text_from_a_slow_stream(fake_server: FakeHTTPServer) -> None:
    fake_server.openai_model()

    def slow(h: FakeHandler) -> None:
        h.body()
        h.start_sse()
        for _ in range(100):
            h.sse(completion_chunk("b"))
            time.sleep(0.05)

    fake_server.routes[("POST", "/v1/completions")] = slow
    backend = openai(fake_server.url)
    backend.ensure_ready()
    cancel = CancelToken(deadline=time.monotonic() + 0.35)
    result = backend.generate(backend.encode(["x = "]), GenerationParams(max_tokens=500), cancel)
    assert result.stop_reason == "deadline" and result.text.startswith("b")


# -- fallback model -------------------------------------------------------------------------------------------------
def test_fallback_model_answers_while_the_server_is_down_and_remote_resumes(
    fake_server: FakeHTTPServer, tiny_model: Path
) -> None:
    up = {"value": False}

    def models(h: FakeHandler) -> None:
        if up["value"]:
            h.send_json(200, {"data": [{"id": "team-coder"}]})
        else:
            h.send_json(503, LOADING)

    fake_server.routes[("GET", "/v1/models")] = models
    fake_server.routes[("POST", "/v1/completions")] = stream_route(completion_chunk("'hello from the GPU box'"))
    settings = remote_settings(
        backend="openai", url=fake_server.url, fallback_model=str(tiny_model), request_timeout_ms=300
    )
    runtime = ModelRuntime()
    statuses: list[tuple[str, str]] = []
    runtime.on_status(lambda state, message: statuses.append((state, message)))
    try:
        runtime.load(settings).result()
        assert statuses[-1][0] == "error" and "still loading" in statuses[-1][1] and "fallback" in statuses[-1][1]
        request = CompletionRequest(text=TEXT, offset=OFFSET, language_id="python", path="a.py", settings=settings)
        local = LlamaCppBackend(tiny_model, Settings(n_threads=1, n_ctx=2048))
        try:
            expected = complete(local, request, CancelToken()).text
        finally:
            local.close()
        fallback = runtime.run_sync(lambda b: complete(b, request, CancelToken()))
        assert fallback.text == expected and fallback.text
        session = runtime.loaded
        assert isinstance(session, RemoteSession) and session.using_fallback
        up["value"] = True
        session.remote.client.reset_health()  # skip the backoff window instead of sleeping through it
        remote = runtime.run_sync(lambda b: complete(b, request, CancelToken()))
        assert remote.generation.text == "'hello from the GPU box'"
        assert not session.using_fallback
        assert statuses[-1][0] == "ready" and "team-coder" in statuses[-1][1]
    finally:
        runtime.shutdown()


def test_without_fallback_the_error_reaches_the_caller(tiny_model: Path) -> None:
    settings = remote_settings(backend="llama-server", url=f"http://127.0.0.1:{free_port()}", request_timeout_ms=500)
    runtime = ModelRuntime()
    statuses: list[tuple[str, str]] = []
    runtime.on_status(lambda state, message: statuses.append((state, message)))
    try:
        runtime.load(settings).result()
        assert statuses[-1][0] == "error" and "connection refused" in statuses[-1][1]
        request = CompletionRequest(text=TEXT, offset=OFFSET, language_id="python", path="a.py", settings=settings)
        t0 = time.monotonic()
        with pytest.raises(RemoteError, match="'url'"):
            runtime.run_sync(lambda b: complete(b, request, CancelToken()))
        assert time.monotonic() - t0 < 1.0
    finally:
        runtime.shutdown()


def test_remote_settings_trigger_a_reload() -> None:
    runtime = ModelRuntime()
    try:
        base = remote_settings(backend="openai", url="http://127.0.0.1:1")
        runtime._loaded_with = base
        assert not runtime.needs_reload(base)
        assert runtime.needs_reload(remote_settings(backend="openai", url="http://127.0.0.1:2"))
        assert runtime.needs_reload(remote_settings(backend="openai", url="http://127.0.0.1:1", remote_model="x"))
        assert runtime.needs_reload(remote_settings(backend="llama-server", url="http://127.0.0.1:1"))
    finally:
        runtime.shutdown()


def test_events_split_across_data_lines_and_pings(fake_server: FakeHTTPServer) -> None:
    """SSE details real servers use: comment pings, CRLF, multi-line data fields."""
    fake_server.openai_model()

    def route(h: FakeHandler) -> None:
        h.body()
        h.start_sse()
        h.wfile.write(b": ping\r\n\r\n")
        chunk = json.dumps(completion_chunk("ab"), indent=1).split("\n")
        h.wfile.write(("".join(f"data: {line}\r\n" for line in chunk) + "\r\n").encode())
        h.sse(completion_chunk("c", "stop"))
        h.sse("[DONE]")

    fake_server.routes[("POST", "/v1/completions")] = route
    backend = openai(fake_server.url)
    backend.ensure_ready()
    result = backend.generate(backend.encode(["x = "]), GenerationParams(max_tokens=8), CancelToken())
    assert result.text == "abc" and result.stop_reason == "eos"


def test_ollama_protocol_raw_generate_and_metadata(fake_server: FakeHTTPServer) -> None:
    """No Ollama can run here (it is on no registry this project reaches), so this pins the protocol fimble speaks to
    it: detection by /api/version, the vocabulary from /api/show, and /api/generate with raw=true, so Ollama's
    template never wraps the FIM prompt."""
    vocab = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>", "<|file_sep|>"]
    bodies: list[dict[str, object]] = []
    fake_server.routes[("GET", "/api/version")] = lambda h: h.send_json(200, {"version": "0.12.6"})
    fake_server.routes[("GET", "/api/tags")] = lambda h: h.send_json(200, {"models": [{"name": "qwen2.5-coder:7b"}]})
    fake_server.routes[("POST", "/api/show")] = lambda h: (
        h.body(),
        h.send_json(
            200,
            {
                "model_info": {
                    "general.architecture": "qwen2",
                    "qwen2.context_length": 32768,
                    "tokenizer.ggml.tokens": ["a", "b", *vocab],
                }
            },
        ),
    )

    def generate(h: FakeHandler) -> None:
        bodies.append(h.body())
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        for line in (
            {"response": "len(", "done": False},
            {"response": "x)", "done": False},
            {"response": "", "done": True, "done_reason": "stop", "prompt_eval_count": 9, "eval_count": 2},
        ):
            h.wfile.write((json.dumps(line) + "\n").encode())

    fake_server.routes[("POST", "/api/generate")] = generate
    backend = openai(fake_server.url, n_ctx=4096)
    backend.ensure_ready()
    assert backend.ollama and backend.info.name == "qwen2.5-coder:7b" and backend.info.n_ctx_train == 32768
    assert backend.info.format.name == "qwen2.5-coder" and backend.format_source == "model vocabulary"
    fmt = backend.info.format
    ids = backend.encode(fmt.render(fmt.fim, prefix="n = ", suffix="\n"))
    result = backend.generate(ids, GenerationParams(max_tokens=5), CancelToken())
    assert result.text == "len(x)" and result.stop_reason == "eos" and result.generated_tokens == 2
    body = bodies[0]
    assert body["raw"] is True and body["model"] == "qwen2.5-coder:7b"
    assert body["prompt"] == "<|fim_prefix|>n = <|fim_suffix|>\n<|fim_middle|>"
    assert body["options"]["num_ctx"] == 4096 and body["options"]["num_predict"] == 5  # type: ignore[index]
