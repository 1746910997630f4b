"""The OpenAI-compatible engine against a real server on 127.0.0.1: llama-cpp-python's own server, serving the same
tiny GGUF models the in-process tests use. Greedy output must match the in-process engine token for token."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from fimble.completion.pipeline import CompletionRequest, complete
from fimble.model.backend import CancelToken, GenerationParams
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.model.remote.fallback import RemoteSession
from fimble.model.remote.openai_compat import OpenAICompatBackend
from fimble.model.runtime import ModelRuntime
from fimble.settings import Settings
from tests.remote.conftest import Served, remote_settings

PREFIX = "def total(values):\n    result = 0\n    for v in values:\n        result += "
SUFFIX = "\n    return result\n"


@pytest.fixture
def qwen(llama_cpp_python_server: Served) -> OpenAICompatBackend:
    backend = OpenAICompatBackend(
        remote_settings(backend="openai", url=llama_cpp_python_server.url + "/v1", remote_model="tiny-qwen")
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def local_qwen(tiny_fim_model: Path) -> LlamaCppBackend:
    backend = LlamaCppBackend(tiny_fim_model, Settings(n_threads=1, n_ctx=2048))
    yield backend
    backend.close()


def test_discovers_model_tokenizer_and_fim_format(qwen: OpenAICompatBackend) -> None:
    qwen.ensure_ready()
    assert qwen.info.name == "tiny-qwen"
    assert qwen.tokenizer_style == "llama-cpp-python"
    # The vocabulary was probed through /extras/tokenize, so the family comes from real special tokens.
    assert qwen.info.format.name == "qwen2.5-coder" and qwen.format_source == "model vocabulary"
    assert qwen.info.n_ctx == 2048  # the server does not say; nCtx stands


def test_tokens_and_greedy_output_match_the_in_process_engine(
    qwen: OpenAICompatBackend, local_qwen: LlamaCppBackend
) -> None:
    qwen.ensure_ready()
    fmt = qwen.info.format
    pieces = fmt.render(fmt.fim, prefix=PREFIX, suffix=SUFFIX)
    assert qwen.tokenize(PREFIX) == local_qwen.tokenize(PREFIX)
    ids = qwen.encode(pieces)
    assert ids == local_qwen.encode(pieces)
    streamed: list[str] = []
    remote = qwen.generate(ids, GenerationParams(max_tokens=12), CancelToken(), streamed.append)
    local = local_qwen.generate(ids, GenerationParams(max_tokens=12), CancelToken())
    assert remote.text == local.text and remote.text
    assert "".join(streamed) == remote.text and len(streamed) > 1  # it really streamed
    assert remote.stop_reason == "length" and remote.generated_tokens == 12
    assert remote.prompt_tokens == len(ids)


def test_cancel_closes_the_stream_and_the_server_serves_the_next_request(qwen: OpenAICompatBackend) -> None:
    qwen.ensure_ready()
    ids = qwen.encode([PREFIX])
    cancel = CancelToken()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        cancel.cancel()

    t0 = time.monotonic()
    result = qwen.generate(ids, GenerationParams(max_tokens=1500), cancel, on_text)
    assert result.stop_reason == "cancelled"
    assert time.monotonic() - t0 < 5
    assert len(pieces) <= 2
    again = qwen.generate(ids, GenerationParams(max_tokens=4), CancelToken())
    assert again.stop_reason == "length" and again.text


def test_deadline_returns_what_was_generated(qwen: OpenAICompatBackend) -> None:
    qwen.ensure_ready()
    ids = qwen.encode([PREFIX])
    cancel = CancelToken(deadline=time.monotonic() + 0.4)
    t0 = time.monotonic()
    result = qwen.generate(ids, GenerationParams(max_tokens=1900), cancel)
    elapsed = time.monotonic() - t0
    assert result.stop_reason in ("deadline", "length")
    if result.stop_reason == "deadline":
        assert elapsed < 2.0


def test_cancel_from_another_thread_while_waiting(qwen: OpenAICompatBackend) -> None:
    qwen.ensure_ready()
    ids = qwen.encode([PREFIX])
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel).start()
    t0 = time.monotonic()
    result = qwen.generate(ids, GenerationParams(max_tokens=1900), cancel)
    assert result.stop_reason in ("cancelled", "length")
    if result.stop_reason == "cancelled":
        assert time.monotonic() - t0 < 2.0


def test_estimate_mode_sends_the_same_prompt_text(llama_cpp_python_server: Served, local_qwen: LlamaCppBackend) -> None:
    """Without a tokenize endpoint (Ollama, LM Studio) ids are virtual, but the text the server gets is the same."""
    settings = remote_settings(
        backend="openai", url=llama_cpp_python_server.url, remote_model="tiny-qwen", prompt_format="qwen2.5-coder"
    )
    backend = OpenAICompatBackend(settings)
    backend._detect_tokenizer = lambda: None  # type: ignore[method-assign]  # behave as a server without one
    try:
        backend.ensure_ready()
        assert backend.tokenizer_style is None and backend.format_source == "promptFormat setting"
        fmt = backend.info.format
        pieces = fmt.render(fmt.fim, prefix=PREFIX, suffix=SUFFIX)
        ids = backend.encode(pieces)
        # Virtual ids map back to exactly the text, special tokens spelled out for the server's tokenizer.
        assert backend.prompt_text(ids) == "<|fim_prefix|>" + PREFIX + "<|fim_suffix|>" + SUFFIX + "<|fim_middle|>"
        remote = backend.generate(ids, GenerationParams(max_tokens=10), CancelToken())
        local = local_qwen.generate(local_qwen.encode(pieces), GenerationParams(max_tokens=10), CancelToken())
        assert remote.text == local.text
    finally:
        backend.close()


def test_runtime_pipeline_with_openai_backend_matches_local(llama_cpp_python_server: Served, tiny_model: Path) -> None:
    text = "import os\n\n\ndef greet(name):\n    message = \n    return message\n"
    offset = text.index("message = ") + len("message = ")
    results = {}
    for name, settings in {
        "remote": remote_settings(backend="openai", url=llama_cpp_python_server.url, remote_model="tiny-plain"),
        "local": Settings(model=str(tiny_model), n_threads=1, n_ctx=2048),
    }.items():
        runtime = ModelRuntime()
        statuses: list[tuple[str, str]] = []
        runtime.on_status(lambda state, message, seen=statuses: seen.append((state, message)))
        try:
            runtime.load(settings).result()
            request = CompletionRequest(text=text, offset=offset, language_id="python", path="a.py", settings=settings)
            results[name] = runtime.run_sync(lambda b, r=request: complete(b, r, CancelToken()))
        finally:
            runtime.shutdown()
        assert statuses[-1][0] == "ready"
        if name == "remote":
            assert isinstance(runtime.loaded, RemoteSession)
            assert "tiny-plain" in statuses[-1][1] and llama_cpp_python_server.url.split("//")[1] in statuses[-1][1]
            assert runtime.model_name == "tiny-plain"
    assert results["remote"].text and results["remote"].text == results["local"].text
    assert results["remote"].prompt.ids == results["local"].prompt.ids


def test_missing_api_key_names_the_setting(keyed_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIMBLE_API_KEY", raising=False)
    backend = OpenAICompatBackend(remote_settings(backend="openai", url=keyed_server))
    with pytest.raises(Exception) as info:
        backend.ensure_ready()
    message = str(info.value)
    assert "401" in message and "FIMBLE_API_KEY" in message and "apiKeyEnv" in message
    monkeypatch.setenv("TEAM_KEY", "sesame")
    keyed = OpenAICompatBackend(remote_settings(backend="openai", url=keyed_server, api_key_env="TEAM_KEY"))
    keyed.ensure_ready()
    ids = keyed.encode(["def f(x):\n    return "])
    assert keyed.generate(ids, GenerationParams(max_tokens=3), CancelToken()).generated_tokens >= 1
