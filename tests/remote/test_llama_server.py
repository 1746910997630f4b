"""llama.cpp's llama-server as the engine (opt-in: `-m llama_server` with FIMBLE_LLAMA_SERVER naming the binary that
scripts/setup_llama_server.sh builds). Prompts travel as token ids, so greedy output must equal the in-process
engine's exactly, and the server's prompt cache must be reused across keystrokes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fimble.completion.pipeline import CompletionRequest, complete, warm
from fimble.model.backend import CancelToken, GenerationParams
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.model.remote.llama_server import INFILL_FORMAT, LlamaServerBackend
from fimble.model.runtime import ModelRuntime
from fimble.settings import Settings
from tests.remote.conftest import remote_settings

pytestmark = pytest.mark.llama_server

PREFIX = "def total(values):\n    result = 0\n    for v in values:\n        result += "
SUFFIX = "\n    return result\n"


@pytest.fixture
def qwen(llama_server: Callable[[str], str]) -> Iterator[LlamaServerBackend]:
    backend = LlamaServerBackend(remote_settings(backend="llama-server", url=llama_server("qwen")))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def local_qwen(tiny_fim_model: Path) -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend(tiny_fim_model, Settings(n_threads=1, n_ctx=2048))
    yield backend
    backend.close()


def test_discovery_props_vocabulary_and_slot(qwen: LlamaServerBackend) -> None:
    qwen.ensure_ready()
    assert qwen.info.name == "tiny-qwen"  # the GGUF's file name (llama-server's default alias is its path)
    assert qwen.info.format.name == "qwen2.5-coder" and qwen.format_source == "model vocabulary"
    assert qwen.info.n_ctx == 2048  # min(nCtx, the server's per-slot context)
    assert qwen.info.n_ctx_train == 2048
    assert qwen.total_slots == 2 and qwen.slot in (0, 1)
    assert not qwen.infill


def test_token_ids_and_greedy_output_equal_the_in_process_engine(
    qwen: LlamaServerBackend, local_qwen: LlamaCppBackend
) -> None:
    qwen.ensure_ready()
    fmt = qwen.info.format
    pieces = fmt.render(fmt.fim, prefix=PREFIX, suffix=SUFFIX)
    assert qwen.tokenize(PREFIX) == local_qwen.tokenize(PREFIX)
    # A file that contains a special-token spelling stays text: it can never inject a control token.
    assert qwen.tokenize("<|fim_middle|>") == local_qwen.tokenize("<|fim_middle|>") != [qwen.token_id("<|fim_middle|>")]
    ids = qwen.encode(pieces)
    assert ids == local_qwen.encode(pieces)
    streamed: list[str] = []
    remote = qwen.generate(ids, GenerationParams(max_tokens=12), CancelToken(), streamed.append)
    local = local_qwen.generate(ids, GenerationParams(max_tokens=12), CancelToken())
    assert remote.text == local.text and "".join(streamed) == remote.text
    assert remote.stop_reason == "length" and remote.generated_tokens == 12 and remote.prompt_tokens == len(ids)
    assert qwen.detokenize(ids[1:5]) == local_qwen.detokenize(ids[1:5])


def test_prompt_cache_is_reused_in_the_pinned_slot(qwen: LlamaServerBackend) -> None:
    qwen.ensure_ready()
    fmt = qwen.info.format
    first = qwen.encode(fmt.render(fmt.fim, prefix="import os\n" * 30 + PREFIX, suffix=SUFFIX))
    qwen.generate(first, GenerationParams(max_tokens=2), CancelToken())
    second = qwen.encode(fmt.render(fmt.fim, prefix="import os\n" * 30 + PREFIX + "v", suffix=SUFFIX))
    result = qwen.generate(second, GenerationParams(max_tokens=2), CancelToken())
    assert result.reused_tokens >= 30  # the shared head of the prompt was not evaluated again


def test_warm_fills_the_slot_cache(qwen: LlamaServerBackend) -> None:
    qwen.ensure_ready()
    prompt = qwen.encode(["class Config:\n" * 40])
    assert qwen.warm(prompt, CancelToken()) > 0
    result = qwen.generate(prompt, GenerationParams(max_tokens=2), CancelToken())
    assert result.reused_tokens >= len(prompt) - 2


def test_cancel_closes_the_stream(qwen: LlamaServerBackend) -> None:
    qwen.ensure_ready()
    ids = qwen.encode([PREFIX])
    cancel = CancelToken()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        cancel.cancel()

    t0 = time.monotonic()
    result = qwen.generate(ids, GenerationParams(max_tokens=1500), cancel, on_text)
    assert result.stop_reason == "cancelled" and len(pieces) == 1 and time.monotonic() - t0 < 3
    assert qwen.generate(ids, GenerationParams(max_tokens=3), CancelToken()).generated_tokens == 3


def test_unknown_fim_family_goes_through_infill(llama_server: Callable[[str], str]) -> None:
    backend = LlamaServerBackend(remote_settings(backend="llama-server", url=llama_server("generic")))
    try:
        backend.ensure_ready()
        assert backend.infill and backend.info.format is INFILL_FORMAT
        fmt = backend.info.format
        ids = backend.encode(fmt.render(fmt.fim, prefix=PREFIX, suffix=SUFFIX))
        result = backend.generate(ids, GenerationParams(max_tokens=6), CancelToken())
        assert result.generated_tokens >= 1 and result.stop_reason in ("length", "eos")
        assert result.prompt_tokens > len(backend.tokenize(PREFIX))  # the server added its FIM tokens
    finally:
        backend.close()


def test_pipeline_through_the_runtime(llama_server: Callable[[str], str]) -> None:
    settings = remote_settings(backend="llama-server", url=llama_server("qwen"))
    runtime = ModelRuntime()
    try:
        runtime.load(settings).result()
        text = "import os\n\n\ndef greet(name):\n    message = \n    return message\n"
        request = CompletionRequest(
            text=text, offset=text.index("= \n") + 2, language_id="python", path="a.py", settings=settings
        )
        runtime.run_sync(lambda b: warm(b, request, CancelToken()))
        result = runtime.run_sync(lambda b: complete(b, request, CancelToken()))
        assert result.prompt.format == "qwen2.5-coder"
        assert result.generation.reused_tokens > 0  # warmed
    finally:
        runtime.shutdown()
