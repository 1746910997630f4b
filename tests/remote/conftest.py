"""Real model servers on 127.0.0.1 for the remote-engine tests, and a tiny misbehaving HTTP server for failures.

- llama-cpp-python's own server (`python -m llama_cpp.server`, the `server` extra) serving the tiny GGUF models:
  the OpenAI-compatible happy path, in the normal suite.
- llama.cpp's llama-server, built by scripts/setup_llama_server.sh: opt-in (`-m llama_server`), run when
  FIMBLE_LLAMA_SERVER names the binary.
- `FakeServer`: scripted answers (malformed JSON, a stream that stops mid-way, 5xx, "still loading", silence) that
  no real server produces on demand. Only for failures; happy paths always use a real server.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fimble.settings import Settings
from fimble_dev.tiny_gguf import TinyModelSpec, write_tiny_gguf

SERVER_START_TIMEOUT_S = 90


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llama_server: runs llama.cpp's llama-server (FIMBLE_LLAMA_SERVER=path; scripts/setup_llama_server.sh)",
    )


@dataclass(frozen=True)
class RemoteSettings(Settings):
    """Settings plus the two keys the remote engines read with getattr until settings.py has them."""

    remote_model: str | None = None
    prompt_format: str | None = None


def remote_settings(**kw: Any) -> RemoteSettings:
    base: dict[str, Any] = {"n_threads": 1, "n_ctx": 2048, "request_timeout_ms": 5000}
    base.update(kw)
    return RemoteSettings(**base)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = SERVER_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"server at {url} did not come up in {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}"
    )


@contextlib.contextmanager
def running(cmd: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env or dict(os.environ))
    try:
        wait_for_http(ready_url, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Served:
    url: str
    models: dict[str, Path]  # alias -> GGUF


@pytest.fixture(scope="session")
def generic_fim_model(models_dir: Path) -> Path:
    """FIM tokens spelled in a way no fimble template knows, named in the GGUF metadata: llama-server's /infill."""
    spec = TinyModelSpec(
        name="tiny-generic-fim", special_tokens=("<fim-prefix>", "<fim-suffix>", "<fim-middle>"), fim_token_ids=True
    )
    return write_tiny_gguf(models_dir / "tiny-generic-fim.gguf", spec)


@pytest.fixture(scope="session")
def llama_cpp_python_server(
    tiny_fim_model: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One llama-cpp-python server with two aliases (switching reloads, which takes milliseconds for tiny models)."""
    pytest.importorskip("uvicorn", reason="llama-cpp-python[server] is not installed")
    work = tmp_path_factory.mktemp("llama-cpp-python-server")
    port = free_port()
    # tiny-plain first: it is what a client gets without naming a model (the LSP tests).
    models = {"tiny-plain": tiny_model, "tiny-qwen": tiny_fim_model}
    config = {
        "host": "127.0.0.1",
        "port": port,
        "models": [
            {"model": str(path), "model_alias": alias, "n_ctx": 2048, "n_threads": 1, "n_threads_batch": 1}
            for alias, path in models.items()
        ],
    }
    cfg = work / "config.json"
    cfg.write_text(json.dumps(config))
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--config_file", str(cfg)]
    with running(cmd, f"{url}/v1/models", work / "server.log"):
        yield Served(url, models)


@pytest.fixture(scope="session")
def keyed_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's server requiring an API key ("sesame")."""
    pytest.importorskip("uvicorn", reason="llama-cpp-python[server] is not installed")
    work = tmp_path_factory.mktemp("keyed-server")
    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_model), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "1024", "--n_threads", "1", "--api_key", "sesame",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running(cmd, f"{url}/docs", work / "server.log"):
        yield url


def llama_server_binary() -> Path | None:
    value = os.environ.get("FIMBLE_LLAMA_SERVER")
    if not value:
        return None
    path = Path(value)
    return path if path.is_file() and os.access(path, os.X_OK) else None


@pytest.fixture(scope="session")
def llama_server(
    tiny_fim_model: Path, generic_fim_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], str]]:
    """Start llama-server on demand per model ('qwen' or 'generic'); two slots, so id_slot pinning is exercised."""
    binary = llama_server_binary()
    if binary is None:
        pytest.skip("set FIMBLE_LLAMA_SERVER to a llama-server binary (scripts/setup_llama_server.sh builds one)")
    models = {"qwen": tiny_fim_model, "generic": generic_fim_model}
    started: dict[str, str] = {}
    stack = contextlib.ExitStack()
    work = tmp_path_factory.mktemp("llama-server")

    def start(name: str) -> str:
        if name not in started:
            port = free_port()
            cmd = [
                str(binary), "-m", str(models[name]), "--host", "127.0.0.1", "--port", str(port), "-c", "4096",
                "--parallel", "2", "-t", "1", "-tb", "1", "--no-webui", "--log-disable",
            ]  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(running(cmd, f"{url}/health", work / f"{name}.log"))
            started[name] = url
        return started[name]

    with stack:
        yield start


# -- a scripted, misbehaving HTTP server -------------------------------------------------------------------------
Route = Callable[["FakeHandler"], None]


class FakeHandler(BaseHTTPRequestHandler):
    server: FakeHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def sse(self, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.wfile.write(f"data: {text}\n\n".encode())
        self.wfile.flush()

    def _dispatch(self) -> None:
        self.server.hits.append((self.command, self.path))
        route = self.server.routes.get((self.command, self.path)) or self.server.routes.get(("*", self.path))
        if route is None:
            self.send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError):
            self.server.disconnects += 1

    do_GET = _dispatch
    do_POST = _dispatch


class FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.routes: dict[tuple[str, str], Route] = {}
        self.hits: list[tuple[str, str]] = []
        self.disconnects = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def route(self, method: str, path: str) -> Callable[[Route], Route]:
        def register(fn: Route) -> Route:
            self.routes[(method, path)] = fn
            return fn

        return register

    def openai_model(self, model: str = "fake-coder") -> None:
        """Answer discovery like a minimal OpenAI-compatible server without a tokenize endpoint."""
        self.routes[("GET", "/v1/models")] = lambda h: h.send_json(200, {"object": "list", "data": [{"id": model}]})

    def count(self, method: str, path: str) -> int:
        return sum(1 for hit in self.hits if hit == (method, path))


@pytest.fixture
def fake_server() -> Iterator[FakeHTTPServer]:
    server = FakeHTTPServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def completion_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": finish}]}


__all__ = ["FakeHTTPServer", "RemoteSettings", "Served", "completion_chunk", "free_port", "remote_settings"]
